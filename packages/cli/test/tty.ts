/**
 * The real binary in a pseudo-terminal: a detached tmux session on a private socket, driven by send-keys and read
 * by capture-pane. What a person sees on a terminal (echo of typed text, progress bars, Ctrl-C) only happens on a
 * tty, so these checks cannot use pipes.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { BIN } from './run.js';

const TMUX = ['/usr/bin/tmux', '/usr/local/bin/tmux', '/opt/homebrew/bin/tmux'].find((p) => existsSync(p));

/** Why the terminal tests cannot run here, or null. CI installs tmux (.ci/run), so there it fails instead. */
export const noTmux: string | null = TMUX ? null : 'tmux is not installed (apt-get install tmux)';
if (noTmux && process.env.CI) throw new Error(`terminal tests: ${noTmux}; .ci/run installs it`);

let sessions = 0;

export class Terminal {
  private readonly socket = `fast-dllm-test-${process.pid}-${sessions++}`;

  /** Runs `node bin/fast-dllm.js ...args` in a cols × rows terminal; the pane shows `[exit N]` when it ends. */
  constructor(args: string[], { cols = 100, rows = 40 } = {}) {
    const quoted = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    this.tmux('new-session', '-d', '-x', String(cols), '-y', String(rows), `${quoted}; echo "[exit $?]"; sleep 120`);
  }

  private tmux(...args: string[]): string {
    return execFileSync(TMUX!, ['-L', this.socket, '-f', '/dev/null', ...args], { encoding: 'utf8', timeout: 10_000 });
  }

  /** Types text (literally), then Enter when `enter`. */
  type(text: string, enter = true): void {
    this.tmux('send-keys', '-t', '0', '-l', text);
    if (enter) this.tmux('send-keys', '-t', '0', 'Enter');
  }

  key(name: string): void {
    this.tmux('send-keys', '-t', '0', name);
  }

  /** The visible screen (tmux drops trailing spaces of each line), trailing blank lines dropped. */
  screen(): string {
    return this.tmux('capture-pane', '-p', '-t', '0').replace(/\n+$/, '');
  }

  /** Polls the screen until `pattern` matches (every 100 ms, at most `timeoutMs`); throws with the screen if not. */
  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = this.screen();
      if (pattern.test(s)) return s;
      if (Date.now() > end) throw new Error(`terminal: ${pattern} did not appear within ${timeoutMs} ms; screen:\n${s}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  close(): void {
    try {
      this.tmux('kill-server');
    } catch {
      // already gone
    }
  }
}
