/**
 * A Hugging Face model directory as the page sees one: a URL serving its files, or the files of a folder the user
 * picked. Both answer the same four questions, so the loader (load-model.ts) does not care which it has.
 * No DOM and no Node API: this runs in the engine worker.
 */
import type { ByteSource } from '@fast-dllm/model';

export interface ModelDirectory {
  /** Shown in messages: the URL or the folder name. */
  readonly label: string;
  /** A file's place, for messages: the folder's path or the file's URL. */
  where(name: string): string;
  /** A file's text, or undefined when the directory has no such file. */
  text(name: string): Promise<string | undefined>;
  /** Random access to a file without fetching it whole (safetensors headers); undefined when absent. */
  probe(name: string): Promise<ByteSource | undefined>;
  /** The whole file as a Blob; `onBytes` is told of every chunk that arrives. */
  whole(name: string, onBytes: (n: number) => void, signal?: AbortSignal): Promise<Blob>;
}

/** Bytes asked for by the first ranged read of a file: enough for the header of most checkpoints. */
const PREFIX_BYTES = 256 * 1024;

/** A folder picked with <input type=file webkitdirectory>: paths relative to the folder, as the browser gives them. */
export class FolderDirectory implements ModelDirectory {
  private readonly files = new Map<string, File>();
  readonly label: string;

  /**
   * `files`: every picked file with its relative path ("my-model/config.json"). The model is the shallowest folder
   * that holds a config.json, so picking the model folder or the folder above it both work.
   */
  constructor(files: readonly { path: string; file: File }[]) {
    const configs = files.map((f) => f.path).filter((p) => p === 'config.json' || p.endsWith('/config.json'));
    if (configs.length === 0) {
      const top = files[0]?.path.split('/')[0] ?? 'the folder';
      throw new Error(`no config.json in ${top} (${files.length} files); pick the folder of a Hugging Face model, the one holding config.json and the .safetensors files`);
    }
    const depth = (p: string) => p.split('/').length;
    const shallowest = configs.reduce((a, b) => (depth(b) < depth(a) ? b : a));
    const root = shallowest.slice(0, shallowest.length - 'config.json'.length); // '' or 'dir/…/'
    for (const f of files) if (f.path.startsWith(root) && !f.path.slice(root.length).includes('/')) this.files.set(f.path.slice(root.length), f.file);
    this.label = root.replace(/\/$/, '') || files[0].path.split('/')[0];
  }

  where(name: string): string {
    return `${this.label}/${name}`;
  }

  async text(name: string): Promise<string | undefined> {
    return this.files.get(name)?.text();
  }

  async probe(name: string): Promise<ByteSource | undefined> {
    const f = this.files.get(name);
    if (!f) return undefined;
    return {
      size: f.size,
      read: async (offset, length) => {
        if (offset < 0 || offset + length > f.size) throw new RangeError(`read [${offset}, ${offset + length}) past end ${f.size} of ${name}`);
        return new Uint8Array(await f.slice(offset, offset + length).arrayBuffer());
      },
    };
  }

  async whole(name: string, onBytes: (n: number) => void): Promise<Blob> {
    const f = this.files.get(name);
    if (!f) throw new Error(`${this.label}: ${name} is missing`);
    onBytes(f.size); // already on this machine: nothing to download
    return f;
  }
}

/** Why a fetch failed, in words a user can act on. */
function fetchError(url: string, e: unknown): Error {
  if ((e as Error)?.name === 'AbortError') return e as Error;
  return new Error(`cannot fetch ${url}: ${(e as Error)?.message ?? String(e)} (is the URL right, and does its server allow this page's origin through CORS?)`);
}

/** A URL serving a Hugging Face model directory (`…/resolve/main/`, a static folder, `fast-dllm web`'s /models/default/). */
export class UrlDirectory implements ModelDirectory {
  readonly label: string;
  private readonly base: URL;
  /** Bodies that had to be read whole while probing (a server that ignores Range and sends no length). */
  private readonly fetched = new Map<string, Blob>();
  /**
   * The folder's file names when its server lists them on config.json (`fast-dllm web` does: X-Model-Files):
   * an optional file that is not listed is absent without a request, so no 404 lands in the console.
   */
  private listing: Set<string> | undefined;

