/**
 * `fast-dllm pull ORG/NAME`: download a model from a Hugging Face hub (or anything that speaks its HTTP API).
 *
 * Listing: GET {endpoint}/api/models/{repo}/tree/{rev}?recursive=true (sizes + LFS sha256), falling back to
 * GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true (its `siblings`). Files: GET {endpoint}/{repo}/resolve/{rev}/{file}.
 * Each file is written to `<file>.part`, resumed with `Range: bytes=N-` after an interruption (within one run,
 * with retries, and across runs), checked against the expected size and sha256 where the hub gives them
 * (tree `lfs.oid`, or the `x-linked-etag` header), and renamed into place only when it checks out. File names
 * from the listing are untrusted: only plain names land in the cache (no `\`, `..`, drive or absolute paths), and
 * a download never grows past its expected size, or past `unlistedMaxBytes` when nothing says its size.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { RunError } from './errors.js';

export interface PullOptions {
  repo: string;
  revision: string;
  /** Models land in <cacheDir>/<org>/<name>. */
  cacheDir: string;
  endpoint: string;
  token?: string;
  /** Attempts per file before giving up (each resumes where the last stopped). */
  attempts?: number;
  progress?: boolean;
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Most bytes taken for a file whose size neither the listing nor the response gives (default 64 MiB). */
  unlistedMaxBytes?: number;
}

const UNLISTED_MAX_BYTES = 64 * 2 ** 20;

/** A file refused outright (its name, or more bytes than it may have): nothing is kept to resume. */
class RefusedFile extends RunError {}

export interface RemoteFile {
  path: string;
  /** Bytes, when the listing says. */
  size?: number;
  /** Lower-case hex sha256 of an LFS file, when the listing says. */
  sha256?: string;
}

export function defaultCacheDir(): string {
  return process.env.FAST_DLLM_CACHE ?? join(homedir(), '.cache', 'fast-dllm', 'models');
}

/**
 * A listed path that stays a plain relative file name on every platform: no backslash (a separator on Windows:
 * `tokenizer\..\..\evil.bat`), no drive or absolute path, no '.', '..' or empty segment, no control characters.
 */
