/**
 * A CLI started by npm (`npx fast-dllm serve`, `npm exec`, `npm run`) runs under `sh -c`, and npm forwards the
 * SIGTERM or SIGINT it gets only to that shell. Where sh does not exec its command (dash, Debian's /bin/sh) the
 * shell dies and this process lives on as an orphan: a server kept answering, and the next start found its port in
 * use. So, when npm started us, we watch our parent; once it is gone, we send ourselves the SIGTERM the launcher
 * was sent, and stop as on a direct SIGTERM (serve and web drain and exit 0). Started any other way (a shell,
 * nohup, systemd) nothing changes: outliving the parent may be what the user wants there.
 */

/** How often the parent is checked: cheap (a getppid call), and fast enough that a restart finds the port free. */
const POLL_MS = 200;

/** Starts the watch when npm launched this process; returns the function that ends it. */
export function followLauncher(): () => void {
  if (process.env.npm_lifecycle_event === undefined) return () => undefined;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    process.kill(process.pid, 'SIGTERM');
  }, POLL_MS);
  timer.unref(); // never what keeps the process alive
  return () => clearInterval(timer);
}
