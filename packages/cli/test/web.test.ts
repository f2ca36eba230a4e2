// `fast-dllm web`: the real binary serves the page cross-origin isolated with the bundled model, stops on Ctrl-C,
// and refuses bad flags with one line.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { BIN, runCli } from './run.js';

/** Starts `fast-dllm web ARGS`, resolves with its URL once it says it is serving. */
function startWeb(args: string[]) {
  const child = spawn(process.execPath, [BIN, 'web', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('close', r));
  const url = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fast-dllm web did not start in 20 s; stderr: ${stderr}`)), 20_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /serving (http:\/\/\S+\/) /.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then((code) => reject(new Error(`fast-dllm web exited with ${code}: ${stderr}`)));
  });
  return { child, url, exited, stderr: () => stderr };
}

describe('fast-dllm web', () => {
  it('serves the page and the bundled model with cross-origin isolation on 127.0.0.1, and stops on Ctrl-C', async () => {
    const web = startWeb(['--port', '0']);
    try {
      const url = await web.url;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const page = await fetch(url);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      expect(page.headers.get('cross-origin-opener-policy')).toBe('same-origin');
      expect(page.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
      expect(await page.text()).toContain('<script type="module" src="app.js"></script>');
      for (const asset of ['app.js', 'engine-worker.js', 'kernel-worker.js', 'wasm/release.wasm', 'wasm/threads.wasm']) {
        const r = await fetch(new URL(asset, url));
        expect(r.status, asset).toBe(200);
        expect(r.headers.get('cross-origin-resource-policy'), asset).toBe('same-origin');
        await r.arrayBuffer();
      }
      const config = await fetch(new URL('models/default/config.json', url));
      expect((await config.json()).model_type).toBe('llada');
      const head = await fetch(new URL('models/default/model.safetensors', url), { headers: { Range: 'bytes=0-7' } });
      expect(head.status).toBe(206);
      expect(head.headers.get('content-range')).toMatch(/^bytes 0-7\/\d+$/);
      expect((await head.arrayBuffer()).byteLength).toBe(8);
    } finally {
      web.child.kill('SIGINT');
    }
    expect(await web.exited).toBe(0);
    expect(web.stderr()).toContain('fast-dllm web: stopped');
  });

  it('refuses a port in use with one line', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = await runCli(['web', '--port', String(port)]);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(`error: port ${port} on 127.0.0.1 is in use; pass another --port (0 picks a free one)\n`);
    } finally {
      taken.close();
    }
  });

  it.each([
    ['a port out of range', ['--port', '70000'], /--port: expected an integer in \[0, 65535\], got '70000'/],
    ['a model folder that does not exist', ['--port', '0', '--model', '/nonexistent/model'], /--model: the directory \/nonexistent\/model does not exist; pass a model directory/],
  ])('refuses %s with one line', async (_what, args, pattern) => {
    const r = await runCli(['web', ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });
});
