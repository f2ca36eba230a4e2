/**
 * Node's fs and path, imported on first use. The browser-safe parts of this package (config normalisation,
 * safetensors over a ByteSource, tensor names, tokenizers from parsed JSON) must not import a Node module at
 * load time, or a browser bundle of them would fail; only the functions that read files call these.
 */
export const nodeFs = (): Promise<typeof import('node:fs/promises')> => import('node:fs/promises');
export const nodePath = (): Promise<typeof import('node:path')> => import('node:path');

/** dir + '/' + name, for file names in messages and paths handed to the lazily imported fs (no node:path needed). */
export function joinPath(dir: string, name: string): string {
  return /[\\/]$/.test(dir) ? dir + name : `${dir}/${name}`;
}
