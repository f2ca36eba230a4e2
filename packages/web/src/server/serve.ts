/**
 * The local server of `fast-dllm web`: the page (dist/site/) and a model directory at /models/default/, with the
 * headers that make the page cross-origin isolated, so the engine gets SharedArrayBuffer and threads:
 *   Cross-Origin-Opener-Policy: same-origin, Cross-Origin-Embedder-Policy: require-corp on every response, and
 *   Cross-Origin-Resource-Policy: same-origin on every asset (scripts, workers, .wasm, model files).
 * Model files answer Range requests (the page reads safetensors headers before it downloads anything).
 * GET and HEAD only; nothing outside the two folders is reachable: an encoded separator (`%2F`, `%5C`) in a path
 * segment is refused, and a file is served only when its real path (symlinks resolved) lies inside its folder.
 */
import { createReadStream } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { basename, dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface WebServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8090; 0 picks a free port. */
  port?: number;
  /** The bundled page; default this package's dist/site. */
  siteDir?: string;
  /** The model served at /models/default/; default the bundled model of @fast-dllm/default-model. */
  modelDir?: string;
}

export interface WebServer {
  /** http://host:port/ */
  readonly url: string;
  readonly server: Server;
  close(): Promise<void>;
}

export const DEFAULT_PORT = 8090;

/** Header on /models/default/config.json: the model folder's file names, comma-separated (loader/directory.ts). */
export const MODEL_FILES_HEADER = 'X-Model-Files';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
  '.safetensors': 'application/octet-stream',
};

export const defaultSiteDir = (): string => fileURLToPath(new URL('../site/', import.meta.url));

async function bundledModelDir(): Promise<string> {
  const m = await import('@fast-dllm/default-model');
  return m.defaultModelDir;
}

/** A path under `root` for a URL path, or null when it would leave the root (or names a hidden file). */
export function safeJoin(root: string, urlPath: string): string | null {
  // Segment by segment: a %2F inside a segment must not become a separator (`etc-link%2Fpasswd`).
  const segments: string[] = [];
  for (const raw of urlPath.split('/')) {
    let s: string;
    try {
      s = decodeURIComponent(raw);
    } catch {
      return null;
    }
    if (s.includes('\0') || s.includes('/') || s.includes('\\') || s === '..' || s.startsWith('.')) return null;
    segments.push(s);
  }
  const decoded = segments.join('/');
  const full = resolve(root, `.${decoded.startsWith('/') ? '' : '/'}${decoded}`);
  const base = resolve(root);
  return full === base || full.startsWith(base + sep) ? full : null;
}

/** `bytes=a-b`, `bytes=a-`, `bytes=-n` over a file of `size` bytes → [start, end] inclusive; 'bad' when unsatisfiable. */
export function parseRange(header: string | undefined, size: number): [number, number] | null | 'bad' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null; // multiple ranges or another unit: send the whole file
  let start: number;
  let end: number;
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]));
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start > end || start >= size) return 'bad';
  return [start, end];
}