  /** `url`: absolute (the page resolves what the user typed against its own address). */
  constructor(url: string) {
    let base: URL;
    try {
      base = new URL(url);
    } catch {
      throw new Error(`'${url}' is not a URL; give the address of a model folder, e.g. https://huggingface.co/ORG/NAME/resolve/main/`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error(`'${url}' is not an http(s) URL`);
    if (base.pathname.endsWith('/config.json')) base = new URL('./', base);
    if (!base.pathname.endsWith('/')) base = new URL(`${base.pathname}/${base.search}`, base);
    this.base = base;
    this.label = base.href;
  }

  private url(name: string): string {
    return new URL(name, this.base).href;
  }

  where(name: string): string {
    return this.url(name);
  }

  private async get(name: string, init?: RequestInit): Promise<Response | undefined> {
    const url = this.url(name);
    if (this.listing && !this.listing.has(name)) return undefined;
    let res: Response;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw fetchError(url, e);
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`fetching ${url} failed: ${res.status} ${res.statusText}`.trim());
    }
    const files = res.headers.get('X-Model-Files');
    if (name === 'config.json' && files !== null) this.listing = new Set(files.split(',').filter(Boolean));
    return res;
  }

  async text(name: string): Promise<string | undefined> {
    return (await this.get(name))?.text();
  }

  /**
   * Asks for the first bytes with a Range request. A 206 answer gives the file size in Content-Range and later reads
   * are ranged too; a 200 answer (Range ignored) is read only as far as needed and cancelled, its size taken from
   * Content-Length; with no length either, the body is read whole once and kept for `whole`.
   */
  async probe(name: string): Promise<ByteSource | undefined> {
    const url = this.url(name);
    const res = await this.get(name, { headers: { Range: `bytes=0-${PREFIX_BYTES - 1}` } });
    if (!res) return undefined;
    let size: number;
    let prefix: Uint8Array;
    const total = res.headers.get('Content-Range')?.match(/\/(\d+)\s*$/);
    if (res.status === 206 && total) {
      size = Number(total[1]);
      prefix = new Uint8Array(await res.arrayBuffer());
    } else if (res.headers.get('Content-Length') !== null && !res.headers.get('Content-Encoding')) {
      size = Number(res.headers.get('Content-Length'));
      prefix = await readPrefix(res, Math.min(size, PREFIX_BYTES));
    } else {
      const blob = await res.blob();
      this.fetched.set(name, blob);
      size = blob.size;
      prefix = new Uint8Array(await blob.slice(0, PREFIX_BYTES).arrayBuffer());
    }
    const ranged = res.status === 206;
    return {
      size,
      read: async (offset, length) => {
        if (offset < 0 || offset + length > size) throw new RangeError(`read [${offset}, ${offset + length}) past end ${size} of ${url}`);
        if (offset + length <= prefix.length) return prefix.subarray(offset, offset + length);
        const kept = this.fetched.get(name);
        if (kept) return new Uint8Array(await kept.slice(offset, offset + length).arrayBuffer());
        let r: Response;
        try {
          r = await fetch(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
        } catch (e) {
          throw fetchError(url, e);
        }
        if (!r.ok) throw new Error(`fetching bytes ${offset}–${offset + length} of ${url} failed: ${r.status} ${r.statusText}`.trim());
        if (r.status === 206 && ranged) return new Uint8Array(await r.arrayBuffer());
        // Range ignored: skip to the offset in the body (a header longer than the first prefix: rare).
        const all = await readPrefix(r, offset + length);
        return all.subarray(offset, offset + length);
      },
    };
  }

  async whole(name: string, onBytes: (n: number) => void, signal?: AbortSignal): Promise<Blob> {
    const kept = this.fetched.get(name);
    if (kept) {
      onBytes(kept.size);
      return kept;
    }
    const res = await this.get(name, { signal });
    if (!res) throw new Error(`${this.url(name)} is missing (404)`);
    if (!res.body) {
      const b = await res.blob();
      onBytes(b.size);
      return b;
    }
    const chunks: Uint8Array[] = [];
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      onBytes(value.length);
    }
    return new Blob(chunks as BlobPart[]);
  }
}

/** The first `n` bytes of a response body (fewer if it is shorter); the rest is cancelled. */
async function readPrefix(res: Response, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n); // (n,) bytes
  let got = 0;
  const reader = res.body!.getReader();
  while (got < n) {
    const { done, value } = await reader.read();
    if (done) break;
    const take = Math.min(value.length, n - got);
    out.set(value.subarray(0, take), got);
    got += take;
  }
  await reader.cancel();
  return out.subarray(0, got);
}
