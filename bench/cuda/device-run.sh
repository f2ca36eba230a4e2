#!/usr/bin/env bash
# One call on the GPU machine, after bench/cuda/pack-for-device.sh here:
#   run(command="bash bench/cuda/device-run.sh", carry=[".device"], timeout_s=600)
# Unpacks node and the workspace, prints the machine (GPU, driver, nvcc, torch) and what the addon sees (driver and
# CUDA runtime versions), rebuilds the addon with this machine's nvcc when the carried one does not load, or loads
# but finds no device while nvidia-smi lists one (e.g. a driver older than the addon's CUDA runtime), then runs:
# the GPU rows of the conformance harness, the kernel tests and the engine's bit-for-bit batch invariance tests, dense
# and mixture-of-experts (FAST_DLLM_REQUIRE_GPU=1: a GPU case that cannot run fails instead of skipping), the engine
# benchmark at LLaDA-8B's shape (full, prefix, dual at canvases 512 and 2048 against the floor; batched dual steps
# at batch 1, 4, 16), the same at Fast-dLLM v2 7B's shape (plan and fit, prefill, block step, block end, sub-block
# step), the GEMM sweep (32 and 512 rows), the same LLaDA steps in PyTorch, and a summary against issue #19's targets.
# Logs and JSON records go to $OUT. It exits 1, listing what failed, unless everything ran on the GPU.
# `--rehearse` runs the same sequence where there is no GPU: the emulator and a CPU miniature stand in for the
# benchmarks, GPU rows skip; the run still ends FAILED (no GPU), as it must.
set -uo pipefail
REHEARSE=0
[ "${1:-}" = "--rehearse" ] && REHEARSE=1
OUT=${OUT:-/tmp/fast-dllm-device-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT" /tmp/fast-dllm-node/bin
export FAST_DLLM_REQUIRE_GPU=$((1 - REHEARSE))
FAILED=()
failed() { FAILED+=("$1"); echo "FAILED: $1"; }

xz -dc .device/node.xz > /tmp/fast-dllm-node/bin/node && chmod +x /tmp/fast-dllm-node/bin/node || { echo "FAILED: unpacking node"; exit 1; }
export PATH=/tmp/fast-dllm-node/bin:$PATH
tar -xJf .device/workspace.tar.xz || { echo "FAILED: unpacking the workspace"; exit 1; }
{
  date -u
  echo "cpus: $(nproc)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    nvidia-smi -L
  else
    echo "nvidia-smi: not on PATH"
  fi
  echo "node $(node --version)"
  if command -v nvcc >/dev/null; then nvcc --version | tail -1; else echo "nvcc: not on PATH"; fi
  cmake --version | head -1
  $PY -c 'import torch; print("torch", torch.__version__, "built for CUDA", torch.version.cuda, "sees CUDA:", torch.cuda.is_available())'
} 2>&1 | tee "$OUT/device.txt"

# What the addon sees: deviceInfo() with the driver's and the runtime's CUDA versions, or why it does not load.
probe() {
  node --input-type=module -e "import { loadBinding, ADDON_PATH } from '@fast-dllm/engine-cuda';
    const b = loadBinding();
    console.log(b.ok ? JSON.stringify({ addon: ADDON_PATH, ...b.binding.deviceInfo() }) : 'addon not loaded: ' + b.reason);" 2>&1
}
P=$(probe)
echo "$P" | tee -a "$OUT/device.txt"
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')  # 0 when nvidia-smi is missing
if ! echo "$P" | grep -q '"available":true' && { echo "$P" | grep -q '^addon not loaded' || [ "$GPUS" -gt 0 ]; }; then
  echo "rebuilding the addon with this machine's nvcc (the carried one does not load, or sees none of the $GPUS GPU(s) nvidia-smi lists)" | tee -a "$OUT/device.txt"
  node --input-type=module -e "const m = await import('./packages/engine-cuda/scripts/native.mjs');
    const n = m.findNvcc();
    if (!n.path) { console.log('no nvcc: looked in ' + n.searched); process.exit(1); }
    const r = m.buildCudaAddon(n.path, { echo: false });
    console.log(r.ok ? 'rebuilt with ' + n.path + ' (' + m.nvccVersion(n.path) + ')' : 'rebuild FAILED, log ' + r.logFile);
    process.exit(r.ok ? 0 : 1);" 2>&1 | tee -a "$OUT/device.txt"
  cp packages/engine-cuda/build/cuda-build.log "$OUT/" 2>/dev/null
  P=$(probe)
  echo "after the rebuild: $P" | tee -a "$OUT/device.txt"
fi
[ "$GPUS" -gt 0 ] || failed "nvidia-smi lists no GPU"
echo "$P" | grep -q '"available":true' || failed "the CUDA addon sees no GPU: $P"

# GPU rows only (the emulator rows run on every CI machine): the harness's entries 'cuda f32' and 'cuda bf16', the
# kernel tests and the batch invariance test on the GPU addon. In a rehearsal they skip.
PRINT_ERRORS=1 node node_modules/vitest/vitest.mjs run test/conformance packages/engine-cuda/test/kernels.test.ts \
  packages/engine-cuda/test/batching.test.ts packages/engine-cuda/test/moe.test.ts \
  --testNamePattern '^cuda (f32|bf16):|^cuda kernels on gpu|^cuda engine on gpu' --reporter=verbose > "$OUT/conformance.log" 2>&1 \
  || failed "GPU conformance, kernel and batch invariance tests (see conformance.log)"

EMU=(); TORCH=(--iters 10)
[ $REHEARSE = 1 ] && EMU=(--emulator) && TORCH=(--miniature --device cpu --iters 2)
node bench/cuda/bench.mjs "${EMU[@]}" --iters 10 --out "$OUT/bench-cuda.json" > "$OUT/bench-cuda.log" 2>&1 || failed "bench.mjs (see bench-cuda.log)"
node bench/cuda/bench.mjs "${EMU[@]}" --shape v2-7b --iters 10 --out "$OUT/bench-cuda-v2-7b.json" > "$OUT/bench-cuda-v2-7b.log" 2>&1 \
  || failed "bench.mjs --shape v2-7b (see bench-cuda-v2-7b.log)"
for rows in 32 512; do
  node bench/cuda/gemm-sweep.mjs "${EMU[@]}" --rows $rows --iters 20 || failed "gemm-sweep.mjs --rows $rows (see gemm-sweep.log)"
done > "$OUT/gemm-sweep.log" 2>&1
PYTHONUNBUFFERED=1 $PY bench/cuda/torch_bench.py "${TORCH[@]}" --out "$OUT/bench-torch.json" > "$OUT/bench-torch.log" 2>&1 || failed "torch_bench.py (see bench-torch.log)"

echo "---- summary"
grep -E "^ *(Test Files|Tests) " "$OUT/conformance.log"
grep -cE "↓ .*not supported" "$OUT/conformance.log" | sed 's/^/skipped as not supported: /'
grep -E "FAIL|×" "$OUT/conformance.log" | head -10
# relative error range per entry, e.g. "cuda bf16: relative error 3.1e-03 .. 1.2e-02"
grep -E "relative error [0-9.e+-]+" "$OUT/conformance.log" | sed -E 's/^ *//' | awk '{
  split($0, e, "relative error "); split(e[1], parts, " / "); key = parts[1]; v = e[2] + 0;
  if (!(key in lo) || v < lo[key]) lo[key] = v; if (v > hi[key]) hi[key] = v }
  END { for (key in lo) printf "%s: relative error %.2e .. %.2e\n", key, lo[key], hi[key] }'
[ -f "$OUT/bench-cuda.json" ] && node bench/cuda/summary.mjs --cuda "$OUT/bench-cuda.json" --torch "$OUT/bench-torch.json" \
  --v2 "$OUT/bench-cuda-v2-7b.json" | tee "$OUT/summary.txt"
grep -E "^device|auto=" "$OUT/gemm-sweep.log"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "device run FAILED ($([ $REHEARSE = 1 ] && echo "rehearsal, no GPU expected"; true)):"
  printf '  %s\n' "${FAILED[@]}"
  exit 1
fi
echo "device run OK: every GPU case ran"
