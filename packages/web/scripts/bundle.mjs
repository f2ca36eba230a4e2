// Bundles the page into a static folder (default dist/site/): index.html and style.css from static/, the page
// (app.js), the engine worker (engine-worker.js), engine-wasm's kernel worker (kernel-worker.js) and its .wasm
// builds (wasm/). `node scripts/bundle.mjs [outDir]`; the tests call bundleSite() on a temporary folder.
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const pkg = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);

export async function bundleSite(outDir = join(pkg, 'dist/site')) {
  const wasmPkg = dirname(require.resolve('@fast-dllm/engine-wasm/package.json'));
  await mkdir(join(outDir, 'wasm'), { recursive: true });
  await build({
    entryPoints: {
      app: join(pkg, 'src/page/main.ts'),
      'engine-worker': join(pkg, 'src/worker/engine-worker.ts'),
      'kernel-worker': join(wasmPkg, 'dist/browser-worker.js'),
    },
    outdir: outDir, bundle: true, format: 'esm', platform: 'browser', target: 'es2022', minify: true, sourcemap: true,
    // @fast-dllm/model imports node:fs lazily, only in its file readers, which the page never calls.
    external: ['node:*'], logLevel: 'warning', legalComments: 'none',
  });
  for (const f of ['index.html', 'style.css']) await copyFile(join(pkg, 'static', f), join(outDir, f));
  const builds = (await readdir(join(wasmPkg, 'build'))).filter((f) => f.endsWith('.wasm'));
  if (builds.length === 0) throw new Error(`no .wasm builds in ${join(wasmPkg, 'build')}; build @fast-dllm/engine-wasm first`);
  for (const f of builds) await copyFile(join(wasmPkg, 'build', f), join(outDir, 'wasm', f));
  return outDir;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = await bundleSite(process.argv[2]);
  console.log(`web: page bundled into ${out}`);
}
