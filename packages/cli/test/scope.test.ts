/**
 * What the bundled models were trained on (their fast_dllm.json): chat sends a single-question model each question
 * alone, so every turn of a chat is answered as well as the first, with --system too; and a prompt outside what a
 * model knows (unknown words, another task, numbers out of range) gets one warning line on stderr.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultModelDir, extractAnswer, loadEvalSet } from '@fast-dllm/default-model';
import { runCli } from './run.js';

const BD = fileURLToPath(new URL('../../bd-model/model', import.meta.url));
const LLADA = fileURLToPath(new URL('../../../test/fixtures/models/llada-tiny-f32', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'fast-dllm-scope-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const wasm = ['--engine', 'wasm'];
const warnings = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('warning:'));

describe('chat with a model trained on single questions', () => {
  // 20 held-out problems as one conversation: before, turn 2 on was noise and turn 7 overflowed the 256 positions.
  const items = loadEvalSet().slice(0, 20);
  for (const [name, model] of [['default-model', defaultModelDir], ['bd-model', BD]] as const) {
    it(`${name}: every turn of a 20-question chat, with --system, scores as the first (held-out problems)`, async () => {
      const r = await runCli(['chat', ...wasm, '--model', model, '--system', 'You add numbers.'], { input: items.map((i) => `${i.prompt}\n`).join('') });
      expect(r.code, r.stderr).toBe(0);
      const answers = r.stdout.split('\n').slice(0, -1);
      expect(answers).toHaveLength(items.length);
      expect(answers.map((a) => extractAnswer(a))).toEqual(items.map((i) => i.answer));
      expect(r.stderr.match(/^note: this model was trained on single questions/gm)).toHaveLength(1);
      expect(warnings(r.stderr)).toEqual([]);
    });
  }

  it('a model without fast_dllm.json gets the whole conversation (no note)', async () => {
    const r = await runCli(['chat', '--engine', 'reference', '--model', LLADA, '--gen-length', '8', '--block-length', '8'], { input: 'hi\nagain\n' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/note:/);
  });
});

describe('prompts outside what the model knows: one warning line, the answer still printed', () => {
  const cases: Array<[string, RegExp | null]> = [
    ['What is 23 + 48 ?', null],
    ['What is 999 + 1 ?', /^warning: this model knows only two-digit addition asked as "What is 23 \+ 48 \?" \(both numbers from 10 to 99\); .*fast-dllm pull .*--model/],
    ['what is 23 + 48 ?', /^warning: this model knows only two-digit addition .*, and its tokenizer does not know 'what';/],
    ['Tell me a joke', /tokenizer does not know 'Tell', 'me', 'a', 'joke'/],
  ];
  it.each(cases)('generate --prompt %j', async (prompt, pattern) => {
    const r = await runCli(['generate', ...wasm, '--prompt', prompt]);
    expect(r.code).toBe(0);
    const w = warnings(r.stderr);
    if (pattern === null) expect(w).toEqual([]);
    else {
      expect(w).toHaveLength(1);
      expect(w[0]).toMatch(pattern);
    }
  });

  it('chat warns per message; --prompts-file names the line', async () => {
    const chat = await runCli(['chat', ...wasm], { input: 'What is 5 + 7 ?\nWhat is 23 + 48 ?\n' });
    expect(warnings(chat.stderr)).toHaveLength(1);
    const file = join(dir, 'p.jsonl');
    writeFileSync(file, `${JSON.stringify({ prompt: 'What is 23 + 48 ?' })}\n${JSON.stringify({ prompt: 'plus one' })}\n`);
    const gen = await runCli(['generate', ...wasm, '--prompts-file', file]);
    expect(gen.code).toBe(0);
    expect(warnings(gen.stderr.replace(/^--prompts-file line \d+: /gm, ''))).toHaveLength(1);
    expect(gen.stderr).toMatch(/^--prompts-file line 2: warning: .*does not know 'plus', 'one'/m);
  });

  it('a model with an unknown token but no declared domain: the unknown words only', async () => {
    const m = join(dir, 'general');
    cpSync(defaultModelDir, m, { recursive: true });
    rmSync(join(m, 'fast_dllm.json'));
    const r = await runCli(['generate', ...wasm, '--model', m, '--prompt', 'What is 23 plus 48 ?']);
    expect(warnings(r.stderr)).toEqual(["warning: this model's tokenizer does not know 'plus': they reach the model as its unknown token, so the answer may miss them"]);
  });

  it('a malformed fast_dllm.json is a usage error naming the file', async () => {
    const m = join(dir, 'bad');
    cpSync(defaultModelDir, m, { recursive: true });
    writeFileSync(join(m, 'fast_dllm.json'), '{"conversation": "sometimes"}');
    const r = await runCli(['generate', ...wasm, '--model', m, '--prompt', 'What is 23 + 48 ?']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/fast_dllm\.json: "conversation" must be "single_question" or "full", got "sometimes"; fix the file or delete it/);
  });
});
