// Before `npm pack` / `npm publish`: the tarball carries prebuilds/ as the last build left it. Says what goes in,
// and warns (fails with FAST_DLLM_CUDA_STRICT=1) when there is no prebuilt addon, or one older than the native
// sources it was built from: then users need nvcc to build from source at install time.
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { PKG_DIR, PLATFORM, PREBUILD_PLATFORMS, PREBUILT_ADDON, readPrebuildInfo } from './native.mjs';

const strict = process.env.FAST_DLLM_CUDA_STRICT === '1';
const problem = (msg) => {
  console.warn(`engine-cuda prepack: ${msg}`);
  if (strict) process.exit(1);
};
const sources = [join(PKG_DIR, 'CMakeLists.txt'), ...readdirSync(join(PKG_DIR, 'native'), { recursive: true, encoding: 'utf8' })
  .map((f) => join(PKG_DIR, 'native', f)).filter((f) => statSync(f).isFile())];
const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));

if (!PREBUILD_PLATFORMS.includes(PLATFORM)) {
  console.log(`engine-cuda prepack: no prebuilt addon is made on ${PLATFORM}`);
} else if (!existsSync(PREBUILT_ADDON)) {
  problem(`packing WITHOUT a prebuilt addon for ${PLATFORM} (the last build found no nvcc or failed: see build/status.json); installs will need nvcc to build it`);
} else if (statSync(PREBUILT_ADDON).mtimeMs < newest) {
  problem(`the prebuilt addon ${PREBUILT_ADDON} is older than native/ or CMakeLists.txt: run \`npm run build -w @fast-dllm/engine-cuda\` with nvcc first`);
} else {
  const info = readPrebuildInfo();
  console.log(`engine-cuda prepack: packing prebuilds/${PLATFORM} (CUDA ${info?.cuda}, ${info?.archs?.join(', ')}, glibc ${info?.glibc})`);
}
