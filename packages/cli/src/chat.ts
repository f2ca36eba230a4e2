/**
 * `fast-dllm chat`: multi-turn chat through the model's chat template. Reads one user turn per line from stdin
 * (a terminal or a pipe); `/exit` or end of input quits. The engine is loaded once for the whole conversation.
 * A model that declares it was trained on single questions (fast_dllm.json, src/scope.ts) gets each question
 * alone.
 */
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import type { ChatMessage } from '@fast-dllm/model';
import { UsageError } from './errors.js';
import { addDecodeOptions, checkFlags, decodingFrom, requestFrom, type DecodeFlags } from './decode.js';
import { answerIds, textStreamer, withEngine } from './generate.js';
import type { Io } from './io.js';
import { openModelDir } from './modeldir.js';

/** Said once on stderr when a single-question model is given a system message or a second turn. */
export const SINGLE_QUESTION_NOTE = 'this model was trained on single questions: it gets each message alone (no earlier turns, no --system)';

export function registerChat(program: Command, io: Io, signal: AbortSignal): void {
  const cmd = program
    .command('chat')
    .description('multi-turn chat in a terminal or on stdin (one message per line; /exit to quit)')
    .option('--system <text>', 'system message for the conversation');
  addDecodeOptions(cmd).action(async (opts: DecodeFlags & { system?: string }) => {
    checkFlags(opts);
    const md = await openModelDir(opts.model, { needTokenizer: true });
    const decoding = decodingFrom(opts, md.description);
    io.stderr(`decoding: ${decoding.description}\n`);
    const tok = md.tokenizer!;
    const messages: ChatMessage[] = opts.system ? [{ role: 'system', content: opts.system }] : [];
    const interactive = process.stdin.isTTY === true;
    let toldSingle = false;
    await withEngine(opts, md, io, async (engine) => {
      // On a terminal readline echoes what is typed to its output: stderr, beside the prompt, so that stdout holds only
      // answers (stdout when stderr is redirected). It reads in raw mode, where Ctrl-C is a key, so the key is passed on
      // as the process's SIGINT.
      const echo = !interactive ? undefined : process.stderr.isTTY ? process.stderr : process.stdout.isTTY ? process.stdout : undefined;
      const rl = createInterface({ input: process.stdin, output: echo, terminal: echo !== undefined, prompt: '> ' });
      rl.on('SIGINT', () => process.kill(process.pid, 'SIGINT'));
      const onAbort = () => rl.close();
      signal.addEventListener('abort', onAbort);
      try {
        if (echo) rl.prompt();
        for await (const line of rl) {
          const text = line.trim();
          if (text === '/exit') break;
          if (text === '') continue;
          const warning = md.warnFor(text);
          if (warning) io.stderr(`${warning}\n`);
          messages.push({ role: 'user', content: text });
          if (md.scope.singleQuestion && messages.length > 1 && !toldSingle) {
            io.stderr(`note: ${SINGLE_QUESTION_NOTE}\n`);
            toldSingle = true;
          }
          // A model trained on single questions answers a conversation or a system message with noise: it gets
          // the latest question alone, as in training.
          const sent = md.scope.singleQuestion ? messages.slice(-1) : messages;
          let prompt: string;
          try {
            prompt = tok.applyChatTemplate(sent, { addGenerationPrompt: true });
          } catch (e) {
            throw new UsageError(`chat template of ${md.dir} failed: ${(e as Error).message.split('\n')[0]}`);
          }
          const ids = Int32Array.from(tok.encode(prompt, { addSpecial: false }));
          if (ids.length + decoding.genLength > md.description.maxPositions) {
            throw new UsageError(`the conversation (${ids.length} tokens) plus --gen-length ${decoding.genLength} exceeds the model's ${md.description.maxPositions} positions`);
          }
          const result = await md.run(engine, requestFrom(decoding, ids), { signal, onEvent: textStreamer(md, io.stdout) });
          const answer = tok.decode(answerIds(result.tokens, md.description.stopIds), { skipSpecial: true });
          io.stdout('\n');
          messages.push({ role: 'assistant', content: answer });
          if (echo) rl.prompt();
        }
      } finally {
        signal.removeEventListener('abort', onAbort);
        rl.close();
      }
    });
  });
}
