/**
 * The server's tokenizer thread (tokenize.ts): the model's tokenizer, loaded from its directory, encodes prompts
 * here so that a large prompt or a slow chat template never stalls the event loop that answers /health and
 * streams other requests' text.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadTokenizer, type ChatMessage } from '@fast-dllm/model';

export type TokenizeTask = { id: number; kind: 'chat'; messages: ChatMessage[] } | { id: number; kind: 'text'; text: string; addSpecial: boolean };
export type TokenizeReply = { id: number; ids: Int32Array } | { id: number; error: string; template: boolean };

const { dir, vocabSize } = workerData as { dir: string; vocabSize?: number };
const tokenizer = await loadTokenizer(dir, { modelVocabSize: vocabSize });
parentPort!.on('message', (t: TokenizeTask) => {
  let reply: TokenizeReply;
  try {
    const ids = t.kind === 'chat' ? tokenizer.encodeChat(t.messages, { addGenerationPrompt: true }) : tokenizer.encode(t.text, { addSpecial: t.addSpecial });
    reply = { id: t.id, ids: Int32Array.from(ids) };
  } catch (e) {
    // Template faults (its own raise_exception or a limit) are the request's problem; the rest are the model's.
    reply = { id: t.id, error: (e as Error).message, template: t.kind === 'chat' };
  }
  parentPort!.postMessage(reply, 'ids' in reply ? [reply.ids.buffer as ArrayBuffer] : []);
});
parentPort!.postMessage({ ready: true });
