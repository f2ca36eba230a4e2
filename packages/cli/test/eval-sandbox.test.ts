import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSandbox, type Sandbox } from '../src/eval/sandbox.js';
import { humanevalProgram, mbppProgram } from '../src/eval/score/code.js';
import { MBPP_SHOTS } from '../src/eval/exemplars.js';
import { parseProblems } from '../src/eval/tasks.js';
import { readRecords } from '../src/eval/datasets.js';
import { PYTHON, RUN_CODE_TESTS } from './python.js';

const FIXTURES = new URL('./fixtures/eval/', import.meta.url).pathname;
const outside = mkdtempSync(join(tmpdir(), 'fast-dllm-sandbox-test-'));
let sandbox: Sandbox;
let server: Server;
let port = 0;

beforeAll(async () => {
  if (!RUN_CODE_TESTS) return;
  sandbox = await openSandbox({ python: PYTHON, timeoutMs: 3000, memoryBytes: 512 * 1024 * 1024 });
  server = createServer((s) => s.end('hello\n'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
afterAll(async () => {
  rmSync(outside, { recursive: true, force: true });
  if (server) await new Promise((r) => server.close(r));
});

const leftovers = () => readdirSync(tmpdir()).filter((f) => f.startsWith('fast-dllm-exec-'));

describe.skipIf(!RUN_CODE_TESTS)('sandbox (bubblewrap)', () => {
  it('a correct program passes and a wrong one fails', async () => {
    expect((await sandbox.run('def f(x):\n    return x + 1\nassert f(1) == 2\n')).status).toBe('passed');
    const wrong = await sandbox.run('def f(x):\n    return x\nassert f(1) == 2\n');
    expect(wrong.status).toBe('failed');
    expect(wrong.stderr).toMatch(/AssertionError/);
  });

  it('a program that loops forever is killed at the time limit', async () => {
    const r = await sandbox.run('while True:\n    pass\n');
    expect(r.status).toBe('timeout');
    expect(r.wallMs).toBeGreaterThanOrEqual(2900);
    expect(r.wallMs).toBeLessThan(8000);
  });

  it('a program that allocates too much memory fails with MemoryError', async () => {
    const r = await sandbox.run('x = bytearray(2 * 1024 ** 3)\nprint("allocated")\n');
    expect(r.status).toBe('memory');
    expect(r.stdout).toBe('');
  });

  it('writes land in a fresh directory that is removed afterwards; writes elsewhere are refused', async () => {
    const before = leftovers();
    const target = join(outside, 'escaped.txt');
    const r = await sandbox.run(`import os
open('inside.txt', 'w').write('ok')
os.mkdir('sub')
open(os.path.join('sub', 'deeper.txt'), 'w').write('ok')
print(os.getcwd())
print(sorted(os.listdir('.')))
try:
    open(${JSON.stringify(target)}, 'w').write('escaped')
    print('outside: written')
except OSError as e:
    print('outside: refused')
`);
    expect(r.status).toBe('passed');
    const [cwd, listing, verdict] = r.stdout.trim().split('\n');
    expect(cwd).toBe('/sandbox');
    expect(listing).toBe("['inside.txt', 'program.py', 'sub']");
    expect(verdict).toBe('outside: refused');
    expect(existsSync(target)).toBe(false);
    expect(leftovers()).toEqual(before);
  });

  it('a program that imports os and tries the network fails; the same code outside the sandbox connects', async () => {
    const program = `import os, socket
s = socket.create_connection(('127.0.0.1', ${port}), timeout=2)
print(s.recv(16).decode().strip())
`;
    // Control: the server is reachable for an ordinary python3 process (run without blocking this event loop).
    const control = await promisify(execFile)(PYTHON ?? 'python3', ['-c', program], { encoding: 'utf8', timeout: 10_000 });
    expect(control.stdout.trim()).toBe('hello');
    const r = await sandbox.run(program);
    expect(r.status).toBe('failed');
    expect(r.stdout).toBe('');
  });

  it('without isolation (accepted by the user), a network namespace alone cuts the network where available (Python guard off)', async () => {
    const bare = await openSandbox({ python: PYTHON, timeoutMs: 3000, memoryBytes: 512 * 1024 * 1024, isolation: 'none', pythonGuards: false });
    expect(bare.isolation).toBe('none');
    const program = `import socket\nsocket.create_connection(('127.0.0.1', ${port}), timeout=2)\n`;
    const r = await bare.run(program);
    if (bare.network === 'namespace') {
      expect(r.status).toBe('failed');
      expect(r.stderr).toMatch(/ConnectionRefused|Network is unreachable|OSError/);
    } else {
      // Without namespaces the Python guard is the only barrier: with it off the connection goes through.
      expect(r.status).toBe('passed');
    }
  });

  it('a clean environment, stdin closed, output capped, exit() is a failure', async () => {
    process.env.FAST_DLLM_SANDBOX_PROBE = 'secret';
    try {
      const env = await sandbox.run('import os\nprint(sorted(k for k in os.environ if k != "LC_CTYPE"))\n');
      expect(env.stdout.trim()).toBe(process.env.LANG ? "['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']" : "['HOME', 'PATH', 'PWD', 'TMPDIR']");
    } finally {
      delete process.env.FAST_DLLM_SANDBOX_PROBE;
    }
    const stdin = await sandbox.run('input()\n');
    expect(stdin.status).toBe('failed');
    expect(stdin.stderr).toMatch(/EOFError/);
    const big = await sandbox.run('import sys\nfor _ in range(10000):\n    sys.stdout.write("x" * 1000)\n');
    expect(big.status).toBe('passed');
    expect(big.stdout.length).toBe(sandbox.limits.outputBytes);
    const exit = await sandbox.run('import sys\nsys.exit(0)\nassert False\n');
    expect(exit.status).toBe('failed');
    expect(exit.stderr).toMatch(/called exit\(0\) before its tests finished/);
  });

  it('the canonical solutions of the sample files and the built-in MBPP exemplars pass their tests', async () => {
    const he = parseProblems('humaneval', await readRecords(join(FIXTURES, 'humaneval-sample.jsonl.gz')));
    for (const p of he) expect((await sandbox.run(humanevalProgram(p, p.canonicalSolution!).program)).status, p.id).toBe('passed');
    const mbpp = parseProblems('mbpp', await readRecords(join(FIXTURES, 'mbpp-sample.jsonl')));
    for (const p of mbpp) expect((await sandbox.run(mbppProgram(p, p.code).program)).status, p.id).toBe('passed');
    for (const s of MBPP_SHOTS) {
      const p = { id: String(s.taskId), taskId: s.taskId, text: s.text, code: s.code, tests: s.tests, setup: '', imports: [] };
      expect((await sandbox.run(mbppProgram(p, s.code).program)).status, p.id).toBe('passed');
    }
    // And a wrong completion of the same problem fails.
    expect((await sandbox.run(humanevalProgram(he[1], '    return 0\n').program)).status).toBe('failed');
  });

  it('a missing interpreter is a clear usage error', async () => {
    await expect(openSandbox({ python: '/nonexistent/python3', timeoutMs: 1000, memoryBytes: 1 << 28 })).rejects.toThrow(/\/nonexistent\/python3 not found: .*pass --python PATH/);
  });
});
