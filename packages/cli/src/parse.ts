import { UsageError } from './errors.js';

/** Commander option parsers that throw UsageError naming the flag, so every bad value exits with code 2. */

export function intArg(flag: string, min: number, max = Number.MAX_SAFE_INTEGER): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
      throw new UsageError(`${flag}: expected an integer ${range}, got '${v}'`);
    }
    return n;
  };
}

export function floatArg(flag: string, min: number, max: number, minExclusive = false): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    const low = minExclusive ? n > min : n >= min;
    if (v.trim() === '' || !Number.isFinite(n) || !low || n > max) {
      throw new UsageError(`${flag}: expected a number in ${minExclusive ? '(' : '['}${min}, ${max}], got '${v}'`);
    }
    return n;
  };
}

export function choiceArg<T extends string>(flag: string, choices: readonly T[]): (v: string) => T {
  return (v: string) => {
    if (!(choices as readonly string[]).includes(v)) {
      throw new UsageError(`${flag}: expected one of ${choices.join(', ')}, got '${v}'`);
    }
    return v as T;
  };
}

/** `12,34,56` → Int32Array; each id a non-negative integer. */
export function idsArg(flag: string): (v: string) => Int32Array {
  return (v: string) => {
    const parts = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (parts.length === 0) throw new UsageError(`${flag}: expected comma-separated token ids, got '${v}'`);
    const ids = new Int32Array(parts.length);
    parts.forEach((p, i) => {
      if (!/^\d+$/.test(p) || Number(p) > 0x7fffffff) throw new UsageError(`${flag}: '${p}' is not a token id (a non-negative integer)`);
      ids[i] = Number(p);
    });
    return ids;
  };
}

/** `ORG/NAME` as the hub spells repository ids. */
export function repoIdArg(v: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/.test(v) || v.includes('..')) {
    throw new UsageError(`pull: expected a repository id ORG/NAME (e.g. GSAI-ML/LLaDA-8B-Instruct), got '${v}'`);
  }
  return v;
}
