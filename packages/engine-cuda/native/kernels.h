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
// How many k splits gemm_bf16 should use for (m, n, k) on a device with `sms` multiprocessors (about two blocks
// per SM when the output alone has too few tiles, e.g. a 32-row DualCache step).
int gemm_bf16_splits(int m, int n, int k, int sms);
// C (m, n) f32 = A (m, k) bf16 @ W^T, W (n, k) bf16 row-major (PyTorch linear), optional bias (n), plus C's own
// values when `accumulate` (a residual add); tensor cores with f32 accumulation. splits > 1 needs `partial`,
// (splits, m, n) f32 of scratch.
cudaError_t gemm_bf16(const __nv_bfloat16* A, const __nv_bfloat16* W, const float* bias, float* C, int m, int n, int k,
                      int splits, float* partial, bool accumulate, cudaStream_t s);
// Same with f32 weights (strict conformance mode), CUDA cores.
cudaError_t gemm_f32(const float* A, const float* W, const float* bias, float* C, int m, int n, int k, bool accumulate,
                     cudaStream_t s);

// Splits the fused projection qkv (n, H*hd + 2*KV*hd) into q (n, H, hd), k, v (n, KV, hd), NeoX RoPE on q and k
// for absolute positions pos0 + i. k and v may point into the K/V cache.
cudaError_t qkv_rope(const float* qkv, float* q, float* k, float* v, int n, int H, int KV, int hd, int pos0, float theta,
                     cudaStream_t s);

// h (n, ff) = silu(gate) * up with gu (n, 2 ff) = [gate | up] (the fused projection). h16 (n, ff), when not null,
// gets the result in bf16; h may be null when only h16 is wanted.
cudaError_t swiglu(const float* gu, float* h, __nv_bfloat16* h16, int n, int ff, cudaStream_t s);

// Bidirectional attention of queries q (nq, H, hd) over L keys/values: rows [0, n0) from segment 0 (k0, v0) and
// rows [n0, L) from segment 1 (k1, v1), each (rows, KV, hd); GQA head h reads KV head h / (H / KV). out (nq, H, hd).
// hd <= 128 (cudaErrorInvalidValue otherwise); any L.
// out16, when not null, gets out in bf16; out may be null when only out16 is wanted.
cudaError_t attention(const float* q, const float* k0, const float* v0, int n0, const float* k1, const float* v1,
                      float* out, __nv_bfloat16* out16, int nq, int L, int H, int KV, int hd, cudaStream_t s);

// Per row of logits (n, V): argmax (ties to lowest id) or Gumbel-max sample, clean softmax prob of the token,
// top-1/top-2 probs, entropy (nats). Outputs are (n,). positions (n,) are absolute, for the RNG counter.
// Token `exclude` (the mask id; -1 none) is never proposed nor ranked in top-1/top-2, but counts in the softmax.
struct HeadOut { int32_t* tokens; double* probs; double* top1; double* top2; double* entropy; };
cudaError_t lm_head_reduce(const float* logits, int n, int V, const int32_t* positions, int sample, double temperature,
                           uint32_t seed, uint32_t forward_index, int exclude, HeadOut out, cudaStream_t s);

// y (n, d) f32 = table[ids[i]] (vocab, d), bf16 or f32 table.
cudaError_t embed_bf16(const __nv_bfloat16* table, const int32_t* ids, float* y, int n, int d, cudaStream_t s);
cudaError_t embed_f32(const float* table, const int32_t* ids, float* y, int n, int d, cudaStream_t s);
// Random weights for benchmarks, generated on the device: uniform in [-scale, scale) from the counter hash.
cudaError_t fill_random_bf16(__nv_bfloat16* w, size_t count, uint32_t seed, float scale, cudaStream_t s);
// f32 variant: offset + uniform in [-scale, scale) (offset 1 for norm weights).
cudaError_t fill_random_f32(float* w, size_t count, uint32_t seed, float scale, float offset, cudaStream_t s);

}  // namespace fdl
