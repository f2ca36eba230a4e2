/**
 * The Node versions the project says it supports are the ones its dependencies accept: every package declares the
 * root's `engines.node`, and every package in package-lock.json accepts the lowest version of each part of that
 * range (and Node 24), so `npm install` on a supported Node prints no EBADENGINE. (The root said >=20.17 while
 * cookie 2, through Fastify's light-my-request, wants Node 22, @fastify/sse 20.20.2 and vite 20.19 or 22.12.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import semver from 'semver';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const readJson = (p: string) => JSON.parse(readFileSync(join(ROOT, p), 'utf8')) as Record<string, any>;
const root = readJson('package.json');
const range: string = root.engines.node;

describe('supported Node versions', () => {
  it('every workspace package declares the root range', () => {
    const declared = (root.workspaces as string[]).map((w) => [w, readJson(`${w}/package.json`).engines?.node] as const);
    expect(declared.filter(([w, r]) => w !== 'test' && r !== range)).toEqual([]);
  });

  it('every locked dependency accepts the lowest version of each part of the range, and Node 24', () => {
    const lows = new semver.Range(range).set.map((set) => semver.minVersion(new semver.Range(set.map((c) => c.value).join(' ')))!.version);
    expect(lows.length).toBeGreaterThan(0);
    const lock = readJson('package-lock.json');
    for (const v of [...lows, '24.0.0']) {
      const refusing = Object.entries(lock.packages as Record<string, { engines?: { node?: string } }>)
        .filter(([, p]) => typeof p.engines?.node === 'string' && !semver.satisfies(v, p.engines.node))
        .map(([k, p]) => `${k.replace(/^.*node_modules\//, '')} wants ${p.engines!.node}`);
      expect(refusing, `Node ${v}`).toEqual([]);
    }
  });
});
