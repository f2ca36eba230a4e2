/**
 * Smaller things a person meets on first contact with the bundled model: --visual fits a terminal (the ~96 cells
 * of EOS padding are one run each), --prompts-file output says which line each result belongs to, and inspect
 * says what its parameter count counts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultModelDir } from '@fast-dllm/default-model';
import { runCli } from './run.js';

const dir = mkdtempSync(join(tmpdir(), 'fast-dllm-first-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('first contact', () => {
  it('the prompt may follow generate without --prompt, quoted or not', async () => {
    const flag = await runCli(['generate', '--engine', 'wasm', '--json', '--prompt', 'What is 23 + 48 ?']);
    const bare = await runCli(['generate', '--engine', 'wasm', '--json', 'What', 'is', '23', '+', '48', '?']);
    expect(flag.code, flag.stderr).toBe(0);
    expect(bare.code, bare.stderr).toBe(0);
    const text = (r: { stdout: string }) => (JSON.parse(r.stdout) as { text: string }).text;
    expect(text(bare)).toBe(text(flag));
    expect(text(bare)).toMatch(/answer: 71$/);
  });

  it('--visual over the whole canvas (--no-early-stop): each map fits 80 columns, padding runs collapsed', async () => {
    const r = await runCli(['generate', '--engine', 'wasm', '--prompt', 'What is 23 + 48 ?', '--visual', '--no-early-stop']);
    expect(r.code).toBe(0);
    const steps = r.stdout.split('\n').filter((l) => l.startsWith('nfe'));
    expect(steps).toHaveLength(4);
    const maps = steps.map((l) => /\|([^|]*)\|/.exec(l)![1]);
    for (const m of maps) expect(m.length).toBeLessThanOrEqual(80);
    // The answer's 21 tokens, then <|eot_id|> and EOS padding: one run per kind of cell.
    expect(maps[0]).toBe(`${'^'.repeat(21)}^{11}.{96}`);
    expect(maps[3]).toBe(`${'#'.repeat(21)}_{75}^{32}`);
    expect(steps[3]).toMatch(/\+32 96-127:"<\|endoftext\|>"$/);
    // Expanded, every map still has one cell per position.
    for (const m of maps) expect(m.replace(/(.)\{(\d+)\}/g, (_x, c: string, n: string) => c.repeat(Number(n)))).toHaveLength(128);
  });

  it('--prompts-file: each output line carries its input line number, "id" and prompt', async () => {
    const file = join(dir, 'p.jsonl');
    writeFileSync(file, `${JSON.stringify({ id: 'q-7', prompt: 'What is 23 + 48 ?' })}\n\n${JSON.stringify({ prompt_ids: [0, 3, 9], id: 8 })}\n${JSON.stringify({ prompt: 'What is 60 + 42 ?' })}\n`);
    const r = await runCli(['generate', '--engine', 'wasm', '--prompts-file', file]);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(out.map((o) => [o.line, o.id, o.prompt])).toEqual([[1, 'q-7', 'What is 23 + 48 ?'], [3, 8, undefined], [4, undefined, 'What is 60 + 42 ?']]);
    expect(out[0].text).toMatch(/answer: 71$/);
    expect(out[2].text).toMatch(/answer: 102$/);
    writeFileSync(file, `${JSON.stringify({ id: [1], prompt: 'x' })}\n`);
    const bad = await runCli(['generate', '--engine', 'wasm', '--prompts-file', file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/p\.jsonl:1: "id" must be a string or a number/);
  });

  it('inspect labels the parameter count', async () => {
    const r = await runCli(['inspect', defaultModelDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^parameters: +0\.86 M \(860544 values in the checkpoint's tensors\)$/m);
  });
});