function isolationHeaders(res: ServerResponse): void {
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('X-Content-Type-Options', 'nosniff');
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

/**
 * The real path of `file` when it (symlinks resolved) lies inside the real `root` — or, for a Hugging Face cache
 * snapshot (`…/snapshots/<rev>`, whose files link to `../../blobs/`), inside that repository's blobs folder; null
 * otherwise.
 */
export async function realInside(root: string, file: string): Promise<string | null> {
  try {
    const real = await realpath(file);
    const roots = [root, ...(basename(dirname(resolve(root))) === 'snapshots' ? [join(root, '..', '..', 'blobs')] : [])];
    for (const r of roots) {
      const base = await realpath(r).catch(() => null);
      if (base && (real === base || real.startsWith(base + sep))) return real;
    }
    return null;
  } catch {
    return null;
  }
}

async function sendFile(req: IncomingMessage, res: ServerResponse, root: string, file: string, ranges: boolean): Promise<void> {
  const path = await realInside(root, file);
  if (!path) return sendText(res, 404, 'not found\n');
  let st;
  try {
    st = await stat(path);
  } catch {
    return sendText(res, 404, 'not found\n');
  }
  if (!st.isFile()) return sendText(res, 404, 'not found\n');
  res.setHeader('Content-Type', TYPES[extname(path)] ?? 'application/octet-stream');
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('Last-Modified', st.mtime.toUTCString());
  let start = 0;
  let end = st.size - 1;
  if (ranges) {
    res.setHeader('Accept-Ranges', 'bytes');
    const r = parseRange(req.headers.range, st.size);
    if (r === 'bad') {
      res.setHeader('Content-Range', `bytes */${st.size}`);
      return sendText(res, 416, 'range not satisfiable\n');
    }
    if (r) {
      [start, end] = r;
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${start}-${end}/${st.size}`);
    }
  }
  res.setHeader('Content-Length', Math.max(0, end - start + 1));
  if (req.method === 'HEAD' || st.size === 0) {
    res.end();
    return;
  }
  await new Promise<void>((done) => {
    const stream = createReadStream(path, { start, end });
    stream.on('error', () => {
      res.destroy();
      done();
    });
    res.on('close', () => {
      stream.destroy();
      done();
    });
    stream.pipe(res);
  });
}

/** Starts the server; rejects with a clear message when the site is not built or the port is taken. */
export async function startWebServer(options: WebServerOptions = {}): Promise<WebServer> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? DEFAULT_PORT;
  const siteDir = options.siteDir ?? defaultSiteDir();
  const modelDir = options.modelDir ?? (await bundledModelDir());
  try {
    await stat(join(siteDir, 'index.html'));
  } catch {
    throw new Error(`the page is not built (${join(siteDir, 'index.html')} is missing); run \`npm run build -w @fast-dllm/web\``);
  }
  let modelFiles: string[];
  try {
    modelFiles = await readdir(modelDir);
  } catch {
    throw new Error(`model directory ${modelDir} cannot be read; pass a Hugging Face model folder`);
  }
  if (!modelFiles.includes('config.json')) throw new Error(`${modelDir} has no config.json; pass a Hugging Face model folder`);

  const server = createServer((req, res) => {
    isolationHeaders(res);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return sendText(res, 405, 'only GET and HEAD\n');
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const modelPrefix = '/models/default/';
    let file: string | null;
    const isModel = path.startsWith(modelPrefix);
    if (isModel) {
      const rest = path.slice(modelPrefix.length);
      file = rest === '' || rest.includes('/') ? null : safeJoin(modelDir, rest);
    } else {
      file = safeJoin(siteDir, path.endsWith('/') ? `${path}index.html` : path);
    }
    if (!file) return sendText(res, 404, 'not found\n');
    if (path === `${modelPrefix}config.json`) {
      // The folder's files, so that the page asks only for optional files that exist (each missing one was a 404
      // in the browser's console on every load). UrlDirectory reads this header.
      void readdir(modelDir).then((names) => {
        res.setHeader(MODEL_FILES_HEADER, names.filter((n) => /^[\w.-]+$/.test(n)).join(','));
        return sendFile(req, res, modelDir, file, true);
      }).catch(() => res.destroy());
      return;
    }
    void sendFile(req, res, isModel ? modelDir : siteDir, file, isModel).catch(() => res.destroy());
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      fail(e.code === 'EADDRINUSE' ? new Error(`port ${port} on ${host} is in use; pass another --port (0 picks a free one)`)
        : e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND' ? new Error(`cannot listen on ${host}: no such local address`)
          : e);
    });
    server.listen(port, host, () => ok());
  });
  const addr = server.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return {
    url: `http://${urlHost}:${actualPort}/`,
    server,
    close: () => new Promise<void>((ok) => {
      server.close(() => ok());
      server.closeAllConnections();
    }),
  };
}
