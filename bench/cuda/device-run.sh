#!/usr/bin/env bash
# One call on the GPU machine, after bench/cuda/pack-for-device.sh here:
#   run(command="bash bench/cuda/device-run.sh", carry=[".device"], timeout_s=600)
# Unpacks node and the workspace, then runs: the device facts, the CUDA conformance suite (kernel level and end
# to end, on the GPU addon and on the emulator), the engine benchmark, the GEMM split-k sweep (32 and 512 rows)
# and the PyTorch benchmark. Every log and the benchmark JSON go to $OUT; the tail of the output is the summary.
set -uo pipefail
OUT=${OUT:-/tmp/fast-dllm-device-out}
mkdir -p "$OUT" /tmp/fast-dllm-node/bin
xz -dc .device/node.xz > /tmp/fast-dllm-node/bin/node && chmod +x /tmp/fast-dllm-node/bin/node || exit 1
export PATH=/tmp/fast-dllm-node/bin:$PATH
tar -xJf .device/workspace.tar.xz || exit 1
{ date -u; nproc; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; node --version; } \
  2>&1 | tee "$OUT/device.txt"
probe() {
  node --input-type=module -e "import { loadBinding } from '@fast-dllm/engine-cuda';
    const b = loadBinding(); console.log(b.ok ? JSON.stringify(b.binding.deviceInfo()) : b.reason);" 2>&1
}
probe | tee -a "$OUT/device.txt"
# The addon was built on the CI image; if this image's C++ runtime cannot load it, rebuild it here (nvcc + cmake).
if probe | grep -q "failed to load"; then
  echo "rebuilding the addon on this machine" | tee -a "$OUT/device.txt"
  (cd packages/engine-cuda && CUDACXX=$(command -v nvcc) node ../../node_modules/cmake-js/bin/cmake-js compile \
    --out build --config Release --parallel 8) > "$OUT/addon-build.log" 2>&1
  probe | tee -a "$OUT/device.txt"
fi

node node_modules/vitest/vitest.mjs run test/cuda-conformance.test.ts packages/engine-cuda/test/kernels.test.ts \
  --reporter=verbose > "$OUT/conformance.log" 2>&1
echo "conformance exit $?"
node bench/cuda/bench.mjs --iters 10 --out "$OUT/bench-cuda.json" 2>&1 | tee "$OUT/bench-cuda.log"
for rows in 32 512; do node bench/cuda/gemm-sweep.mjs --rows $rows; done > "$OUT/gemm-sweep.log" 2>&1
PYTHONUNBUFFERED=1 python3 bench/cuda/torch_bench.py --iters 10 2>&1 | tee "$OUT/bench-torch.log"
echo "---- summary"
grep -E "^ *(Test Files|Tests) " "$OUT/conformance.log"
grep -E "FAIL|×" "$OUT/conformance.log" | head -10
# relative error range per provider and weight dtype, e.g. "cuda bf16 3.1e-3 1.2e-2"
grep "relative error" "$OUT/conformance.log" | awk -F' / ' '{split($4, e, "relative error "); k = $1 " " $3;
  v = e[2] + 0; if (!(k in lo) || v < lo[k]) lo[k] = v; if (v > hi[k]) hi[k] = v}
  END {for (k in lo) printf "%s: relative error %.2e .. %.2e\n", k, lo[k], hi[k]}' | sed 's/^ *//'
grep -hE "median|floor" "$OUT/bench-cuda.log" "$OUT/bench-torch.log"
grep -E "^device|auto=" "$OUT/gemm-sweep.log"
