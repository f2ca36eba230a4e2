/**
 * `fast-dllm serve` as a process: it listens on loopback, answers, and on SIGTERM / Ctrl-C drains — in-flight
 * requests finish (or, past --grace, end with a clean 503 error), new ones are refused — and exits 0.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { BIN, runCli } from './run.js';

interface Served {
  child: ChildProcessWithoutNullStreams;
  url: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts the CLI on a free loopback port and waits until it says it is ready. */
async function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--engine', 'wasm', ...args], { env: { ...process.env, ...env }, stdio: 'pipe' });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000); // never outlives the test
  exited.finally(() => clearTimeout(killer));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (m && /ready: engine wasm/.test(stderr)) resolve(m[1]);
    });
    exited.then((code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
  return { child, url, stderr: () => stderr, exited };
}

const body = (a: number, b: number, stream: boolean) => JSON.stringify({
  model: 'default', messages: [{ role: 'user', content: `What is ${a} + ${b} ?` }], max_tokens: 32, strategy: 'fixed', cache: 'none', stream,
});

/** One request; for a stream, the content deltas joined and whether it ended with [DONE] or an error event. */
async function ask(url: string, a: number, b: number, stream: boolean): Promise<{ status: number; text: string; error?: string; done?: boolean }> {
  const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(a, b, stream) });
  const raw = await r.text();
  if (!stream || r.status !== 200) {
    const j = JSON.parse(raw) as { choices?: { message: { content: string } }[]; error?: { message: string } };
    return { status: r.status, text: j.choices?.[0].message.content ?? '', error: j.error?.message };
  }
  let text = '';
  let error: string | undefined;
  const events = raw.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  for (const e of events.filter((x) => x !== '[DONE]')) {
    const j = JSON.parse(e) as { choices?: { delta: { content?: string } }[]; error?: { message: string } };
    if (j.error) error = j.error.message;
    text += j.choices?.[0]?.delta.content ?? '';
  }
  return { status: r.status, text, error, done: events.at(-1) === '[DONE]' };
}

async function gauge(url: string, name: string): Promise<number> {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(await (await fetch(`${url}/metrics`)).text());
  return Number(m![1]);
}

/** Waits until `n` requests are decoding and `queued` more wait for a place. */
async function untilActive(url: string, n: number, queued = 0): Promise<void> {
  const t0 = Date.now();
  while ((await gauge(url, 'fast_dllm_active_sequences')) < n || (await gauge(url, 'fast_dllm_queue_depth')) < queued) {
    if (Date.now() - t0 > 20_000) throw new Error('requests never started');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const problems: [number, number, string][] = [[47, 35, '82'], [12, 34, '46'], [56, 21, '77'], [23, 48, '71'], [66, 17, '83'], [31, 54, '85']];

describe('fast-dllm serve', () => {
  it('SIGTERM during load: in-flight and queued requests finish, new ones are refused, the process exits 0', async () => {
    const s = await serve(['--batch', '2', '--grace', '30']);
    const inflight = problems.map(([a, b], i) => ask(s.url, a, b, i % 2 === 0));
    await untilActive(s.url, 2);
    s.child.kill('SIGTERM');
    while (!/draining/.test(s.stderr())) await new Promise((r) => setTimeout(r, 5));
    // Draining: readiness false and new requests 503 (or no connection, once the server has closed).
    const ready = await fetch(`${s.url}/health/ready`).then((r) => r.status, () => 'refused');
    expect([503, 'refused']).toContain(ready);
    const late = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(1, 2, false) })
      .then((r) => r.status, () => 'refused');
    expect([503, 'refused']).toContain(late);
    const answers = await Promise.all(inflight);
    for (const [i, r] of answers.entries()) {
      expect(r.status).toBe(200);
      expect(r.error).toBeUndefined();
      expect(r.text).toContain(`answer: ${problems[i][2]}`);
      if (i % 2 === 0) expect(r.done).toBe(true);
    }
    expect(await s.exited).toBe(0);
    expect(s.stderr()).toMatch(/SIGTERM: draining \(grace 30 s\)/);
    expect(s.stderr()).toMatch(/stopped\n/);
    expect(s.stderr()).not.toMatch(/\n\s+at /);
  });

  it('a second SIGTERM during the drain cancels what is left at once (a clean 503), exit 0', async () => {
    const s = await serve(['--batch', '1', '--grace', '600']);
    const inflight = Array.from({ length: 12 }, (_, i) => ask(s.url, ...problems[i % problems.length].slice(0, 2) as [number, number], i % 2 === 0));
    await untilActive(s.url, 1, 4);
    s.child.kill('SIGTERM');
    while (!/draining/.test(s.stderr())) await new Promise((r) => setTimeout(r, 5));
    const t0 = Date.now();
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(s.stderr()).toMatch(/second SIGTERM: cancelling the requests still in flight/);
    expect(s.stderr()).toMatch(/stopped \(\d+ requests cancelled after the grace period\)/);
    const answers = await Promise.all(inflight);
    expect(answers.some((r) => r.status === 503 || (r.error ?? '').includes('shutting down'))).toBe(true);
  });

  it('Ctrl-C with --grace 0: what is in flight ends with a clean 503 error (an error event mid-stream), exit 0', async () => {
    const s = await serve(['--batch', '1', '--grace', '0']);
    const inflight = problems.slice(0, 4).map(([a, b], i) => ask(s.url, a, b, i % 2 === 1));
    await untilActive(s.url, 1, 3);
    s.child.kill('SIGINT');
    const answers = await Promise.all(inflight);
    for (const [i, r] of answers.entries()) {
      if (i % 2 === 1 && r.status === 200) {
        expect(r.error).toMatch(/shutting down/); // the stream had started: an error event, no [DONE]
        expect(r.done).toBe(false);
      } else {
        expect(r.status).toBe(503);
        expect(r.error).toMatch(/shutting down/);
      }
    }
    expect(await s.exited).toBe(0);
    expect(s.stderr()).toMatch(/SIGINT: draining \(grace 0 s\)/);
    expect(s.stderr()).toMatch(/stopped \(4 requests cancelled after the grace period\)/);
  });

  it('FAST_DLLM_API_KEY guards /v1 (401 without it) and leaves /health open', async () => {
    const s = await serve([], { FAST_DLLM_API_KEY: 'k3y' });
    try {
      expect((await fetch(`${s.url}/v1/models`)).status).toBe(401);
      expect((await fetch(`${s.url}/v1/models`, { headers: { authorization: 'Bearer k3y' } })).status).toBe(200);
      expect((await fetch(`${s.url}/health`)).status).toBe(200);
    } finally {
      s.child.kill('SIGTERM');
      expect(await s.exited).toBe(0);
    }
  });

  it('--dtype int8 serves the int8 engine, which answers like f32', async () => {
    const s = await serve(['--dtype', 'int8']);
    try {
      const r = await ask(s.url, 23, 48, false);
      expect(r.status).toBe(200);
      expect(r.text).toMatch(/answer: 71$/);
    } finally {
      s.child.kill('SIGTERM');
      expect(await s.exited).toBe(0);
    }
  });

  it('refuses bad flags with exit 2 and one line', async () => {
    for (const [args, msg] of [
      [['--port', '70000'], /--port: expected an integer in \[0, 65535\]/],
      [['--batch', '1000', '--engine', 'wasm', '--port', '0'], /maxBatch 1000 is more than engine 'wasm' takes/],
      [['--api-key', ' '], /--api-key .* is empty/],
      [['--dtype', 'int4'], /--dtype: expected one of f32, bf16, int8/],
    ] as const) {
      const r = await runCli(['serve', ...args], { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
