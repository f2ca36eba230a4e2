/**
 * Runs untrusted Python programs (model-written code with its tests), one `python3` process per program:
 * - a wall-time limit (the process group is killed) and RLIMIT_CPU just above it;
 * - RLIMIT_AS (memory) and RLIMIT_FSIZE (largest file) set by a small Python wrapper before the program runs;
 * - no network: a new user + network namespace (`unshare -rn`, only a loopback that is down) where the platform
 *   allows it; the wrapper also refuses sockets and subprocesses through a Python audit hook (defence in depth,
 *   and the only network barrier where namespaces are unavailable);
 * - a fresh temporary directory as cwd and TMPDIR, removed afterwards; the audit hook refuses writes, renames and
 *   deletions outside it;
 * - a clean environment (PATH and LANG only, plus TMPDIR), stdin closed, stdout/stderr kept up to a cap;
 * - when this process runs as root, the program runs as the unprivileged user `nobody` (uid/gid 65534).
 * Python's audit hooks are not a security boundary on their own (ctypes can bypass them); the namespace, the
 * unprivileged user and the limits are. Run untrusted code on a machine you can afford to lose.
 */
import { spawn } from 'node:child_process';
import { chmod, chown, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { UsageError } from '../errors.js';

export interface SandboxOptions {
  /** Interpreter to run (default `python3` on PATH). */
  python?: string;
  /** Wall-clock limit per program, ms. */
  timeoutMs: number;
  /** Address-space limit per program, bytes. */
  memoryBytes: number;
  /** Bytes of stdout and of stderr kept (the rest is read and dropped). Default 64 KiB. */
  outputBytes?: number;
  /** Largest file a program may write, bytes. Default 16 MiB. */
  fileBytes?: number;
  /** The Python audit-hook guards (default true). Tests turn them off to check the namespace alone. */
  pythonGuards?: boolean;
  /** Try `unshare -rn` (default true). */
  networkNamespace?: boolean;
}

export type ExecStatus = 'passed' | 'failed' | 'timeout' | 'memory';

export interface ExecOutcome {
  status: ExecStatus;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  wallMs: number;
}

export interface Sandbox {
  /** The interpreter's absolute path and version. */
  python: string;
  pythonVersion: string;
  /** How the network is cut off: a namespace, or only the Python guard. */
  network: 'namespace' | 'python-guard';
  /** Whose permissions the programs run with. */
  user: 'nobody' | 'current';
  limits: { timeoutMs: number; memoryBytes: number; outputBytes: number; fileBytes: number };
  run(program: string, signal?: AbortSignal): Promise<ExecOutcome>;
}

const NOBODY = 65534;

/**
 * The wrapper: argv = program path, address-space bytes, file-size bytes, CPU seconds, guards (1/0). It sets the
 * limits, installs the audit hook, then runs the program as __main__. SystemExit counts as failure (exit 1): a
 * program that exits before its tests ran has not passed them.
 */
const WRAPPER = String.raw`
import os, sys, resource
def _limit(which, value):
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))
path, mem, fsize, cpu, guards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == '1'
_limit(resource.RLIMIT_AS, mem)
_limit(resource.RLIMIT_FSIZE, fsize)
_limit(resource.RLIMIT_CPU, cpu)
_limit(resource.RLIMIT_CORE, 0)
with open(path, encoding='utf-8') as f:
    source = f.read()
code = compile(source, path, 'exec')
if guards:
    root = os.path.realpath(os.getcwd())
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    denied = ('socket.', 'subprocess.', 'os.system', 'os.exec', 'os.posix_spawn', 'os.spawn', 'os.fork',
              'os.forkpty', 'os.kill', 'os.killpg', 'signal.pthread_kill', 'pty.', 'webbrowser.', 'urllib.Request')
    path_args = {'os.remove': (0,), 'os.rmdir': (0,), 'os.rename': (0, 1), 'os.mkdir': (0,), 'os.chmod': (0,),
                 'os.chown': (0,), 'os.link': (0, 1), 'os.symlink': (1,), 'os.truncate': (0,), 'os.utime': (0,),
                 'os.chflags': (0,), 'os.lchflags': (0,), 'shutil.rmtree': (0,), 'shutil.move': (0, 1),
                 'shutil.copyfile': (1,), 'shutil.copytree': (1,)}
    def inside(p):
        if isinstance(p, int):
            return True
        try:
            full = os.path.realpath(os.fsdecode(p))
        except Exception:
            return False
        return full == root or full.startswith(root + os.sep)
    def refuse(what):
        raise PermissionError('sandbox: ' + what)
    def hook(event, args):
        if event == 'open':
            p, mode, flags = args
            w = (isinstance(flags, int) and flags & writing) or (isinstance(mode, str) and any(c in mode for c in 'wax+'))
            if w and not inside(p):
                refuse('writing outside the working directory: ' + repr(p))
        elif event in path_args:
            for i in path_args[event]:
                if i < len(args) and not inside(args[i]):
                    refuse(event + ' outside the working directory: ' + repr(args[i]))
        elif event.startswith(denied):
            refuse(event + ' is not allowed')
    sys.addaudithook(hook)
sys.argv = [path]
try:
    exec(code, {'__name__': '__main__', '__file__': path, '__builtins__': __builtins__})
except SystemExit as e:
    sys.stderr.write('sandbox: the program called exit(%r) before its tests finished\n' % (e.code,))
    sys.stderr.flush()
    os._exit(1)
`;

interface Spawned {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  error?: NodeJS.ErrnoException;
  timedOut: boolean;
  wallMs: number;
}

/** Spawns argv with a clean environment and a wall-time limit; kills the whole process group at the limit. */
function runCapped(argv: string[], o: { cwd?: string; env: NodeJS.ProcessEnv; uid?: number; timeoutMs: number; capBytes: number; signal?: AbortSignal }): Promise<Spawned> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(argv[0], argv.slice(1), {
      cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
      ...(o.uid !== undefined ? { uid: o.uid, gid: o.uid } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    child.stdout.on('data', (d: Buffer) => {
      if (outBytes < o.capBytes) out.push(d.subarray(0, o.capBytes - outBytes));
      outBytes += d.length;
    });
    child.stderr.on('data', (d: Buffer) => {
      if (errBytes < o.capBytes) err.push(d.subarray(0, o.capBytes - errBytes));
      errBytes += d.length;
    });
    let timedOut = false;
    let error: NodeJS.ErrnoException | undefined;
    const kill = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, o.timeoutMs);
    o.signal?.addEventListener('abort', kill, { once: true });
    child.on('error', (e) => (error = e));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', kill);
      resolve({
        code, signal, timedOut, error, wallMs: performance.now() - t0,
        stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** rm -rf, after making every directory writable again (a program may have chmod-ed its own files). */
async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
    return;
  } catch {
    // fall through: restore permissions, then try once more
  }
  const walk = async (d: string): Promise<void> => {
    await chmod(d, 0o700).catch(() => undefined);
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) await walk(join(d, e.name));
  };
  await walk(dir);
  await rm(dir, { recursive: true, force: true });
}

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  if (process.env.LANG) env.LANG = process.env.LANG;
  return { ...env, ...extra };
}

/**
 * Finds the interpreter and how far it can be isolated here. A missing python3 (or one that cannot run as
 * `nobody` when we are root) is a UsageError that says what to do.
 */
export async function openSandbox(o: SandboxOptions): Promise<Sandbox> {
  const python = o.python ?? 'python3';
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const uid = asRoot ? NOBODY : undefined;
  const probe = await runCapped([python, '-I', '-c', 'import sys; print(sys.executable); print("%d.%d.%d" % sys.version_info[:3])'],
    { env: cleanEnv(), timeoutMs: 20_000, capBytes: 4096 });
  if (probe.error?.code === 'ENOENT') {
    throw new UsageError(`${python} not found${o.python ? '' : ' on PATH'}: code tasks run each program with Python 3; install it or pass --python PATH`);
  }
  if (probe.error || probe.code !== 0) {
    throw new UsageError(`${python} does not run (${probe.error?.message ?? (probe.stderr.trim().split('\n').pop() || `exit ${probe.code}`)}); pass --python PATH`);
  }
  const [exe, version] = probe.stdout.trim().split('\n');
  const [major, minor] = version.split('.').map(Number);
  if (major !== 3 || minor < 8) throw new UsageError(`${exe} is Python ${version}; the sandbox needs Python >= 3.8 (audit hooks); pass --python PATH`);
  if (asRoot) {
    const r = await runCapped([exe, '-I', '-c', 'pass'], { cwd: '/', env: cleanEnv(), uid, timeoutMs: 20_000, capBytes: 4096 });
    if (r.error || r.code !== 0) {
      throw new UsageError(`running as root, the sandbox runs programs as user nobody, who cannot run ${exe} (${r.error?.message ?? `exit ${r.code}`}); pass --python PATH with an interpreter outside root's home, e.g. /usr/bin/python3`);
    }
  }
  let network: Sandbox['network'] = 'python-guard';
  if (o.networkNamespace !== false) {
    const r = await runCapped(['unshare', '-rn', exe, '-I', '-c', 'pass'], { cwd: '/', env: cleanEnv(), uid, timeoutMs: 20_000, capBytes: 4096 });
    if (!r.error && r.code === 0) network = 'namespace';
  }
  const limits = { timeoutMs: o.timeoutMs, memoryBytes: o.memoryBytes, outputBytes: o.outputBytes ?? 64 * 1024, fileBytes: o.fileBytes ?? 16 * 1024 * 1024 };
  const guards = o.pythonGuards !== false;
  return {
    python: exe,
    pythonVersion: version,
    network,
    user: asRoot ? 'nobody' : 'current',
    limits,
    async run(program, signal) {
      const dir = await mkdtemp(join(tmpdir(), 'fast-dllm-exec-'));
      try {
        const file = join(dir, 'program.py');
        await writeFile(file, program);
        if (uid !== undefined) {
          await chown(dir, uid, uid);
          await chown(file, uid, uid);
        }
        await chmod(dir, 0o700);
        const cpuSeconds = Math.ceil(limits.timeoutMs / 1000) + 1;
        const argv = [...(network === 'namespace' ? ['unshare', '-rn'] : []), exe, '-I', '-B', '-c', WRAPPER,
          'program.py', String(limits.memoryBytes), String(limits.fileBytes), String(cpuSeconds), guards ? '1' : '0'];
        const r = await runCapped(argv, { cwd: dir, env: cleanEnv({ TMPDIR: dir }), uid, timeoutMs: limits.timeoutMs, capBytes: limits.outputBytes, signal });
        if (r.error) throw new Error(`cannot run ${exe}: ${r.error.message}`);
        const status: ExecStatus = r.timedOut || r.signal === 'SIGXCPU' ? 'timeout'
          : r.code === 0 ? 'passed'
          : /\bMemoryError\b/.test(r.stderr) ? 'memory' : 'failed';
        return { status, exitCode: r.code, signal: r.signal, stdout: r.stdout, stderr: r.stderr, wallMs: r.wallMs };
      } finally {
        await removeTree(dir);
      }
    },
  };
}
