/**
 * The `fast-dllm` command. Every user error ends as one line on stderr and exit code 2 (UsageError or a
 * commander parse error); run-time failures exit 1; Ctrl-C aborts the current work and exits 130.
 */
import { Command, CommanderError, Option } from 'commander';
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, RunError, UsageError } from './errors.js';
import { formatInspection, inspectModel } from './inspect.js';
import { intArg, repoIdArg } from './parse.js';
import { defaultCacheDir, pull } from './pull.js';
import { registerGenerate } from './generate.js';
import { registerChat } from './chat.js';
import { registerBench } from './bench.js';
import { registerServe } from './serve.js';
import { registerEval } from './eval/command.js';
import { registerWeb } from './web.js';
import { processIo, type Io } from './io.js';
import { followLauncher } from './launcher.js';
import { setVerbose } from './engines.js';


export function buildProgram(io: Io, signal: AbortSignal): Command {
  const program = new Command('fast-dllm')
    .description('Fast-dLLM: cached, parallel decoding for diffusion LLMs: LLaDA and Dream (masked diffusion), Fast-dLLM v2 and SDAR (block diffusion).')
    .version('0.1.0')
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr, outputError: (s, write) => write(`${s.trimEnd().replace(/\s*\n\s*/g, ' ')}\n`) });
  program
    .option('--verbose', 'say in full why an engine was skipped (any command, before or after its name)')
    .hook('preAction', (_program, action) => setVerbose(action.optsWithGlobals().verbose === true));

  program
    .command('inspect')
    .description('architecture, parameter count, dtypes, memory per engine and special tokens of a model directory')
    .argument('<dir>', 'Hugging Face model directory')
    .option('--json', 'print one JSON object')
    .addOption(new Option('--canvas <n>', 'tokens of the sequence whose K/V cache the memory line counts (default: max positions, at most 4096)').argParser(intArg('--canvas', 1)))
    .action(async (dir: string, opts: { json?: boolean; canvas?: number }) => {
      const r = await inspectModel(dir, { canvas: opts.canvas });
      io.stdout(opts.json ? `${JSON.stringify(r)}\n` : `${formatInspection(r)}\n`);
    });

  program
    .command('pull')
    .description('download a model from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN)')
    .argument('<repo>', 'ORG/NAME', repoIdArg)
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .option('--cache-dir <dir>', 'models land in <dir>/<org>/<name> (default $FAST_DLLM_CACHE or ~/.cache/fast-dllm/models)')
    .addOption(new Option('--no-progress', 'no progress bars on stderr'))
    .action(async (repo: string, opts: { revision: string; cacheDir?: string; progress: boolean }) => {
      const endpoint = (process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
      if (!/^https?:\/\//.test(endpoint)) throw new UsageError(`HF_ENDPOINT must be an http(s) URL, got '${endpoint}'`);
      if (opts.revision.trim() === '') throw new UsageError('--revision: empty revision');
      const { dir } = await pull({
        repo,
        revision: opts.revision,
        cacheDir: opts.cacheDir ?? defaultCacheDir(),
        endpoint,
        token: process.env.HF_TOKEN || undefined,
        progress: opts.progress && process.stderr.isTTY === true,
        signal,
        log: (l) => io.stderr(`${l}\n`),
      });
      io.stdout(`${dir}\n`);
    });

  registerGenerate(program, io, signal);
  registerChat(program, io, signal);
  registerBench(program, io, signal);
  registerEval(program, io, signal);
  registerWeb(program, io, signal);
  registerServe(program, io, signal);

  return program;
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(EXIT_INTERRUPTED); // second Ctrl-C: leave at once
    io.stderr('interrupted; stopping\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  const unfollow = followLauncher();
  try {
    await buildProgram(io, controller.signal).parseAsync(argv, { from: 'user' });
    return EXIT_OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT_OK;
      // Commander already printed its one-line message; a custom parser's UsageError arrives wrapped.
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (controller.signal.aborted) return EXIT_INTERRUPTED;
    if (e instanceof UsageError) {
      io.stderr(`error: ${e.message}\n`);
      return EXIT_USAGE;
    }
    const msg = e instanceof RunError ? e.message : `${(e as Error)?.message ?? String(e)}`;
    io.stderr(`error: ${msg.split('\n')[0]}\n`);
    return EXIT_FAILURE;
  } finally {
    unfollow();
    process.off('SIGINT', onSigint);
  }
}
