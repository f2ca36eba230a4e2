/**
 * A server stops when whoever started it is told to: `npx fast-dllm serve` and `npx fast-dllm web` stopped with
 * SIGTERM to the npx process free their port (npm forwards the signal only to its `sh -c`, which on Debian's dash
 * does not pass it on: src/launcher.ts), and `web` on a direct SIGTERM stops and exits 0 as `serve` does.
 * Loopback only, port 0, every wait bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN } from './run.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function start(cmd: string, args: string[]): { child: ChildProcess; output: () => string; url: Promise<string>; exited: Promise<number | null> } {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no address within 30 s; output:\n${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /(?:listening on|serving) (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, url, exited };
}

/** Polls `url` until nothing listens there (connection refused), at most 10 s; returns whether it got there. */
async function portClosed(url: string): Promise<boolean> {
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    try {
      await fetch(url, { signal: AbortSignal.timeout(1000) });
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe('SIGTERM to the launcher stops the server', () => {
  for (const cmd of ['serve', 'web']) {
    it(`npx fast-dllm ${cmd}: SIGTERM to npx frees the port`, async () => {
      const s = start('npx', ['--no-install', 'fast-dllm', cmd, '--port', '0']);
      const url = await s.url;
      expect((await fetch(url, { signal: AbortSignal.timeout(5000) })).status).toBeLessThan(500);
      s.child.kill('SIGTERM');
      await s.exited;
      expect(await portClosed(url), `still answering after npx exited; output:\n${s.output()}`).toBe(true);
    });
  }
});

describe('web on a direct SIGTERM', () => {
  it('stops and exits 0, as serve does', async () => {
    const s = start(process.execPath, [BIN, 'web', '--port', '0']);
    const url = await s.url;
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
    expect(s.output()).toMatch(/fast-dllm web: SIGTERM: stopping\nfast-dllm web: stopped\n$/);
    expect(await portClosed(url)).toBe(true);
  });
});
