import type { FileHandle } from 'node:fs/promises';
import { ModelFormatError } from './errors.js';
import { nodeFs } from './nodefs.js';

/** Random-access bytes: a file on disk, a Blob in a browser, a buffer in a test. */
export interface ByteSource {
  /** Total length in bytes. */
  size: number;
  /** Exactly `length` bytes starting at `offset`; rejects if the range is past the end. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

/** A ByteSource over an in-memory buffer (tests, browser uploads). */
export function bufferSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    async read(offset, length) {
      if (offset < 0 || offset + length > bytes.length) throw new RangeError(`read [${offset}, ${offset + length}) past end ${bytes.length}`);
      return bytes.subarray(offset, offset + length);
    },
  };
}

/**
 * A ByteSource over a Blob (a File picked in a browser, a downloaded body): each read slices out and reads only
 * its range, so a large file is never held in memory whole.
 */
export function blobSource(blob: Blob, label = 'blob'): ByteSource {
  return {
    size: blob.size,
    async read(offset, length) {
      if (offset < 0 || offset + length > blob.size) throw new RangeError(`read [${offset}, ${offset + length}) past end ${blob.size} of ${label}`);
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
}

/** A ByteSource over a file, read with positioned reads (never the whole file at once). */
export async function fileSource(path: string): Promise<ByteSource> {
  // Opening a FIFO for reading waits for a writer forever; a device reads without end. Only regular files.
  const st = await (await nodeFs()).stat(path);
  if (!st.isFile()) throw new ModelFormatError('not a regular file (a FIFO, device or directory); weights must be files', { file: path });
  const fh: FileHandle = await (await nodeFs()).open(path, 'r');
  const size = (await fh.stat()).size;
  return {
    size,
    async read(offset, length) {
      if (offset < 0 || offset + length > size) throw new RangeError(`read [${offset}, ${offset + length}) past end ${size} of ${path}`);
      const out = new Uint8Array(length); // (length) bytes
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new RangeError(`unexpected end of ${path} at ${offset + done}`);
        done += bytesRead;
      }
      return out;
    },
    async close() {
      await fh.close();
    },
  };
}
