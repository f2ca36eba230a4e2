#!/usr/bin/env bash
# Packs what the GPU machine lacks into .device/ (ignored by git, carried by the device tool): this machine's
# node binary and the installed, built workspace (node_modules without the build-only tools, every package's
# dist/, the WASM builds, the CUDA addon and its emulator build). The GPU machine has CUDA, CMake and PyTorch but
# no Node and no network. Run after `npm install`, from anywhere:
#   bash bench/cuda/pack-for-device.sh
# then, with the device tool: run(command="bash bench/cuda/device-run.sh", carry=[".device"], timeout_s=600).
set -euo pipefail
cd "$(dirname "$0")/../.."
addon=packages/engine-cuda/build/Release/fast_dllm_cuda.node
[ -f "$addon" ] || { echo "pack-for-device: $addon is missing: run npm install (needs nvcc) first" >&2; exit 1; }
mkdir -p .device
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"
xz -T0 -6 -c "$(readlink -f "$(command -v node)")" > .device/node.xz
# Build-only packages (compilers, turbo, the browser driver) are left out: the device only runs tests and benches.
tar -cJf .device/workspace.tar.xz \
  --exclude=node_modules/binaryen --exclude=node_modules/@turbo --exclude=node_modules/turbo \
  --exclude=node_modules/typescript --exclude=node_modules/prettier --exclude=node_modules/playwright-core \
  --exclude=node_modules/assemblyscript \
  node_modules packages/*/dist packages/engine-wasm/build \
  "$addon" packages/engine-cuda/build-emu/Release/fast_dllm_cuda_emu.node
du -ch .device/* | sed 's/^/pack-for-device: /'
