/**
 * A local stand-in for the Hugging Face hub on 127.0.0.1: the tree and revision APIs, `resolve/` downloads with
 * Range support, x-linked-etag / x-linked-size headers, and knobs to cut a download short or corrupt it.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HubFile {
  path: string;
  data: Buffer;
  /** Served as an LFS file: the tree lists its sha256 and downloads carry x-linked-etag. */
  lfs?: boolean;
}

export interface HubOptions {
  repo: string;
  revision?: string;
  files: HubFile[];
  /** Paths whose first download is cut after this many bytes (the socket is destroyed). */
  cutAfter?: Record<string, number>;
  /** Paths served with different bytes than the listing's hash claims. */
  corrupt?: Set<string>;
  /** Only the revision API (siblings), no tree API. */
  noTree?: boolean;
  /** The revision API ignores ?blobs=true (no sizes or hashes in the listing; only x-linked-etag tells). */
  bareSiblings?: boolean;
  /** Bearer token the hub requires, if any. */
  token?: string;
  /** Tree API pages of this many entries, linked by `Link: <…&cursor=N>; rel="next"` like the hub's. */
  treePageSize?: number;
  /** Paths served without a length and without end (64 KiB chunks until the client hangs up, at most 64 MiB). */
  endless?: Set<string>;
}

export interface Hub {
  url: string;
  /** Every request: method, url, range header. */
  log: Array<{ url: string; range?: string; auth?: string }>;
  close(): Promise<void>;
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export async function startHub(o: HubOptions): Promise<Hub> {
  const rev = o.revision ?? 'main';
  const log: Hub['log'] = [];
  const cut = new Map(Object.entries(o.cutAfter ?? {}));
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = decodeURIComponent(req.url ?? '');
    log.push({ url, range: req.headers.range, auth: req.headers.authorization });
    if (o.token && req.headers.authorization !== `Bearer ${o.token}`) {
      res.writeHead(401).end('unauthorized');
      return;
    }
    const api = `/api/models/${o.repo}`;
    const treeUrl = `${api}/tree/${rev}?recursive=true`;
    if (!o.noTree && (url === treeUrl || url.startsWith(`${treeUrl}&cursor=`))) {
      const tree = o.files.map((f) => ({
        type: 'file', path: f.path, size: f.data.length,
        ...(f.lfs ? { lfs: { oid: sha256(f.data), size: f.data.length } } : {}),
      }));
      const size = o.treePageSize ?? tree.length;
      const from = url === treeUrl ? 0 : Number(url.slice(treeUrl.length + '&cursor='.length));
      const head: Record<string, string> = { 'content-type': 'application/json' };
      if (from + size < tree.length) head.link = `<http://${req.headers.host}${treeUrl}&cursor=${from + size}>; rel="next"`;
      res.writeHead(200, head).end(JSON.stringify(tree.slice(from, from + size)));
      return;
    }
    if (url === `${api}/revision/${rev}` || url === `${api}/revision/${rev}?blobs=true`) {
      // Like the hub: sizes and LFS hashes only with ?blobs=true.
      const blobs = url.endsWith('?blobs=true') && !o.bareSiblings;
      const siblings = o.files.map((f) => (blobs
        ? { rfilename: f.path, size: f.data.length, ...(f.lfs ? { lfs: { sha256: sha256(f.data), size: f.data.length } } : {}) }
        : { rfilename: f.path }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: o.repo, siblings }));
      return;
    }
    const prefix = `/${o.repo}/resolve/${rev}/`;
    const file = url.startsWith(prefix) ? o.files.find((f) => f.path === url.slice(prefix.length)) : undefined;
    if (!file) {
      res.writeHead(404).end('not found');
      return;
    }
    if (o.endless?.has(file.path)) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let sent = 0;
      const more = () => {
        while (sent < 64 * 2 ** 20 && !res.destroyed) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      res.on('close', () => (sent = Infinity));
      more();
      return;
    }
    let data = file.data;
    const headers: Record<string, string | number> = { 'accept-ranges': 'bytes' };
    if (file.lfs) {
      headers['x-linked-etag'] = `"${sha256(file.data)}"`;
      headers['x-linked-size'] = file.data.length;
    }
    if (o.corrupt?.has(file.path)) data = Buffer.from(data.map((b) => b ^ 0xff));
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) {
      start = Number(m[1]);
      if (start >= data.length) {
        res.writeHead(416, headers).end();
        return;
      }
      headers['content-range'] = `bytes ${start}-${data.length - 1}/${data.length}`;
    }
    const body = data.subarray(start);
    headers['content-length'] = body.length;
    res.writeHead(m ? 206 : 200, headers);
    const limit = cut.get(file.path);
    if (limit !== undefined) {
      cut.delete(file.path); // only the first download is cut
      res.write(body.subarray(0, limit), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(body);
  };
  const server: Server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
