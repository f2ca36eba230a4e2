/**
 * The interpreter the code-execution tests use. Running as root, the sandbox runs programs as `nobody`, who
 * cannot enter root's home (a pyenv python3 there); the system interpreter can be run by anyone.
 */
import { existsSync } from 'node:fs';

export const PYTHON: string | undefined = process.getuid?.() === 0 && existsSync('/usr/bin/python3') ? '/usr/bin/python3' : undefined;
