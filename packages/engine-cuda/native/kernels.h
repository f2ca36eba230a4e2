// Launchers of the CUDA kernels (native/kernels.cu). Each returns the cudaError_t of its launch; the addon
// checks every one and turns a failure into a JS Error naming the call.
#pragma once
#include "cuda_compat.h"
#include <cstdint>

namespace fdl {

// MurmurHash3_x86_32 of the words [forwardIndex, position, lane] (12 bytes) with `seed`: rng.ts bit for bit.
__host__ __device__ uint32_t counter_hash(uint32_t seed, uint32_t forward_index, uint32_t position, uint32_t lane);

// y (n, d) = x (n, d) * rsqrt(mean(x^2) + eps) * w (d), f32; y16 (n, d), when not null, gets y in bf16 (the
// next GEMM's input, without a separate conversion). Either may be null.
cudaError_t rmsnorm(const float* x, const float* w, float* y, __nv_bfloat16* y16, int n, int d, float eps, cudaStream_t s);

// y (count,) bf16 = x (count,) f32, round to nearest even: the A operand of gemm_bf16.
cudaError_t to_bf16(const float* x, __nv_bfloat16* y, size_t count, cudaStream_t s);

// How split sums are scheduled (GEMM k splits, attention key splits); never changes a bit of the result.
enum Schedule { kScheduleAuto = 0, kScheduleParallel = 1, kScheduleSerial = 2 };

// ---- bf16 GEMM (tensor cores, f32 accumulate) ----
// C (m, n) = A (m, k) bf16 @ W^T, W (n, k) bf16 row-major (PyTorch linear), optional bias (n), plus C's own values
// when `accumulate` (a residual add). Batch invariance (DESIGN §7): a row's result depends on its own A row, W, bias
// and C only, never on m. k is cut into `splits` contiguous ranges of kChunk = a multiple of 64; each range is
// summed on its own (k ascending) and the ranges are added in order: C = ((0 + p0 + p1 + ...) + bias) + C.
// How those sums are scheduled, which changes no bit:
//   parallel: one block per (row tile, column tile, split), partial sums to `partial` (splits, m, n) f32, then a
//             second kernel adds them in split order; for short spans (a DualCache step streams the weights);
//   serial:   one block per (row tile, column tile) walks every split and adds them in registers; no scratch.
// The k splits of a (n, k) weight: from the weight's shape only, never from the rows of a pass, about 256
// blocks for a one-row-tile pass, each split at least 4 k steps of 64.
int gemm_bf16_splits(int n, int k);
// Whether gemm_bf16 runs `splits` in parallel for an (m, n) output (kScheduleAuto resolved from m, n and the device's
// multiprocessor count `sms`: a choice of schedule, not of arithmetic). When true the call needs `partial`.
bool gemm_bf16_parallel(int m, int n, int splits, Schedule schedule, int sms);
cudaError_t gemm_bf16(const __nv_bfloat16* A, const __nv_bfloat16* W, const float* bias, float* C, int m, int n, int k,
                      int splits, float* partial, bool accumulate, Schedule schedule, int sms, cudaStream_t s);
// Same with f32 weights (strict conformance mode), CUDA cores.
cudaError_t gemm_f32(const float* A, const float* W, const float* bias, float* C, int m, int n, int k, bool accumulate,
                     cudaStream_t s);

struct AttnSeq;
// Splits the fused projection qkv (n, H*hd + 2*KV*hd) of a pass into q (n, H, hd) f32 and each row's k and v (KV, hd)
// in the K/V cache's type (bf16 when kvBf16, else f32), written where attention reads that key: row r belongs to
// sequence rowSeq[r] (seqs, in device memory) and sits at absolute position p = pos0 + r - q0 of its canvas; its
// key goes to row p of segment 0 when p < n0 (the sequence's cache), else to row p - n0 of segment 1 (a prefix
// step's fresh rows), layer `layer`. Per head: RMSNorm over hd with qNorm / kNorm (hd,) when given (Qwen3, SDAR,
// LLaDA-MoE; null: none), then q, k and v clamped to [-clip, clip] when clip > 0 (LLaDA-MoE's clip_qkv), then NeoX
// RoPE on q and k at position p over the first rotaryDim dims of each head (even, <= hd; hd: all of them; fewer:
// partial rotary, the rest pass through). A row whose sequence keeps it (layer < keepLayers, p outside [keepLo,
// keepHi)) writes no k or v. cudaErrorInvalidValue for a bad rotaryDim.
cudaError_t qkv_rope(const float* qkv, float* q, const AttnSeq* seqs, const int32_t* rowSeq, int layer, bool kvBf16,
                     const float* qNorm, const float* kNorm, float eps, int n, int H, int KV, int hd, int rotaryDim,
                     float clip, float theta, cudaStream_t s);

// h (n, ff) = silu(gate) * up with gu (n, 2 ff) = [gate | up] (the fused projection). h16 (n, ff), when not null,
// gets the result in bf16; h may be null when only h16 is wanted.
cudaError_t swiglu(const float* gu, float* h, __nv_bfloat16* h16, int n, int ff, cudaStream_t s);

// ---- attention ----
// One sequence's part of an attention pass: its query rows [q0, q0 + nq) of the pass's q (rows, H, hd) f32, and its
// L keys/values in two segments of the K/V dtype, each (rows, KV, hd): rows [0, n0) from segment 0 (k0, v0) and
// [n0, L) from segment 1 (k1, v1). Layer `l` of a segment starts `stride` elements after layer 0's (0: the same
// buffer for every layer, e.g. a prefix step's fresh rows). Keys are at absolute positions 0..L-1; query row
// q0 + i is at position pos0 + i. causalBlock B > 0: block-causal (DESIGN §8), position i sees key j iff
// j / B <= i / B; 0: every key. The fields after the first group are filled by attention_plan.
struct AttnSeq {
  const void* k0; const void* v0; size_t stride0;
  const void* k1; const void* v1; size_t stride1;
  int n0, L, q0, nq, pos0, causalBlock;
  // Elastic-Cache's refresh (DESIGN §16): layers below keepLayers write the K/V of positions [keepLo, keepHi) only;
  // the other rows' keys stay as cached (qkv_rope skips them). 0: every row writes, in every layer.
  int keepLayers, keepLo, keepHi;
  // filled by attention_plan:
  int chunk, splits;  // keys [s chunk, (s + 1) chunk) form split s: from L only (attention_chunk)
  int parallel;       // 1: one block per (query tile, split) and a combine pass; 0: each block walks every split
  int blockBase;      // first blockIdx.x of this sequence's blocks
  int partBase;       // first partial row of its splits (parallel only): (splits, nq) rows
};
// Keys per split for L keys: 128 up to L = 4096, then L/32 rounded up to 32-key tiles (at most 32 splits).
// Batch invariance (DESIGN §7): each query's softmax is summed per split (keys ascending, 32-key tiles) and the
// splits merged in order, whichever blocks run them.
int attention_chunk(int L);
struct AttnPlan {
  int blocks;            // grid x of the main kernel
  int rows;              // query rows of the pass (grid x of the combine kernel)
  bool combine;          // some sequence runs its splits in parallel
  size_t partialFloats;  // scratch the parallel splits need: rows * H * (hd + 2)
};
// Fills chunk, splits, parallel, blockBase and partBase of seqs[0, nseq). strategy: kScheduleAuto lets the sequence's
// query count and the device's `sms` choose; kScheduleParallel / kScheduleSerial force one schedule (tests: same bits).
AttnPlan attention_plan(AttnSeq* seqs, int nseq, int H, int hd, int sms, Schedule schedule);
// out (rows, H, hd) f32 and/or out16 (bf16) = softmax(q k^T / sqrt(hd)) v per sequence and head, GQA head h reading
// KV head h / (H / KV), over layer `layer` of each sequence's segments. seqs: `nseq` descriptors in device memory,
// planned by attention_plan (`plan`). partial: plan.partialFloats of scratch when plan.combine. hd <= 128
// (cudaErrorInvalidValue otherwise).
cudaError_t attention(const float* q, const AttnSeq* seqs, int nseq, const AttnPlan& plan, int layer, bool kvBf16,
                      float* out, __nv_bfloat16* out16, float* partial, int H, int KV, int hd, cudaStream_t s);

// Per row of logits (n, V): argmax (ties to lowest id) or Gumbel-max sample, clean softmax prob of the token,
// top-1/top-2 probs, entropy (nats). Each row has its own sampling key (DESIGN §3): positions (n,) absolute,
// temperature (n,) f64 (0: greedy), seed and forwardIndex (n,) u32. Outputs are (n,).
// Token `exclude` (the mask id; -1 none) is never proposed nor ranked in top-1/top-2, but counts in the softmax.
struct HeadOut { int32_t* tokens; double* probs; double* top1; double* top2; double* entropy; };
cudaError_t lm_head_reduce(const float* logits, int n, int V, const int32_t* positions, const double* temperature,
                           const uint32_t* seed, const uint32_t* forward_index, int exclude, HeadOut out, cudaStream_t s);

// y (n, d) f32 = table[ids[i]] (vocab, d), bf16 or f32 table.
cudaError_t embed_bf16(const __nv_bfloat16* table, const int32_t* ids, float* y, int n, int d, cudaStream_t s);
cudaError_t embed_f32(const float* table, const int32_t* ids, float* y, int n, int d, cudaStream_t s);
// acc (rows of acc, d) += w[i] * y[i] at row rows[i], for y (n, d) f32, rows (n,) int32 (null: row i), w (n,) f32
// (null: 1, a plain add); product rounded, then the sum (no FMA). The rows must be distinct. The mixture's weighted
// sum (DESIGN §13): called once per expert in ascending expert order, so each row's sum runs in that order.
cudaError_t scatter_add_rows(const float* y, const int32_t* rows, const float* w, float* acc, int n, int d, cudaStream_t s);
// Random weights for benchmarks, generated on the device: uniform in [-scale, scale) from the counter hash.
cudaError_t fill_random_bf16(__nv_bfloat16* w, size_t count, uint32_t seed, float scale, cudaStream_t s);
// f32 variant: offset + uniform in [-scale, scale) (offset 1 for norm weights).
cudaError_t fill_random_f32(float* w, size_t count, uint32_t seed, float scale, float offset, cudaStream_t s);

}  // namespace fdl
