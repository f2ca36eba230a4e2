/**
 * Answers a person meets on first contact, on the bundled model through the real binary: an empty answer (the
 * model writes EOS at once for "hello") on every command, and many prompts decoded batched from a JSONL file
 * giving, line by line, what separate runs give.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './run.js';

const dir = mkdtempSync(join(tmpdir(), 'fast-dllm-answers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const wasm = ['--engine', 'wasm'];

describe('an empty answer is an answer: text "", exit 0, on every command', () => {
  it('generate (text and --json)', async () => {
    const text = await runCli(['generate', '--prompt', 'hello', ...wasm]);
    expect(text.code).toBe(0);
    expect(text.stdout).toBe('\n');
    expect(text.stderr).toMatch(/empty answer/);
    const json = await runCli(['generate', '--prompt', 'hello', ...wasm, '--json']);
    expect(json.code).toBe(0);
    const j = JSON.parse(json.stdout);
    expect(j.text).toBe('');
    expect(j.answerIds).toEqual([]);
    expect(j.outputIds[0]).toBe(1); // EOS first: the bundled model's end of sequence
  });

  it('chat', async () => {
    const r = await runCli(['chat', ...wasm], { input: 'hello\nWhat is 23 + 48 ?\n' });
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe(''); // the empty answer, then the conversation goes on
    expect(lines).toHaveLength(3);
    expect(lines[1]).toBe('3 + 8 = 11 carry 1, 2 + 4 + 1 = 7, answer: 71'); // the second turn is sent alone (scope.test.ts)
  });

  it('bench', async () => {
    const evalPath = join(dir, 'empty.jsonl');
    writeFileSync(evalPath, [JSON.stringify({ id: 'e0', prompt: 'hello', answer: '5' }), JSON.stringify({ id: 'e1', prompt: 'What is 23 + 48 ?', answer: '71' })].join('\n'));
    const r = await runCli(['bench', ...wasm, '--eval', evalPath]);
    expect(r.code).toBe(0);
    const rows = r.stdout.trim().split('\n').slice(2);
    expect(rows).toHaveLength(6);
    for (const row of rows) expect(row.split('|')[2].trim()).toBe('50.0'); // the empty answer scores 0, the other 1
  });
});

describe('generate --prompts-file: batched, one JSON line per prompt in input order', () => {
  it('16 prompts give, line by line, the outputIds and nfe of 16 separate generate --json runs', async () => {
    const lines = [
      ...['What is 23 + 48 ?', 'What is 98 + 70 ?', 'hello', 'What is 5 + 7 ?', 'What is 60 + 42 ?', 'What is 11 + 99 ?',
        'What is 0 + 0 ?', 'What is 45 + 45 ?', 'What is 37 + 81 ?', 'What is 2 + 3 ?'].map((prompt) => ({ prompt })),
      { prompt_ids: [0, 3, 7, 4, 6, 2, 3, 8, 4] },
      { prompt_ids: [0, 3, 9] },
      ...['What is 64 + 29 ?', 'What is 10 + 90 ?', 'What is 99 + 99 ?', 'What is 13 + 31 ?'].map((prompt) => ({ prompt })),
    ];
    const file = join(dir, 'prompts.jsonl');
    writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
    const batched = await runCli(['generate', '--prompts-file', file, ...wasm, '--batch', '8'], { timeoutMs: 120_000 });
    expect(batched.code).toBe(0);
    const got = batched.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(got).toHaveLength(16);
    const alone = await Promise.all(lines.map((l) => runCli(['generate', ...wasm, '--json',
      ...('prompt' in l ? ['--prompt', l.prompt] : ['--prompt-ids', l.prompt_ids.join(',')])], { timeoutMs: 120_000 })));
    alone.forEach((r, i) => {
      const l = lines[i];
      expect(r.code).toBe(0);
      const j = JSON.parse(r.stdout);
      expect(got[i].outputIds, `line ${i + 1}`).toEqual(j.outputIds);
      expect(got[i].nfe, `line ${i + 1}`).toBe(j.nfe);
      expect(got[i].steps).toEqual(j.steps);
      // The fields of generate --json, after which input line it answers (`line`, and `prompt` for text prompts).
      expect(Object.keys(got[i]).sort()).toEqual([...Object.keys(j), 'line', ...('prompt' in l ? ['prompt'] : [])].sort());
      expect(got[i].line).toBe(i + 1);
    });
    expect(got[0].text).toMatch(/answer: 71$/);
  });

  it.each([
    ['not JSON', 'nope', /prompts\.bad:1: not a JSON object/],
    ['both fields', '{"prompt": "a", "prompt_ids": [1]}', /:1: give exactly one of "prompt" \(text\) or "prompt_ids"/],
    ['bad ids', '{"prompt_ids": [1, -2]}', /:1: "prompt_ids" must be a non-empty array/],
    ['empty file', '\n\n', /no prompts in the file/],
    ['too long', `{"prompt_ids": [${Array(600).fill(3).join(',')}]}`, /line 1: prompt \(600\) \+ --gen-length \(128\) exceeds the model's/],
  ])('%s: exit 2 with the line named', async (_n, content, pattern) => {
    const file = join(dir, 'prompts.bad');
    writeFileSync(file, content);
    const r = await runCli(['generate', '--prompts-file', file, ...wasm]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(pattern);
  });
});
