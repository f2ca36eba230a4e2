/** The real `fast-dllm` binary on the fixture models, against the reference engine. */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../packages/cli/test/run.js';

const model = (name: string) => fileURLToPath(new URL(`./fixtures/models/${name}`, import.meta.url));

/** The CLI binary (the CLI package's own test helper), with text on stdin. */
const run = (args: string[], input = '') => runCli(args, { input });

const small = ['--engine', 'reference', '--gen-length', '16', '--block-length', '8'];

describe('fast-dllm generate', () => {
  it('--json: stable fields, every generated position committed exactly once, nfe = number of steps', async () => {
    const r = await run(['generate', '--model', model('llada-tiny-f32'), '--prompt-ids', '5,6,7,8', ...small, '--cache', 'dual', '--threshold', '0.5', '--json']);
    expect(r.stderr).toMatch(/^decoding: dual cache, threshold 0\.5$/m);
    expect(r.stderr).toMatch(/^engine: reference$/m);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(Object.keys(j).sort()).toEqual(['answerIds', 'engine', 'forwardsByMode', 'model', 'nfe', 'outputIds', 'promptIds', 'settings', 'stats', 'steps', 'stoppedEarly', 'text', 'timings'].sort());
    expect(j.engine).toBe('reference');
    expect(j.promptIds).toEqual([5, 6, 7, 8]);
    expect(j.outputIds).toHaveLength(16);
    expect(j.settings).toMatchObject({ genLength: 16, blockLength: 8, steps: 16, cache: 'dual', strategy: { kind: 'threshold', threshold: 0.5 } });
    expect(j.nfe).toBe(j.steps.length);
    const committed = j.steps.flatMap((s: { positions: number[] }) => s.positions).sort((a: number, b: number) => a - b);
    expect(committed).toEqual(Array.from({ length: 16 }, (_, i) => i + 4));
    for (const s of j.steps) s.positions.forEach((p: number, i: number) => expect(j.outputIds[p - 4]).toBe(s.tokens[i]));
    expect(j.forwardsByMode.full).toBe(2); // one refresh per block
    expect(typeof j.text).toBe('string');
  });

  it('--refresh-every n adds a full forward every n steps inside a block', async () => {
    const args = ['generate', '--model', model('llada-tiny-f32'), '--prompt-ids', '5,6,7,8', ...small, '--strategy', 'fixed', '--cache', 'dual', '--json'];
    const plain = JSON.parse((await run(args)).stdout);
    const r = await run([...args, '--refresh-every', '2']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.settings.refreshEvery).toBe(2);
    expect(plain.settings.refreshEvery).toBeNull();
    // 2 blocks × 8 steps (one token per step): without refresh 1 full forward per block; with it, steps 0, 2, 4, 6.
    expect(plain.forwardsByMode.full).toBe(2);
    expect(j.forwardsByMode.full).toBe(8);
    expect(j.nfe).toBe(plain.nfe);
  });

  it('same settings give the same tokens on repeat (greedy is deterministic)', async () => {
    const args = ['generate', '--model', model('dream-tiny-f32'), '--prompt-ids', '1,2,3', ...small, '--strategy', 'fixed', '--cache', 'none', '--json'];
    const [a, b] = await Promise.all([run(args), run(args)]);
    expect(a.code).toBe(0);
    expect(JSON.parse(a.stdout).outputIds).toEqual(JSON.parse(b.stdout).outputIds);
    expect(JSON.parse(a.stdout).nfe).toBe(16); // fixed schedule: one token per step
  });

  it('--prompt through the chat template streams text; --visual draws one line per step', async () => {
    const text = await run(['generate', '--model', model('llada-tiny-f32'), '--prompt', 'hello', ...small, '--strategy', 'fixed', '--cache', 'none']);
    expect(text.code).toBe(0);
    expect(text.stderr).toMatch(/nfe 16, 1\.00 tokens\/forward/);
    const vis = await run(['generate', '--model', model('llada-tiny-f32'), '--prompt', 'hello', ...small, '--strategy', 'fixed', '--cache', 'none', '--visual']);
    expect(vis.code).toBe(0);
    // A run of masked or stop-token cells is written once with its length (`.{15}`): expanded here.
    const lines = vis.stdout.split('\n').filter((l) => l.startsWith('nfe')).map((l) => l.replace(/([._^])\{(\d+)\}/g, (_m, c: string, n: string) => c.repeat(Number(n))));
    expect(lines).toHaveLength(16);
    expect(lines[0]).toMatch(/\|[.^]{16}\| \+1 /);
    expect(lines[15]).toMatch(/\|[#_^]{16}\|/);
  });
});

describe('decoding defaults: each family\'s Fast-dLLM recipe, every setting reachable by flags', () => {
  it.each([
    ['llada-tiny-f32', [], 'Fast-dLLM (dual cache, threshold 0.9)', { cache: 'dual', strategy: { kind: 'threshold', threshold: 0.9 } }],
    ['dream-tiny-f32', [], 'Fast-dLLM for Dream (dual cache, maskgit_plus threshold 0.9)', { cache: 'dual', strategy: { kind: 'dream', alg: 'maskgit_plus', threshold: 0.9 } }],
    ['llada-tiny-f32', ['--strategy', 'fixed', '--cache', 'none'], 'no cache, fixed schedule', { cache: 'none', strategy: { kind: 'fixed', remasking: 'low_confidence' } }],
    ['llada-tiny-f32', ['--strategy', 'fixed'], 'dual cache, fixed schedule', { cache: 'dual', strategy: { kind: 'fixed' } }],
    ['llada-tiny-f32', ['--cache', 'prefix'], 'prefix cache, threshold 0.9', { cache: 'prefix', strategy: { kind: 'threshold', threshold: 0.9 } }],
    ['llada-tiny-f32', ['--factor', '2'], 'dual cache, factor 2', { cache: 'dual', strategy: { kind: 'factor', factor: 2 } }],
    ['llada-tiny-f32', ['--strategy', 'factor'], 'dual cache, factor 1', { cache: 'dual', strategy: { kind: 'factor', factor: 1 } }],
  ] as const)('%s %j: %s', async (m, flags, line, settings) => {
    const r = await run(['generate', '--model', model(m), '--prompt-ids', '1,2,3', ...small, ...flags, '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr.split('\n')[0]).toBe(`decoding: ${line}`);
    expect(JSON.parse(r.stdout).settings).toMatchObject({ ...settings, decoding: line });
  });

  it('refuses flags that contradict --strategy', async () => {
    const r = await run(['generate', '--model', model('llada-tiny-f32'), '--prompt-ids', '1,2,3', ...small, '--strategy', 'fixed', '--threshold', '0.5']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--threshold implies --strategy threshold; it does not combine with --strategy fixed/);
  });
});

describe('Dream through the CLI', () => {
  it('--alg entropy with a prefix cache: each full forward commits only its block\'s first position', async () => {
    const r = await run(['generate', '--model', model('dream-tiny-f32'), '--prompt-ids', '1,2,3', ...small, '--alg', 'entropy', '--cache', 'prefix', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.settings.strategy).toEqual({ kind: 'dream', alg: 'entropy' });
    const full = j.steps.filter((s: { mode: string }) => s.mode === 'full');
    expect(full.map((s: { positions: number[] }) => s.positions)).toEqual([[3], [11]]);
  });

  it('sampling is reproducible from --seed', async () => {
    const args = ['generate', '--model', model('dream-tiny-f32'), '--prompt-ids', '1,2,3', ...small, '--alg', 'origin', '--temperature', '0.7', '--seed', '3', '--json'];
    const [a, b] = await Promise.all([run(args), run(args)]);
    expect(a.code).toBe(0);
    expect(JSON.parse(a.stdout).outputIds).toEqual(JSON.parse(b.stdout).outputIds);
    expect(JSON.parse(a.stdout).settings).toMatchObject({ temperature: 0.7, seed: 3 });
  });
});

describe('--engine auto', () => {
  it('says which engine ran and why the ones before it were skipped', async () => {
    const r = await run(['generate', '--model', model('llada-tiny-f32'), '--prompt-ids', '1,2', '--engine', 'auto', '--gen-length', '8', '--block-length', '8', '--json']);
    expect(r.code).toBe(0);
    const m = /^engine: (cuda|wasm|reference)(?: \(skipped (.*)\))?$/m.exec(r.stderr);
    expect(m).not.toBeNull();
    expect(JSON.parse(r.stdout).engine).toBe(m![1]);
    if (m![1] !== 'cuda') expect(m![2]).toMatch(/^cuda: /);
  });
});

describe('fast-dllm chat', () => {
  it('answers each piped line, keeping the conversation', async () => {
    const r = await run(['chat', '--model', model('llada-tiny-f32'), ...small], 'hi\nagain\n/exit\nnot read\n');
    expect(r.code).toBe(0);
    expect(r.stderr.match(/^engine: reference$/m)).not.toBeNull();
    // One answer line per user turn, none after /exit.
    expect(r.stdout.split('\n').length - 1).toBe(2);
  });
});
