/**
 * `fast-dllm chat`: multi-turn chat through the model's chat template. Reads one user turn per line from stdin
 * (a terminal or a pipe); `/exit` or end of input quits. The engine is loaded once for the whole conversation.
 */
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import type { ChatMessage } from '@fast-dllm/model';
import { UsageError } from './errors.js';
import { addDecodeOptions, checkFlags, decodingFrom, requestFrom, type DecodeFlags } from './decode.js';
import { answerIds, textStreamer, withEngine } from './generate.js';
import type { Io } from './io.js';
import { openModelDir } from './modeldir.js';

export function registerChat(program: Command, io: Io, signal: AbortSignal): void {
  const cmd = program
    .command('chat')
    .description('multi-turn chat on stdin (one message per line; /exit to quit)')
    .option('--system <text>', 'system message for the conversation');
  addDecodeOptions(cmd).action(async (opts: DecodeFlags & { system?: string }) => {
    checkFlags(opts);
    const md = await openModelDir(opts.model, { needTokenizer: true });
    const decoding = decodingFrom(opts, md.description);
    io.stderr(`decoding: ${decoding.description}\n`);
    const tok = md.tokenizer!;
    const messages: ChatMessage[] = opts.system ? [{ role: 'system', content: opts.system }] : [];
    const interactive = process.stdin.isTTY === true;
    await withEngine(opts, md, io, async (engine) => {
      const rl = createInterface({ input: process.stdin, terminal: interactive });
      const onAbort = () => rl.close();
      signal.addEventListener('abort', onAbort);
      try {
        if (interactive) io.stderr('> ');
        for await (const line of rl) {
          const text = line.trim();
          if (text === '/exit') break;
          if (text === '') continue;
          messages.push({ role: 'user', content: text });
          let prompt: string;
          try {
            prompt = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
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
          if (interactive) io.stderr('> ');
        }
      } finally {
        signal.removeEventListener('abort', onAbort);
        rl.close();
      }
    });
  });
}