export function safeRemotePath(path: string): boolean {
  return path !== '' && !/[\\:\x00-\x1f\x7f]/.test(path) && !path.startsWith('/') && path.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

/** Files a model directory needs: configs, tokenizer, weights (safetensors only; .bin pickles are never fetched). */
export function wantedFile(path: string): boolean {
  if (!safeRemotePath(path)) return false;
  const base = path.split('/').pop() ?? path;
  if (path.includes('/')) return false; // sub-folders hold other formats (onnx/, original/, …)
  return (
    base.endsWith('.safetensors') ||
    base === 'model.safetensors.index.json' ||
    base === 'config.json' ||
    base === 'generation_config.json' ||
    base.startsWith('tokenizer') ||
    base === 'special_tokens_map.json' ||
    base === 'vocab.json' ||
    base === 'merges.txt' ||
    base.endsWith('.py') // remote-code configs (LLaDA, Dream) ship their modelling files; harmless to keep
  );
}

function headers(token?: string, extra: Record<string, string> = {}): Record<string, string> {
  return token ? { authorization: `Bearer ${token}`, ...extra } : extra;
}

async function getJson(url: string, token: string | undefined, signal?: AbortSignal): Promise<{ status: number; body: unknown; next?: string }> {
  let res: Response;
  try {
    res = await fetch(url, { headers: headers(token), signal });
  } catch (e) {
    throw new RunError(`pull: cannot reach ${url}: ${(e as Error).message}`);
  }
  if (!res.ok) return { status: res.status, body: undefined };
  // The hub pages long listings: `Link: <url>; rel="next"` points at the next page.
  const next = /<([^>]+)>\s*;\s*rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
  try {
    return { status: res.status, body: await res.json(), next: next ? new URL(next, url).href : undefined };
  } catch {
    throw new RunError(`pull: ${url} did not return JSON`);
  }
}

/** Most listing pages followed (the hub's pages hold 1000 entries; no model repo comes near 1000 pages). */
const MAX_TREE_PAGES = 1000;

function authHint(status: number): string {
  return status === 401 || status === 403 ? ' (gated or private? set HF_TOKEN to a token with access)' : '';
}

/** Lists the repository's files at `revision`. */
export async function listFiles(o: PullOptions): Promise<RemoteFile[]> {
  const base = `${o.endpoint}/api/models/${o.repo}`;
  const rev = encodeURIComponent(o.revision);
  const tree = await getJson(`${base}/tree/${rev}?recursive=true`, o.token, o.signal);
  if (Array.isArray(tree.body)) {
    const entries = [...(tree.body as Array<Record<string, unknown>>)];
    const origin = new URL(o.endpoint).origin;
    let next = tree.next;
    for (let page = 1; next; page++) {
      // Follow pages on the hub's own origin only (the token goes with each request).
      if (new URL(next).origin !== origin) throw new RunError(`pull: the listing of ${o.repo} points its next page at another host (${next}); refusing to follow`);
      if (page >= MAX_TREE_PAGES) throw new RunError(`pull: the listing of ${o.repo} has more than ${MAX_TREE_PAGES} pages; refusing to go on`);
      const more = await getJson(next, o.token, o.signal);
      if (!Array.isArray(more.body)) throw new RunError(`pull: page ${page + 1} of the listing of ${o.repo} failed: HTTP ${more.status}${authHint(more.status)}`);
      entries.push(...(more.body as Array<Record<string, unknown>>));
      next = more.next;
    }
    const out: RemoteFile[] = [];
    for (const e of entries) {
      if (e.type !== 'file' || typeof e.path !== 'string') continue;
      const lfs = e.lfs as { oid?: unknown; size?: unknown } | undefined;
      const sha = typeof lfs?.oid === 'string' && /^[0-9a-f]{64}$/i.test(lfs.oid) ? lfs.oid.toLowerCase() : undefined;
      const size = typeof lfs?.size === 'number' ? lfs.size : typeof e.size === 'number' ? e.size : undefined;
      out.push({ path: e.path, size, sha256: sha });
    }
    return out;
  }
  // blobs=true adds sizes and LFS sha256 to the siblings.
  const info = await getJson(`${base}/revision/${rev}?blobs=true`, o.token, o.signal);
  type Sibling = { rfilename?: unknown; size?: unknown; lfs?: { sha256?: unknown; size?: unknown } };
  const siblings = (info.body as { siblings?: Sibling[] } | undefined)?.siblings;
  if (!Array.isArray(siblings)) {
    const status = info.status !== 200 ? info.status : tree.status;
    throw new RunError(`pull: cannot list ${o.repo}@${o.revision} on ${o.endpoint}: HTTP ${status}${authHint(status)}`);
  }
  return siblings
    .filter((s) => typeof s.rfilename === 'string')
    .map((s) => ({
      path: s.rfilename as string,
      size: typeof s.lfs?.size === 'number' ? s.lfs.size : typeof s.size === 'number' ? s.size : undefined,
      sha256: typeof s.lfs?.sha256 === 'string' && /^[0-9a-f]{64}$/i.test(s.lfs.sha256) ? s.lfs.sha256.toLowerCase() : undefined,
    }));
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return h.digest('hex');
}

interface Progress {
  start(total: number, name: string): void;
  update(done: number): void;
  stop(): void;
}

function makeProgress(enabled: boolean, bars: cliProgress.MultiBar | undefined): Progress {
  let bar: cliProgress.SingleBar | undefined;
  return {
    start(total, name) {
      if (enabled && bars) bar = bars.create(total, 0, { name });
    },
    update(done) {
      bar?.update(done);
    },
    stop() {
      bar?.stop();
    },
  };
}

/**
 * One attempt to bring `part` up to the complete file. Returns the expected sha256 the server announced
 * (x-linked-etag), if any. Throws on HTTP errors; a network failure leaves `part` with what arrived.
 */
async function downloadOnce(
  url: string, part: string, file: RemoteFile, o: PullOptions, progress: Progress,
): Promise<{ sha256?: string; size?: number }> {
  let have = (await fileSize(part)) ?? 0;
  if (file.size !== undefined && have > file.size) {
    await rm(part, { force: true }); // longer than the file: not ours to resume
    have = 0;
  }
  if (file.size !== undefined && have === file.size && have > 0) return {};
  const res = await fetch(url, {
    headers: headers(o.token, have > 0 ? { range: `bytes=${have}-` } : {}),
    signal: o.signal,
    redirect: 'follow',
  });
  const linked = res.headers.get('x-linked-etag')?.replace(/^W\//, '').replace(/"/g, '');
  const sha256 = linked && /^[0-9a-f]{64}$/i.test(linked) ? linked.toLowerCase() : undefined;
  const linkedSize = Number(res.headers.get('x-linked-size') ?? NaN);
  if (res.status === 416 && have > 0) {
    // Nothing past what we hold: the part is complete (the checks below decide whether it is right).
    await res.body?.cancel();
    return { sha256, size: Number.isFinite(linkedSize) ? linkedSize : have };
  }
  if (!(res.status === 200 || res.status === 206)) {
    await res.body?.cancel();
    throw new RunError(`pull: GET ${url}: HTTP ${res.status}${authHint(res.status)}`);
  }
  const append = res.status === 206 && have > 0;
  if (!append) have = 0; // the server ignored the Range: start over
  const length = Number(res.headers.get('content-length') ?? NaN);
  const total = file.size ?? (Number.isFinite(linkedSize) ? linkedSize : Number.isFinite(length) ? have + length : undefined);
  // A server that sends more than the file's size (or, with no size anywhere, more than the cap) is cut off.
  const limit = total ?? o.unlistedMaxBytes ?? UNLISTED_MAX_BYTES;
  progress.start(total ?? 0, file.path);
  let done = have;
  progress.update(done);
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  let over = false;
  body.on('data', (c: Buffer) => {
    done += c.length;
    progress.update(done);
    if (done > limit && !over) {
      over = true;
      body.destroy(new Error('over the limit'));
    }
  });
  try {
    await pipeline(body, createWriteStream(part, { flags: append ? 'a' : 'w' }));
  } catch (e) {
    if (!over) throw e;
    await rm(part, { force: true });
    throw new RefusedFile(`pull: ${file.path}: the server sent more than ${limit} bytes (${total !== undefined ? 'its expected size' : 'the cap for a file whose size is not listed'}); refusing it`);
  } finally {
    progress.stop();
  }
  return { sha256, size: total };
}

/** Downloads one file to <dir>/<path>, resuming and verifying; skips it when a verified copy is there. */
async function pullFile(dir: string, file: RemoteFile, o: PullOptions, bars: cliProgress.MultiBar | undefined): Promise<'fetched' | 'present'> {
  const dest = join(dir, file.path);
  if (!safeRemotePath(file.path) || relative(dir, dest).startsWith('..') || isAbsolute(relative(dir, dest))) {
    throw new RefusedFile(`pull: the repository lists '${file.path}', which is not a plain file name inside the model directory; refusing it`);
  }
  const part = `${dest}.part`;
  await mkdir(dirname(dest), { recursive: true });
  const existing = await fileSize(dest);
  if (existing !== undefined && (file.size === undefined || existing === file.size)) {
    if (file.sha256 === undefined || (await sha256File(dest)) === file.sha256) return 'present';
  }
  const url = `${o.endpoint}/${o.repo}/resolve/${encodeURIComponent(o.revision)}/${file.path.split('/').map(encodeURIComponent).join('/')}`;
  const attempts = o.attempts ?? 4;
  const progress = makeProgress(o.progress ?? false, bars);
  let announced: { sha256?: string; size?: number } = {};
  for (let attempt = 1; ; attempt++) {
    try {
      announced = await downloadOnce(url, part, file, o, progress);
      break;
    } catch (e) {
      if (o.signal?.aborted || e instanceof RefusedFile) throw e;
      if (e instanceof RunError || attempt >= attempts) {
        const why = e instanceof RunError ? e.message : `pull: ${file.path}: ${(e as Error).message}`;
        throw new RunError(`${why} (partial download kept in ${part}; run pull again to resume)`);
      }
      o.log?.(`pull: ${file.path}: interrupted (${(e as Error).message}); resuming (attempt ${attempt + 1}/${attempts})`);
    }
  }
  const got = (await fileSize(part)) ?? 0;
  const size = file.size ?? announced.size;
  if (size !== undefined && got !== size) {
    await rm(part, { force: true });
    throw new RunError(`pull: ${file.path}: size mismatch: expected ${size} bytes, got ${got}; the partial file was removed, run pull again`);
  }
  const expected = file.sha256 ?? announced.sha256;
  if (expected !== undefined) {
    const actual = await sha256File(part);
    if (actual !== expected) {
      await rm(part, { force: true });
      throw new RunError(`pull: ${file.path}: sha256 mismatch: expected ${expected}, got ${actual}; the partial file was removed, run pull again`);
    }
  }
  await rename(part, dest); // atomic on one filesystem: a reader never sees a half-written file
  return 'fetched';
}

/** Downloads a model; returns the local directory. */
export async function pull(o: PullOptions): Promise<{ dir: string; files: string[] }> {
  const all = await listFiles(o);
  let files = all.filter((f) => wantedFile(f.path));
  if (!files.some((f) => f.path === 'config.json')) {
    throw new RunError(`pull: ${o.repo}@${o.revision} has no config.json; it is not a transformers model repository`);
  }
  const dir = join(o.cacheDir, ...o.repo.split('/'));
  await mkdir(dir, { recursive: true });
  const bars = o.progress
    ? new cliProgress.MultiBar(
        { format: ' {bar} {percentage}% | {value}/{total} B | {name}', stream: process.stderr, hideCursor: true, clearOnComplete: false },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  try {
    // The shard index decides which weights belong to the model (a repo may also hold other variants).
    const index = files.find((f) => f.path === 'model.safetensors.index.json');
    if (index) {
      await pullFile(dir, index, o, bars);
      const { readFile } = await import('node:fs/promises');
      let shards: Set<string>;
      try {
        const json = JSON.parse(await readFile(join(dir, index.path), 'utf8')) as { weight_map?: Record<string, string> };
        shards = new Set(Object.values(json.weight_map ?? {}));
      } catch (e) {
        throw new RunError(`pull: model.safetensors.index.json is not valid JSON: ${(e as Error).message}`);
      }
      const missing = [...shards].filter((s) => !all.some((f) => f.path === s));
      if (missing.length > 0) throw new RunError(`pull: the shard index names files the repository lacks: ${missing.join(', ')}`);
      files = files.filter((f) => !f.path.endsWith('.safetensors') || shards.has(f.path));
    } else if (!files.some((f) => f.path.endsWith('.safetensors'))) {
      throw new RunError(`pull: ${o.repo}@${o.revision} has no .safetensors weights (only safetensors are supported)`);
    }
    const fetched: string[] = [];
    for (const f of files) {
      const r = await pullFile(dir, f, o, bars);
      o.log?.(`pull: ${f.path}: ${r === 'present' ? 'already present' : 'downloaded'}`);
      fetched.push(f.path);
    }
    return { dir, files: fetched };
  } finally {
    bars?.stop();
  }
}
