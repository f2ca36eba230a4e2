/**
 * `fast-dllm web`: serves the browser page of @fast-dllm/web on this machine, cross-origin isolated (so the WASM
 * engine may use threads), with a model at /models/default/ (the bundled one, or --model DIR). Runs until Ctrl-C or SIGTERM, then exits 0.
 */
import { Command, Option } from 'commander';
import { RunError, UsageError } from './errors.js';
import { intArg } from './parse.js';
import { checkModelDir } from './modeldir.js';
import type { Io } from './io.js';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export function registerWeb(program: Command, io: Io, signal: AbortSignal): void {
  program
    .command('web')
    .description('serve the browser page (a dLLM running in the page, with the unmasking view) on this machine')
    .addOption(new Option('--port <n>', 'port (0 picks a free one)').argParser(intArg('--port', 0, 65535)).default(8090))
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--model <dir>', 'model folder the page loads by default (default: the bundled model)')
    .action(async (opts: { port: number; host: string; model?: string }) => {
      if (opts.host.trim() === '') throw new UsageError('--host: empty address');
      if (opts.model !== undefined) await checkModelDir(opts.model, '--model');
      let web: typeof import('@fast-dllm/web');
      try {
        web = await import('@fast-dllm/web');
      } catch (e) {
        throw new RunError(`cannot load @fast-dllm/web: ${(e as Error).message.split('\n')[0]}`);
      }
      let server: Awaited<ReturnType<typeof web.startWebServer>>;
      try {
        server = await web.startWebServer({ host: opts.host, port: opts.port, modelDir: opts.model });
      } catch (e) {
        const msg = (e as Error).message;
        throw /in use|no such local address|model directory|has no config\.json/.test(msg) ? new UsageError(msg) : new RunError(msg);
      }
      // SIGTERM (a container runtime, systemd, a launcher) stops it as Ctrl-C does, exit 0, as `serve` does; the
      // handler is in place before the address is printed, since whoever reads it may signal at once.
      let onTerm: () => void = () => undefined;
      const stop = new Promise<string>((resolve) => {
        if (signal.aborted) return resolve('SIGINT');
        onTerm = () => resolve('SIGTERM');
        process.once('SIGTERM', onTerm);
        signal.addEventListener('abort', () => resolve('SIGINT'), { once: true });
      });
      io.stdout(`fast-dllm web: serving ${server.url} (Ctrl-C to stop)\n`);
      if (!LOOPBACK.test(opts.host)) io.stderr(`warning: listening on ${opts.host}: other machines that can reach it can open the page and its model files\n`);
      const why = await stop;
      process.off('SIGTERM', onTerm);
      if (why === 'SIGTERM') io.stderr('fast-dllm web: SIGTERM: stopping\n'); // Ctrl-C has its own line (main.ts)
      await server.close();
      io.stderr('fast-dllm web: stopped\n');
    });
}
