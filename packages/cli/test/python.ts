/**
 * The interpreter the code-execution tests use. Running as root, the sandbox runs programs as `nobody`, who
 * cannot enter root's home (a pyenv python3 there); the system interpreter can be run by anyone.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const PYTHON: string | undefined = process.getuid?.() === 0 && existsSync('/usr/bin/python3') ? '/usr/bin/python3' : undefined;

/**
 * Whether bubblewrap can isolate programs here (the eval sandbox refuses code tasks otherwise). CI installs it
 * (.ci/run) and runs these tests regardless, so that a missing bubblewrap fails there instead of skipping.
 */
export const HAVE_BWRAP: boolean = (() => {
  try {
    execFileSync('bwrap', ['--unshare-all', '--die-with-parent', '--ro-bind', '/', '/', 'true'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
})();
export const RUN_CODE_TESTS = HAVE_BWRAP || process.env.CI === 'true';
