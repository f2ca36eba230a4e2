// CUDA kernels of the cuda engine: f32 activations, bf16 (tensor cores, f32 accumulate) or f32 weights.
#include "kernels.h"
#include <cfloat>

namespace fdl {

using namespace nvcuda;

// ---- shared counter RNG (packages/scheduler/src/rng.ts) ----
__host__ __device__ static inline uint32_t rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }
__host__ __device__ static inline uint32_t mix_block(uint32_t h, uint32_t k) {
  k *= 0xcc9e2d51u;
  k = rotl(k, 15);
  k *= 0x1b873593u;
  h ^= k;
  h = rotl(h, 13);
  return h * 5u + 0xe6546b64u;
}
__host__ __device__ uint32_t counter_hash(uint32_t seed, uint32_t forward_index, uint32_t position, uint32_t lane) {
  uint32_t h = seed;
  h = mix_block(h, forward_index);
  h = mix_block(h, position);
  h = mix_block(h, lane);
  h ^= 12u;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}
__device__ static inline double counter_gumbel(uint32_t seed, uint32_t fi, uint32_t pos, uint32_t lane) {
  const double u = ((double)counter_hash(seed, fi, pos, lane) + 0.5) / 4294967296.0;  // (0, 1), float64
  return -log(-log(u));
}

// Blocks of 256 threads for a grid-stride loop over `total` elements (at most 8192 blocks).
static inline int grid_for(size_t total) {
  const size_t b = (total + 255) / 256;
  return b == 0 ? 1 : (b > 8192 ? 8192 : (int)b);
}

// f32 <-> the storage types (f32, bf16 round to nearest even) of weights and the K/V cache.
template <typename T> __device__ static inline float to_f32(T v);
template <> __device__ inline float to_f32<float>(float v) { return v; }
template <> __device__ inline float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ static inline T from_f32(float v);
template <> __device__ inline float from_f32<float>(float v) { return v; }
template <> __device__ inline __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

// ---- RMSNorm: one block per row ----
__global__ void rmsnorm_k(const float* x, const float* w, float* y, __nv_bfloat16* y16, int d, float eps) {
  __shared__ float red[32];
  const float* xr = x + (size_t)blockIdx.x * d;
  float ss = 0.f;
  for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) red[0] = v;
  }
  __syncthreads();
  const float r = rsqrtf(red[0] / (float)d + eps);
  for (int i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = xr[i] * r * w[i];
    if (y) y[(size_t)blockIdx.x * d + i] = v;
    if (y16) y16[(size_t)blockIdx.x * d + i] = __float2bfloat16(v);
  }
}
cudaError_t rmsnorm(const float* x, const float* w, float* y, __nv_bfloat16* y16, int n, int d, float eps, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  // About 4 elements per thread, 32 to 256 threads: from the width d only (batch invariance, DESIGN §7).
  const int threads = d >= 1024 ? 256 : ((d + 3) / 4 + 31) / 32 * 32;
  FDL_LAUNCH(rmsnorm_k, n, threads, 0, s)(x, w, y, y16, d, eps);
  return cudaGetLastError();
}

// ---- f32 -> bf16 activations (one conversion feeds every GEMM that reads the same input) ----
__global__ void to_bf16_k(const float* x, __nv_bfloat16* y, size_t count) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
    y[i] = __float2bfloat16(x[i]);
}

// Raises a kernel's dynamic shared memory limit to `bytes` once per process (the launchers call it before each
// launch; only the first call reaches the runtime). Kernels over 48 KiB need it on every GPU.
// Keyed by the kernel itself: instantiations of one template share a function type.
template <auto Kernel> static cudaError_t allow_shared(size_t bytes) {
  static const cudaError_t once = cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  return once;
}

// ---- GEMM bf16 on tensor cores ----
// Block tile: BM rows of A x 128 output columns, k in steps of 64, 8 warps. BM = 32 for short spans (a DualCache
// step): warp w owns columns [16w, 16w + 16) of all 32 rows (2 accumulators). BM = 128 for long ones: warps in a
// 2 x 4 grid, each 64 rows x 32 columns (8 accumulators, so each fragment loaded from shared memory feeds more
// mma). The row tile changes which warp computes a row, never its arithmetic: every output element is the same
// chain of 16-deep mma steps over k ascending, so BM may follow the span. Tiles move global -> shared memory by
// cp.async, STAGES deep: while the tensor cores work on k step t the copies of steps t+1 .. t+STAGES-1 are in
// flight (a DualCache step is a stream of weights). Grid: x = row tiles (fastest, so the blocks that read one
// weight tile run together and share it through L2), y = column tiles, z = k splits (parallel schedule).
constexpr int GBN = 128, GBK = 64;
constexpr int GLD = GBK + 8;  // smem row pitch in bf16: 144 bytes, 16-byte aligned rows in different banks
constexpr int GTHREADS = 256;
constexpr int GW_VECS = GBN * GBK / 8 / GTHREADS;  // 16-byte vectors of W per thread per k step: 4
constexpr int GCLD = 20;                           // per-warp epilogue tile pitch in f32 (rows of 80 bytes)

template <int BM> struct GemmShape {
  static constexpr int STAGES = BM == 32 ? 4 : 3;
  static constexpr int A_VECS = BM * GBK / 8 / GTHREADS;          // 16-byte vectors of A per thread per k step
  static constexpr size_t STAGE_ELEMS = (size_t)(BM + GBN) * GLD;  // bf16: BM rows of A, then 128 rows of W
  static constexpr size_t PIPE_BYTES = STAGES * STAGE_ELEMS * 2;   // 92,160 (BM 32) or 110,592 (BM 128)
  static constexpr size_t EPI_BYTES = 8 * 16 * GCLD * 4;           // per-warp 16 x 20 f32 staging, after the loop
  static constexpr size_t SMEM = PIPE_BYTES > EPI_BYTES ? PIPE_BYTES : EPI_BYTES;
};

union Vec8 { uint4 u; __nv_bfloat16 h[8]; };

// 8 consecutive bf16 of row `row` at column `col` of a (rows, k) matrix into shared memory at dst, zeros outside.
// VEC (k % 8 == 0): one 16-byte cp.async (zero-filled outside, the source then unread); else element by element.
template <bool VEC>
__device__ static inline void gemm_load8(__nv_bfloat16* dst, const __nv_bfloat16* M, int rows, int k, int row, int col) {
  if constexpr (VEC) {
    const bool in = row < rows && col < k;
    __pipeline_memcpy_async(dst, in ? M + (size_t)row * k + col : M, 16, in ? 0 : 16);
  } else {
    Vec8 v;
    for (int i = 0; i < 8; i++) v.h[i] = row < rows && col + i < k ? M[(size_t)row * k + col + i] : __float2bfloat16(0.f);
    *reinterpret_cast<uint4*>(dst) = v.u;
  }
}

// The output element from its split sum S = 0 + p0 + p1 + ... (every schedule computes S in this order).
__device__ static inline float gemm_finish(float S, const float* bias, int c, const float* C, size_t i, bool accumulate) {
  float v = S + (bias ? bias[c] : 0.f);
  if (accumulate) v = v + C[i];
  return v;
}

// SERIAL: this block walks all `splits` k ranges, adding each range's sums into `total` in order. Otherwise it
// computes split blockIdx.z: into `partial` (splits, m, n) when not null, else (splits == 1) the output.
template <int BM, bool VEC, bool SERIAL>
__global__ void __launch_bounds__(GTHREADS) gemm_bf16_k(const __nv_bfloat16* A, const __nv_bfloat16* W, const float* bias,
                                                        float* C, float* partial, int m, int n, int k, int kChunk,
                                                        int splits, bool accumulate) {
  using Shape = GemmShape<BM>;
  constexpr int STAGES = Shape::STAGES;
  constexpr int WARPS_M = BM == 32 ? 1 : 2, WARPS_N = 8 / WARPS_M;  // warp grid
  constexpr int FA = BM / WARPS_M / 16, FB = GBN / WARPS_N / 16;    // 16x16 fragments per warp: rows, columns
  FDL_DYNAMIC_SHARED(unsigned char, smem);
  // (STAGES, BM + 128, 72) bf16: each stage holds BM rows of A, then 128 rows of W (= output columns; B col-major)
  __nv_bfloat16* stages = reinterpret_cast<__nv_bfloat16*>(smem);
  const int row0 = blockIdx.x * BM, col0 = blockIdx.y * GBN;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = (warp / WARPS_N) * FA * 16, wn = (warp % WARPS_N) * FB * 16;  // warp tile origin in the block
  const int vr = tid >> 3, vc = (tid & 7) * 8;  // this thread's vectors: rows vr + 32 j of a tile, columns vc..vc+7
  const int perSplit = kChunk / GBK, kSteps = (k + GBK - 1) / GBK;
  const int z = blockIdx.z;
  const int t0 = SERIAL ? 0 : z * perSplit;
  const int t1 = SERIAL ? kSteps : (kSteps < (z + 1) * perSplit ? kSteps : (z + 1) * perSplit);
  auto load = [&](int t, int stage) {  // k step t into `stage`: one cp.async group per call
    __nv_bfloat16* As = stages + (size_t)stage * Shape::STAGE_ELEMS;
    __nv_bfloat16* Ws = As + BM * GLD;
    const int kc = t * GBK + vc;
    for (int j = 0; j < Shape::A_VECS; j++) gemm_load8<VEC>(&As[(vr + 32 * j) * GLD + vc], A, m, k, row0 + vr + 32 * j, kc);
    for (int j = 0; j < GW_VECS; j++) gemm_load8<VEC>(&Ws[(vr + 32 * j) * GLD + vc], W, n, k, col0 + vr + 32 * j, kc);
  };
  // Fragments wholly past the last row or column of C (a partial tile) are skipped, warp by warp: no element of C
  // depends on them, so this changes no bit.
  auto rowLive = [&](int a) { return row0 + wm + 16 * a < m; };
  auto colLive = [&](int b) { return col0 + wn + 16 * b < n; };
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FA][FB];
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> total[SERIAL ? FA : 1][SERIAL ? FB : 1];
#pragma unroll
  for (int i = 0; i < FA; i++)
#pragma unroll
    for (int j = 0; j < FB; j++) wmma::fill_fragment(acc[i][j], 0.f);
  if constexpr (SERIAL) {
#pragma unroll
    for (int i = 0; i < FA; i++)
#pragma unroll
      for (int j = 0; j < FB; j++) wmma::fill_fragment(total[i][j], 0.f);
  }
  for (int st = 0; st < STAGES - 1; st++) {
    if (t0 + st < t1) load(t0 + st, st);
    __pipeline_commit();
  }
  for (int t = t0; t < t1; t++) {
    const int i = t - t0;
    __pipeline_wait_prior(STAGES - 2);  // this thread's copies of step t have landed
    __syncthreads();                    // everyone's have; and step t-1's stage is no longer read
    if (t + STAGES - 1 < t1) load(t + STAGES - 1, (i + STAGES - 1) % STAGES);
    __pipeline_commit();  // possibly empty: keeps one group per step, so the wait above stays exact
    const __nv_bfloat16* As = stages + (size_t)(i % STAGES) * Shape::STAGE_ELEMS;
    const __nv_bfloat16* Ws = As + BM * GLD;
#pragma unroll
    for (int kk = 0; kk < GBK; kk += 16) {  // fragment pointers stay 32-byte aligned: 16 rows x 144 B, 16 bf16
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[FA];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[FB];
#pragma unroll
      for (int a = 0; a < FA; a++)
        if (rowLive(a)) wmma::load_matrix_sync(fa[a], As + (wm + 16 * a) * GLD + kk, GLD);
#pragma unroll
      for (int b = 0; b < FB; b++)
        if (colLive(b)) wmma::load_matrix_sync(fb[b], Ws + (wn + 16 * b) * GLD + kk, GLD);
#pragma unroll
      for (int a = 0; a < FA; a++)
#pragma unroll
        for (int b = 0; b < FB; b++)
          if (rowLive(a) && colLive(b)) wmma::mma_sync(acc[a][b], fa[a], fb[b], acc[a][b]);
    }
    if constexpr (SERIAL) {
      if ((t + 1) % perSplit == 0 || t + 1 == t1) {  // end of a split: total += its sums, in split order
#pragma unroll
        for (int a = 0; a < FA; a++)
#pragma unroll
          for (int b = 0; b < FB; b++) {
            for (int e = 0; e < total[a][b].num_elements; e++) total[a][b].x[e] += acc[a][b].x[e];
            wmma::fill_fragment(acc[a][b], 0.f);
          }
      }
    }
  }
  __syncthreads();  // every warp is done with the stages: the epilogue stages its tiles there
  // Epilogue, one accumulator at a time through the warp's own staging tile: lane writes 8 of its 256 values,
  // half a row of 16 per 16 lanes, with bias and the residual (or raw, into its split's partial sums).
  float* Cw = reinterpret_cast<float*>(smem) + warp * 16 * GCLD;  // (16, 20) f32
  float* part = partial ? partial + (size_t)z * m * n : nullptr;
#pragma unroll
  for (int a = 0; a < FA; a++)
#pragma unroll
    for (int b = 0; b < FB; b++) {
      if (!rowLive(a) || !colLive(b)) continue;  // the whole warp skips it: its __syncwarp()s too
      if constexpr (SERIAL) wmma::store_matrix_sync(Cw, total[a][b], GCLD, wmma::mem_row_major);
      else wmma::store_matrix_sync(Cw, acc[a][b], GCLD, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int r = row0 + wm + 16 * a + e / 16, c = col0 + wn + 16 * b + e % 16;
        if (r < m && c < n) {
          const float v = Cw[(e / 16) * GCLD + e % 16];
          const size_t o = (size_t)r * n + c;
          if (part) part[o] = v;
          else C[o] = gemm_finish(SERIAL ? v : 0.f + v, bias, c, C, o, accumulate);
        }
      }
      __syncwarp();  // the tile is read before the next store overwrites it
    }
}

__global__ void gemm_splitk_reduce_k(const float* partial, const float* bias, float* C, int m, int n, int splits,
                                     bool accumulate) {
  const size_t total = (size_t)m * n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    float S = 0.f;
    for (int z = 0; z < splits; z++) S += partial[z * total + i];  // split order, as the serial schedule
    C[i] = gemm_finish(S, bias, (int)(i % n), C, i, accumulate);
  }
}

// Rows per block tile: 128 once a span has enough rows to fill them (full and prefix forwards, batches), else 32.
static inline int gemm_rows_per_block(int m) { return m >= 96 ? 128 : 32; }

int gemm_bf16_splits(int n, int k) {
  const int colTiles = (n + GBN - 1) / GBN;
  const int want = (256 + colTiles - 1) / colTiles;  // about 256 blocks when the pass has one row tile
  const int most = k / (4 * GBK);                    // at least 4 k steps per split
  return want < most ? want : (most > 1 ? most : 1);
}

bool gemm_bf16_parallel(int m, int n, int splits, Schedule schedule, int sms) {
  if (splits <= 1) return false;
  if (schedule != kScheduleAuto) return schedule == kScheduleParallel;
  const int bm = gemm_rows_per_block(m);
  const long long tiles = (long long)((m + bm - 1) / bm) * ((n + GBN - 1) / GBN);
  // Serial would leave SMs idle (under one wave of blocks): spread the splits over blocks, unless their partial
  // sums grow past what L2 holds (a long span has enough tiles anyway).
  return tiles < sms && (size_t)splits * m * n * sizeof(float) <= ((size_t)32 << 20);
}

template <int BM, bool VEC, bool SERIAL>
static cudaError_t launch_gemm_bf16(dim3 grid, cudaStream_t s, const __nv_bfloat16* A, const __nv_bfloat16* W,
                                    const float* bias, float* C, float* partial, int m, int n, int k, int kChunk,
                                    int splits, bool accumulate) {
  constexpr size_t smem = GemmShape<BM>::SMEM;
  const cudaError_t e = allow_shared<gemm_bf16_k<BM, VEC, SERIAL>>(smem);
  if (e != cudaSuccess) return e;
  auto kernel = gemm_bf16_k<BM, VEC, SERIAL>;
  FDL_LAUNCH(kernel, grid, GTHREADS, smem, s)(A, W, bias, C, partial, m, n, k, kChunk, splits, accumulate);
  return cudaGetLastError();
}

cudaError_t gemm_bf16(const __nv_bfloat16* A, const __nv_bfloat16* W, const float* bias, float* C, int m, int n, int k,
                      int splits, float* partial, bool accumulate, Schedule schedule, int sms, cudaStream_t s) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  if (k <= 0) return cudaErrorInvalidValue;
  if (splits < 1) splits = 1;
  const int kChunk = ((k + splits - 1) / splits + GBK - 1) / GBK * GBK;
  splits = (k + kChunk - 1) / kChunk;  // every split has at least one k step
  const bool parallel = gemm_bf16_parallel(m, n, splits, schedule, sms);
  if (parallel && !partial) return cudaErrorInvalidValue;
  const int bm = gemm_rows_per_block(m);
  const dim3 grid((m + bm - 1) / bm, (n + GBN - 1) / GBN, parallel ? splits : 1);
  float* part = parallel ? partial : nullptr;
  const bool vec = k % 8 == 0;  // rows of A and W start 16-byte aligned: cp.async
  const bool serial = !parallel && splits > 1;
  cudaError_t e;
#define FDL_GEMM(BM, VEC, SERIAL) launch_gemm_bf16<BM, VEC, SERIAL>(grid, s, A, W, bias, C, part, m, n, k, kChunk, splits, accumulate)
  if (bm == 32) e = vec ? (serial ? FDL_GEMM(32, true, true) : FDL_GEMM(32, true, false))
                        : (serial ? FDL_GEMM(32, false, true) : FDL_GEMM(32, false, false));
  else e = vec ? (serial ? FDL_GEMM(128, true, true) : FDL_GEMM(128, true, false))
               : (serial ? FDL_GEMM(128, false, true) : FDL_GEMM(128, false, false));
#undef FDL_GEMM
  if (e != cudaSuccess || !parallel) return e;
  FDL_LAUNCH(gemm_splitk_reduce_k, grid_for((size_t)m * n), 256, 0, s)(partial, bias, C, m, n, splits, accumulate);
  return cudaGetLastError();
}

cudaError_t to_bf16(const float* x, __nv_bfloat16* y, size_t count, cudaStream_t s) {
  FDL_LAUNCH(to_bf16_k, grid_for(count), 256, 0, s)(x, y, count);
  return cudaGetLastError();
}

// ---- GEMM f32 (strict mode): 64 x 64 output tiles through shared memory, 4 x 4 outputs per thread ----
// Each output is one f32 sum over k ascending (16 k per stage), then + C (accumulate) and + bias, as in any tile size.
constexpr int FT = 64, FK = 16;
__global__ void __launch_bounds__(256) gemm_f32_k(const float* A, const float* W, const float* bias, float* C, int m, int n,
                                                  int k, bool accumulate) {
  __shared__ float As[FT][FK + 1], Ws[FT][FK + 1];  // (64, 16) tiles of A and W rows, padded against bank conflicts
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;  // outputs (ty + 16 a, tx + 16 b)
  const int row0 = blockIdx.y * FT, col0 = blockIdx.x * FT;
  float acc[4][4];
#pragma unroll
  for (int a = 0; a < 4; a++)
#pragma unroll
    for (int b = 0; b < 4; b++) acc[a][b] = 0.f;
  for (int k0 = 0; k0 < k; k0 += FK) {
    for (int i = threadIdx.x; i < FT * FK; i += 256) {
      const int r = i / FK, kk = k0 + i % FK;
      As[r][i % FK] = row0 + r < m && kk < k ? A[(size_t)(row0 + r) * k + kk] : 0.f;
      Ws[r][i % FK] = col0 + r < n && kk < k ? W[(size_t)(col0 + r) * k + kk] : 0.f;
    }
    __syncthreads();
    for (int i = 0; i < FK; i++)
#pragma unroll
      for (int a = 0; a < 4; a++)
#pragma unroll
        for (int b = 0; b < 4; b++) acc[a][b] += As[ty + 16 * a][i] * Ws[tx + 16 * b][i];
    __syncthreads();
  }
#pragma unroll
  for (int a = 0; a < 4; a++)
#pragma unroll
    for (int b = 0; b < 4; b++) {
      const int r = row0 + ty + 16 * a, c = col0 + tx + 16 * b;
      if (r < m && c < n) C[(size_t)r * n + c] = (accumulate ? C[(size_t)r * n + c] : 0.f) + acc[a][b] + (bias ? bias[c] : 0.f);
    }
}
cudaError_t gemm_f32(const float* A, const float* W, const float* bias, float* C, int m, int n, int k, bool accumulate,
                     cudaStream_t s) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  dim3 grid((n + FT - 1) / FT, (m + FT - 1) / FT);
  FDL_LAUNCH(gemm_f32_k, grid, 256, 0, s)(A, W, bias, C, m, n, k, accumulate);
  return cudaGetLastError();
}

// ---- QKV split, per-head q/k RMSNorm (Qwen3, LLaDA-MoE), clip_qkv and NeoX RoPE ----
// RoPE turns the first `rot` dims of a head (all hd, or fewer: LLaDA-MoE's partial rotary): pairs (i, i + rot/2) by
// pos * theta^(-2i/rot); dims [rot, hd) pass through. clip > 0 clamps q, k (after their norms) and v to [-clip, clip]
// before RoPE, as the published LLaDA-MoE code does; clip <= 0: no clamp.
// One warp per (row, head) of the fused projection's output qkv (n, H*hd + 2*KV*hd): q heads go to q (n, H, hd) f32,
// k and v heads to wherever attention reads the row's key (kernels.h), in the cache's type T.
template <typename T>
__global__ void qkv_rope_k(const float* qkv, float* q, const AttnSeq* seqs, const int32_t* rowSeq, int layer,
                           const float* qNorm, const float* kNorm, float eps, int n, int H, int KV, int hd, int rot,
                           float clip, float theta) {
  const int half = rot / 2, heads = H + 2 * KV, width = heads * hd, lane = threadIdx.x & 31;
  const size_t items = (size_t)n * heads, warps = (size_t)gridDim.x * (blockDim.x / 32);
  for (size_t item = blockIdx.x * (size_t)(blockDim.x / 32) + threadIdx.x / 32; item < items; item += warps) {
    const int head = (int)(item % heads), row = (int)(item / heads);
    const AttnSeq& S = seqs[rowSeq[row]];
    const int pos = S.pos0 + row - S.q0;
    // A refresh's shallow layers keep the cached keys outside its span (warp-uniform: the warp shares the item).
    if (head >= H && layer < S.keepLayers && (pos < S.keepLo || pos >= S.keepHi)) continue;
    const float* src = qkv + (size_t)row * width + (size_t)head * hd;
    const float* norm = head < H ? qNorm : head < H + KV ? kNorm : nullptr;
    float r = 1.f;
    if (norm) {  // the same warp-wide sum for every lane: lanes own dims lane, lane + 32, ...
      float ss = 0.f;
      for (int t = lane; t < hd; t += 32) ss += src[t] * src[t];
      for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
      r = rsqrtf(ss / (float)hd + eps);
    }
    T* dst = nullptr;  // this row's k or v head in the cache or the fresh rows
    if (head >= H) {
      const bool isV = head >= H + KV;
      const int kvh = head - H - (isV ? KV : 0);
      const size_t at = pos < S.n0 ? (size_t)pos : (size_t)(pos - S.n0);
      const void* base = pos < S.n0 ? (isV ? S.v0 : S.k0) : (isV ? S.v1 : S.k1);
      const size_t stride = pos < S.n0 ? S.stride0 : S.stride1;
      dst = static_cast<T*>(const_cast<void*>(base)) + stride * (size_t)layer + (at * KV + kvh) * hd;
    }
    // Dim t's value after the head norm and the clamp.
    auto load = [&](int t) {
      float a = src[t];
      if (norm) a = a * r * norm[t];
      if (clip > 0.f) a = fminf(clip, fmaxf(-clip, a));
      return a;
    };
    auto store = [&](int t, float a) {
      if (head < H) q[((size_t)row * H + head) * hd + t] = a;
      else dst[t] = from_f32<T>(a);
    };
    for (int i = lane; i < half; i += 32) {
      float a = load(i), b = load(i + half);
      if (head < H + KV) {
        // Angles in double: the reference computes inv_freq and pos*inv_freq before rounding to f32.
        const double inv = pow((double)theta, -2.0 * i / rot);
        const double ang = (double)pos * inv;
        const float cs = (float)cos(ang), sn = (float)sin(ang);
        const float ra = a * cs - b * sn, rb = b * cs + a * sn;
        a = ra;
        b = rb;
      }
      store(i, a);
      store(i + half, b);
    }
    for (int t = rot + lane; t < hd; t += 32) store(t, load(t));  // partial rotary: the dims RoPE leaves alone
  }
}
cudaError_t qkv_rope(const float* qkv, float* q, const AttnSeq* seqs, const int32_t* rowSeq, int layer, bool kvBf16,
                     const float* qNorm, const float* kNorm, float eps, int n, int H, int KV, int hd, int rotaryDim,
                     float clip, float theta, cudaStream_t s) {
  const size_t items = (size_t)n * (H + 2 * KV);
  if (items == 0) return cudaSuccess;
  if (rotaryDim <= 0 || rotaryDim > hd || rotaryDim % 2 != 0) return cudaErrorInvalidValue;
  const size_t blocks = (items + 7) / 8;  // 8 warps of 256 threads
  const int grid = blocks > 8192 ? 8192 : (int)blocks;
  if (kvBf16) {
    FDL_LAUNCH(qkv_rope_k<__nv_bfloat16>, grid, 256, 0, s)(qkv, q, seqs, rowSeq, layer, qNorm, kNorm, eps, n, H, KV, hd,
                                                           rotaryDim, clip, theta);
  } else {
    FDL_LAUNCH(qkv_rope_k<float>, grid, 256, 0, s)(qkv, q, seqs, rowSeq, layer, qNorm, kNorm, eps, n, H, KV, hd, rotaryDim,
                                                   clip, theta);
  }
  return cudaGetLastError();
}

// ---- SwiGLU ----
// gu (n, 2 ff): the fused gate/up projection, gate in columns [0, ff), up in [ff, 2 ff).
__global__ void swiglu_k(const float* gu, float* h, __nv_bfloat16* h16, int ff, size_t total) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const float* row = gu + (i / ff) * 2 * ff;
    const float x = row[i % ff];
    const float v = x / (1.f + expf(-x)) * row[ff + i % ff];
    if (h) h[i] = v;
    if (h16) h16[i] = __float2bfloat16(v);
  }
}
cudaError_t swiglu(const float* gu, float* h, __nv_bfloat16* h16, int n, int ff, cudaStream_t s) {
  const size_t total = (size_t)n * ff;
  FDL_LAUNCH(swiglu_k, grid_for(total), 256, 0, s)(gu, h, h16, ff, total);
  return cudaGetLastError();
}

// ---- attention over K/V segments: flash-decoding with fixed key splits ----
// A sequence's L keys are cut into splits of `chunk` keys (attention_chunk: from L only). For each query and
// split a block computes the split's partial softmax over 32-key tiles (running max m, sum l and the weighted sum
// of values acc, keys ascending), and the splits are merged in split order by softmax_merge. Two schedules give
// the same bits: parallel, one block per (query tile, split, head), partial results to scratch and
// attention_combine_k merges them (a DualCache step: 32 queries x 32 heads alone would leave most SMs idle); or
// serial, one block per (query tile, head) walking every split and merging in registers (long spans).
// A block serves up to 32 queries (8 warps x 4): each K/V tile is staged in shared memory once for all of them,
// and the next tile's copies (cp.async) are in flight while the current one is used. Lane j of a warp scores key
// j of the tile for the warp's 4 queries; its probabilities go through shared memory to the lanes that own the
// output dims (t = lane + 32 d). Nothing in a query's arithmetic depends on the other queries of its block or
// pass (DESIGN §7). Keys come from two segments (cache and fresh rows), so nothing is copied.
constexpr int ATHREADS = 256, AQ = 32, AK = 32, AHD = 128, ASTAGES = 2;
constexpr int AWARPS = ATHREADS / 32, AQW = AQ / AWARPS;  // 8 warps of 4 queries
constexpr int AD = AHD / 32;                              // output dims per lane

// Shared memory rows: hd padded to 8 elements (zeros), plus 16 bytes so that the 8 lanes of a 16-byte access
// phase read 8 different rows from different banks.
__host__ __device__ static inline int attn_hdp(int hd) { return (hd + 7) / 8 * 8; }
__host__ __device__ static inline int attn_pitch(int hd, int kvBytes) { return attn_hdp(hd) + 16 / kvBytes; }
// Qs (AQ, hdp) f32 + K/V tiles (ASTAGES, 2, AK, pitch) + Ps (AWARPS, AQW, AK) f32: 55,296 bytes at hd 128 in bf16,
// 88,064 in f32.
static inline size_t attention_smem(int hd, int kvBytes) {
  return (size_t)AQ * attn_hdp(hd) * 4 + (size_t)ASTAGES * 2 * AK * attn_pitch(hd, kvBytes) * kvBytes +
         (size_t)AWARPS * AQW * AK * 4;
}

// Butterfly reduction across the warp of two values at once: each value meets the same partners in the same order as
// in its own reduction, so the bits are those of two separate reductions. On a GPU two 32-bit shuffles per step (a
// 64-bit one costs registers: ptxas then spills in the attention kernel); the emulator moves both in one 64-bit
// shuffle, so its fibers switch once per step instead of twice. The values exchanged are the same either way.
template <typename Op> __device__ static inline void warp_reduce2(float& x, float& y, Op op) {
  for (int o = 16; o > 0; o >>= 1) {
#if defined(FDL_CUDA_EMULATOR)
    unsigned long long pair = (unsigned long long)__float_as_uint(y) << 32 | __float_as_uint(x);
    pair = __shfl_xor_sync(0xffffffffu, pair, o);
    const float px = __uint_as_float((unsigned)pair), py = __uint_as_float((unsigned)(pair >> 32));
#else
    const float px = __shfl_xor_sync(0xffffffffu, x, o), py = __shfl_xor_sync(0xffffffffu, y, o);
#endif
    x = op(x, px);
    y = op(y, py);
  }
}

// Keys a query at absolute position `pos` sees: all L, or through the end of its block (DESIGN §8).
__device__ static inline int attn_visible(const AttnSeq& S, int pos) {
  if (S.causalBlock <= 0) return S.L;
  const int end = (pos / S.causalBlock + 1) * S.causalBlock;
  return end < S.L ? end : S.L;
}

// Merges a split's (ms, ls, os) into the running (M, l, o), in this order wherever it runs: products and sums
// rounded one by one (no FMA), so the serial and the parallel schedule agree to the bit.
__device__ static inline void softmax_merge_scales(float& M, float ms, float& ea, float& eb) {
  const float Mn = fmaxf(M, ms);
  ea = expf(M - Mn);
  eb = expf(ms - Mn);
  M = Mn;
}
__device__ static inline float softmax_merge_sum(float x, float xs, float ea, float eb) {
  return __fadd_rn(__fmul_rn(x, ea), __fmul_rn(xs, eb));
}

__device__ static inline void load8f(const float* p, float* o) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
}
__device__ static inline void load8f(const __nv_bfloat16* p, float* o) {
  Vec8 v;
  v.u = *reinterpret_cast<const uint4*>(p);
  for (int i = 0; i < 8; i++) o[i] = __bfloat162float(v.h[i]);
}

// Issues the cp.async copies of keys [j0, j0 + AK) (K and V rows of KV head `kvOff / hd`) into one stage; rows at
// or past `ke` are zero-filled. CH bytes per copy: 16, or 4 when a row is not a whole number of 16-byte pieces.
template <typename T, int CH>
__device__ static inline void attn_load_tile(T* Kst, T* Vst, const T* K0, const T* V0, int n0, const T* K1, const T* V1,
                                             size_t rowElems, int kvOff, int j0, int ke, int hd, int pitch,
                                             const void* anyGlobal) {
  constexpr int PER = CH / (int)sizeof(T);  // elements per copy
  const int cpr = hd / PER;                 // copies per row
  for (int c = threadIdx.x; c < AK * cpr; c += ATHREADS) {
    const int r = c / cpr, off = (c % cpr) * PER, j = j0 + r;
    if (j < ke) {
      const size_t src = (size_t)(j < n0 ? j : j - n0) * rowElems + kvOff + off;
      __pipeline_memcpy_async(Kst + r * pitch + off, (j < n0 ? K0 : K1) + src, CH, 0);
      __pipeline_memcpy_async(Vst + r * pitch + off, (j < n0 ? V0 : V1) + src, CH, 0);
    } else {
      __pipeline_memcpy_async(Kst + r * pitch + off, anyGlobal, CH, CH);
      __pipeline_memcpy_async(Vst + r * pitch + off, anyGlobal, CH, CH);
    }
  }
}

template <typename T>
__device__ static inline const T* layer_ptr(const void* base, size_t stride, int layer) {
  return base ? static_cast<const T*>(base) + stride * (size_t)layer : nullptr;
}

template <typename T, int CH>
__global__ void __launch_bounds__(ATHREADS) attention_k(const float* q, const AttnSeq* seqs, int nseq, int layer,
                                                         float* out, __nv_bfloat16* out16, float* partial, int H,
                                                         int KV, int hd) {
  FDL_DYNAMIC_SHARED(unsigned char, smem);
  const int hdp = attn_hdp(hd), pitch = attn_pitch(hd, sizeof(T));
  float* Qs = reinterpret_cast<float*>(smem);                                     // (AQ, hdp) queries / sqrt(hd)
  T* KVs = reinterpret_cast<T*>(smem + (size_t)AQ * hdp * 4);                     // (ASTAGES, 2, AK, pitch)
  float* Ps = reinterpret_cast<float*>(smem + (size_t)AQ * hdp * 4 + (size_t)ASTAGES * 2 * AK * pitch * sizeof(T));
  int si = 0;  // the sequence this block works for: the last whose first block is at or before ours
  while (si + 1 < nseq && seqs[si + 1].blockBase <= (int)blockIdx.x) si++;
  const AttnSeq& S = seqs[si];
  const int per = S.parallel ? S.splits : 1, item = blockIdx.x - S.blockBase;
  const int qBase = item / per * AQ;  // the block's first query, counted in the sequence's rows
  const int sBegin = S.parallel ? item % per : 0, sEnd = S.parallel ? sBegin + 1 : S.splits;
  const int h = blockIdx.y, kvh = h / (H / KV);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const size_t rowElems = (size_t)KV * hd;
  const T* K0 = layer_ptr<T>(S.k0, S.stride0, layer);
  const T* V0 = layer_ptr<T>(S.v0, S.stride0, layer);
  const T* K1 = layer_ptr<T>(S.k1, S.stride1, layer);
  const T* V1 = layer_ptr<T>(S.v1, S.stride1, layer);
  const float scale = rsqrtf((float)hd);
  for (int i = tid; i < AQ * hdp; i += ATHREADS) {
    const int r = i / hdp, t = i % hdp, qr = qBase + r;
    Qs[i] = qr < S.nq && t < hd ? q[((size_t)(S.q0 + qr) * H + h) * hd + t] * scale : 0.f;
  }
  // Pad columns [hd, hdp) are never copied into: zero them once (Q's are zero, but 0 * NaN is NaN).
  for (int i = tid; i < ASTAGES * 2 * AK * (hdp - hd); i += ATHREADS)
    KVs[(size_t)(i / (hdp - hd)) * pitch + hd + i % (hdp - hd)] = from_f32<T>(0.f);
  const bool warpActive = qBase + warp * AQW < S.nq;  // uniform in the warp
  int lim[AQW];  // keys each of this warp's queries sees (0: no query there)
#pragma unroll
  for (int a = 0; a < AQW; a++) {
    const int qr = qBase + warp * AQW + a;
    lim[a] = qr < S.nq ? attn_visible(S, S.pos0 + qr) : 0;
  }
  // Keys any query of the block sees (positions ascend with rows). Tiles past it are skipped: for the queries
  // here they would only multiply by exp(0) = 1 and add 0, so skipping changes no bit.
  const int lastQ = (S.nq < qBase + AQ ? S.nq : qBase + AQ) - 1;
  const int blockLim = attn_visible(S, S.pos0 + lastQ);
  float M[AQW], Lr[AQW], O[AQW][AD];  // serial schedule: splits merged so far
#pragma unroll
  for (int a = 0; a < AQW; a++) {
    M[a] = -FLT_MAX;
    Lr[a] = 0.f;
#pragma unroll
    for (int d = 0; d < AD; d++) O[a][d] = 0.f;
  }
  for (int sp = sBegin; sp < sEnd; sp++) {
    const int kb = sp * S.chunk, splitEnd = S.L < kb + S.chunk ? S.L : kb + S.chunk;
    const int ke = splitEnd < blockLim ? splitEnd : blockLim;
    const int tiles = ke > kb ? (ke - kb + AK - 1) / AK : 0;
    float m[AQW], l[AQW], acc[AQW][AD];  // this split: running max, sum, weighted values
#pragma unroll
    for (int a = 0; a < AQW; a++) {
      m[a] = -FLT_MAX;
      l[a] = 0.f;
#pragma unroll
      for (int d = 0; d < AD; d++) acc[a][d] = 0.f;
    }
    auto stage = [&](int st, int kv) { return KVs + ((size_t)st * 2 + kv) * AK * pitch; };
    if (tiles > 0)
      attn_load_tile<T, CH>(stage(0, 0), stage(0, 1), K0, V0, S.n0, K1, V1, rowElems, kvh * hd, kb, ke, hd, pitch, q);
    __pipeline_commit();
    for (int t = 0; t < tiles; t++) {
      const int j0 = kb + t * AK;
      if (t + 1 < tiles)
        attn_load_tile<T, CH>(stage((t + 1) & 1, 0), stage((t + 1) & 1, 1), K0, V0, S.n0, K1, V1, rowElems, kvh * hd,
                              j0 + AK, ke, hd, pitch, q);
      __pipeline_commit();
      __pipeline_wait_prior(1);  // this thread's copies of tile t have landed (tile t+1's may still fly)
      __syncthreads();           // everyone's have (and Qs is written, the first time)
      // A warp with no query of the block's tile only helps load and waits at the barriers (uniform in the warp).
      if (warpActive) {
        const T* Kt = stage(t & 1, 0);
        const T* Vt = stage(t & 1, 1);
        float sc[AQW];
#pragma unroll
        for (int a = 0; a < AQW; a++) sc[a] = 0.f;
        for (int g = 0; g < hdp; g += 8) {  // q . k over dims ascending, 8 at a time (16-byte reads)
          float kf[8];
          load8f(Kt + lane * pitch + g, kf);
#pragma unroll
          for (int a = 0; a < AQW; a++) {
            const float* qa = Qs + (warp * AQW + a) * hdp + g;
            const float4 x = *reinterpret_cast<const float4*>(qa), y = *reinterpret_cast<const float4*>(qa + 4);
            sc[a] += x.x * kf[0]; sc[a] += x.y * kf[1]; sc[a] += x.z * kf[2]; sc[a] += x.w * kf[3];
            sc[a] += y.x * kf[4]; sc[a] += y.y * kf[5]; sc[a] += y.z * kf[6]; sc[a] += y.w * kf[7];
          }
        }
        const int j = j0 + lane;  // this lane's key
#pragma unroll
        for (int a = 0; a < AQW; a += 2) {  // two queries at a time: one 64-bit shuffle carries both
          const bool v0 = j < splitEnd && j < lim[a], v1 = j < splitEnd && j < lim[a + 1];
          const float s0 = v0 ? sc[a] : -FLT_MAX, s1 = v1 ? sc[a + 1] : -FLT_MAX;
          float x0 = s0, x1 = s1;
          warp_reduce2(x0, x1, [](float x, float y) { return fmaxf(x, y); });  // tile maxima
          const float n0 = fmaxf(m[a], x0), n1 = fmaxf(m[a + 1], x1);
          const float r0 = expf(m[a] - n0), r1 = expf(m[a + 1] - n1);  // 0 on the first visible tile
          const float p0 = v0 ? expf(s0 - n0) : 0.f, p1 = v1 ? expf(s1 - n1) : 0.f;
          Ps[(warp * AQW + a) * AK + lane] = p0;
          Ps[(warp * AQW + a + 1) * AK + lane] = p1;
          float t0 = p0, t1 = p1;
          warp_reduce2(t0, t1, [](float x, float y) { return x + y; });  // tile sums
          l[a] = l[a] * r0 + t0;
          l[a + 1] = l[a + 1] * r1 + t1;
          m[a] = n0;
          m[a + 1] = n1;
#pragma unroll
          for (int d = 0; d < AD; d++) {
            acc[a][d] *= r0;
            acc[a + 1][d] *= r1;
          }
        }
        __syncwarp();  // the warp's probabilities are visible to all its lanes
        for (int jj = 0; jj < AK; jj++) {  // acc[t] += p_j v_j[t], keys ascending
          float v[AD];
#pragma unroll
          for (int d = 0; d < AD; d++) v[d] = lane + 32 * d < hd ? to_f32(Vt[jj * pitch + lane + 32 * d]) : 0.f;
#pragma unroll
          for (int a = 0; a < AQW; a++) {
            const float pj = Ps[(warp * AQW + a) * AK + jj];
#pragma unroll
            for (int d = 0; d < AD; d++) acc[a][d] += pj * v[d];
          }
        }
      }
      __syncthreads();  // tile t's stage and Ps are no longer read before they are refilled
    }
#pragma unroll
    for (int a = 0; a < AQW; a++) {
      const int qr = qBase + warp * AQW + a;
      if (qr >= S.nq) continue;
      if (S.parallel) {  // (m, l, acc) of split sp: one record of hd + 2 floats per (row, head)
        float* rec = partial + ((size_t)(S.partBase + sp * S.nq + qr) * H + h) * (hd + 2);
        if (lane == 0) {
          rec[0] = m[a];
          rec[1] = l[a];
        }
#pragma unroll
        for (int d = 0; d < AD; d++)
          if (lane + 32 * d < hd) rec[2 + lane + 32 * d] = acc[a][d];
      } else {
        float ea, eb;
        softmax_merge_scales(M[a], m[a], ea, eb);
        Lr[a] = softmax_merge_sum(Lr[a], l[a], ea, eb);
#pragma unroll
        for (int d = 0; d < AD; d++) O[a][d] = softmax_merge_sum(O[a][d], acc[a][d], ea, eb);
      }
    }
  }
  if (S.parallel) return;
#pragma unroll
  for (int a = 0; a < AQW; a++) {
    const int qr = qBase + warp * AQW + a;
    if (qr >= S.nq) continue;
#pragma unroll
    for (int d = 0; d < AD; d++)
      if (lane + 32 * d < hd) {
        const size_t o = ((size_t)(S.q0 + qr) * H + h) * hd + lane + 32 * d;
        const float v = O[a][d] / Lr[a];
        if (out) out[o] = v;
        if (out16) out16[o] = __float2bfloat16(v);
      }
  }
}

// One block per (query row of the pass, head); thread t merges dim t over the splits, in split order.
__global__ void attention_combine_k(const AttnSeq* seqs, int nseq, const float* partial, float* out,
                                    __nv_bfloat16* out16, int H, int hd) {
  const int row = blockIdx.x, h = blockIdx.y;
  int si = -1;
  for (int i = 0; i < nseq; i++)
    if (row >= seqs[i].q0 && row < seqs[i].q0 + seqs[i].nq) si = i;
  if (si < 0 || !seqs[si].parallel) return;
  const AttnSeq& S = seqs[si];
  const int r = row - S.q0;
  for (int t = threadIdx.x; t < hd; t += blockDim.x) {
    float M = -FLT_MAX, l = 0.f, o = 0.f;
    for (int sp = 0; sp < S.splits; sp++) {
      const float* rec = partial + ((size_t)(S.partBase + sp * S.nq + r) * H + h) * (hd + 2);
      float ea, eb;
      softmax_merge_scales(M, rec[0], ea, eb);
      l = softmax_merge_sum(l, rec[1], ea, eb);
      o = softmax_merge_sum(o, rec[2 + t], ea, eb);
    }
    const size_t idx = ((size_t)row * H + h) * hd + t;
    const float v = o / l;
    if (out) out[idx] = v;
    if (out16) out16[idx] = __float2bfloat16(v);
  }
}

int attention_chunk(int L) {
  int c = (L + 31) / 32;       // at most 32 splits
  c = (c + AK - 1) / AK * AK;  // whole tiles
  return c < 128 ? 128 : c;
}

AttnPlan attention_plan(AttnSeq* seqs, int nseq, int H, int hd, int sms, Schedule schedule) {
  long long serialBlocks = 0;
  for (int i = 0; i < nseq; i++) serialBlocks += (long long)((seqs[i].nq + AQ - 1) / AQ) * H;
  AttnPlan p{0, 0, false, 0};
  long long partRows = 0;
  for (int i = 0; i < nseq; i++) {
    AttnSeq& S = seqs[i];
    S.chunk = attention_chunk(S.L);
    S.splits = S.L > 0 ? (S.L + S.chunk - 1) / S.chunk : 1;
    // Parallel when the serial grid would leave SMs idle: a few queries (a DualCache step) over many keys.
    const bool autoParallel = S.nq <= 2 * AQ && serialBlocks < 2LL * sms;
    S.parallel = S.splits > 1 && (schedule == kScheduleParallel || (schedule == kScheduleAuto && autoParallel));
    S.blockBase = p.blocks;
    p.blocks += (S.nq + AQ - 1) / AQ * (S.parallel ? S.splits : 1);
    S.partBase = (int)partRows;
    if (S.parallel) {
      partRows += (long long)S.splits * S.nq;
      p.combine = true;
    }
    if (S.q0 + S.nq > p.rows) p.rows = S.q0 + S.nq;
  }
  p.partialFloats = (size_t)partRows * H * (hd + 2);
  return p;
}

template <typename T, int CH>
static cudaError_t launch_attention(dim3 grid, size_t smem, cudaStream_t s, const float* q, const AttnSeq* seqs,
                                    int nseq, int layer, float* out, __nv_bfloat16* out16, float* partial, int H,
                                    int KV, int hd) {
  const cudaError_t e = allow_shared<attention_k<T, CH>>(attention_smem(AHD, sizeof(T)));
  if (e != cudaSuccess) return e;
  auto kernel = attention_k<T, CH>;
  FDL_LAUNCH(kernel, grid, ATHREADS, smem, s)(q, seqs, nseq, layer, out, out16, partial, H, KV, hd);
  return cudaGetLastError();
}

cudaError_t attention(const float* q, const AttnSeq* seqs, int nseq, const AttnPlan& plan, int layer, bool kvBf16,
                      float* out, __nv_bfloat16* out16, float* partial, int H, int KV, int hd, cudaStream_t s) {
  if (hd <= 0 || hd > AHD || hd % 2 != 0 || KV <= 0 || H % KV != 0) return cudaErrorInvalidValue;
  if (plan.blocks == 0) return cudaSuccess;
  if (plan.combine && !partial) return cudaErrorInvalidValue;
  const int bytes = kvBf16 ? 2 : 4;
  const bool vec = hd * bytes % 16 == 0;  // rows are whole 16-byte pieces (and start 16-byte aligned)
  const size_t smem = attention_smem(hd, bytes);
  const dim3 grid(plan.blocks, H);
  cudaError_t e;
  if (kvBf16) e = vec ? launch_attention<__nv_bfloat16, 16>(grid, smem, s, q, seqs, nseq, layer, out, out16, partial, H, KV, hd)
                      : launch_attention<__nv_bfloat16, 4>(grid, smem, s, q, seqs, nseq, layer, out, out16, partial, H, KV, hd);
  else e = vec ? launch_attention<float, 16>(grid, smem, s, q, seqs, nseq, layer, out, out16, partial, H, KV, hd)
               : launch_attention<float, 4>(grid, smem, s, q, seqs, nseq, layer, out, out16, partial, H, KV, hd);
  if (e != cudaSuccess || !plan.combine) return e;
  FDL_LAUNCH(attention_combine_k, dim3(plan.rows, H), 128, 0, s)(seqs, nseq, partial, out, out16, H, hd);
  return cudaGetLastError();
}

// ---- LM-head reduction: one block (256 threads) per reported row ----
struct Top2 { float a, b; };  // largest and second largest logit (b == a on a tie)
__device__ static inline Top2 merge2(Top2 x, Top2 y) {
  Top2 r;
  r.a = fmaxf(x.a, y.a);
  r.b = x.a >= y.a ? fmaxf(x.b, y.a) : fmaxf(y.b, x.a);
  return r;
}
// Token `exclude` (the mask, DESIGN §3) is never proposed and is left out of top-1/top-2; it counts in the softmax.
__global__ void lm_head_k(const float* logits, int V, const int32_t* positions, const double* temperatures,
                          const uint32_t* seeds, const uint32_t* fis, int exclude, HeadOut out) {
  __shared__ Top2 st[256];
  __shared__ double sbest[256];
  __shared__ int sidx[256];
  __shared__ double ssum[256], sent[256];
  __shared__ float sall[256];
  const int row = blockIdx.x, tid = threadIdx.x;
  const float* l = logits + (size_t)row * V;
  const uint32_t pos = (uint32_t)positions[row], seed = seeds[row], fi = fis[row];
  const double temperature = temperatures[row];
  const bool sample = temperature > 0.0;  // 0: greedy
  Top2 t{-FLT_MAX, -FLT_MAX};  // best two proposable logits
  float all = -FLT_MAX;          // max over every logit: the softmax's shift
  double best = -DBL_MAX;
  int bi = 0x7fffffff;
  for (int v = tid; v < V; v += blockDim.x) {
    const float x = l[v];
    all = fmaxf(all, x);
    if (v == exclude) continue;
    t = merge2(t, Top2{x, -FLT_MAX});
    const double score = sample ? (double)x / temperature + counter_gumbel(seed, fi, pos, (uint32_t)v) : (double)x;
    if (score > best) { best = score; bi = v; }  // strided ascending v: first max is the lowest id
  }
  st[tid] = t; sbest[tid] = best; sidx[tid] = bi; sall[tid] = all;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (tid < o) {
      st[tid] = merge2(st[tid], st[tid + o]);
      sall[tid] = fmaxf(sall[tid], sall[tid + o]);
      const double ob = sbest[tid + o];
      const int oi = sidx[tid + o];
      if (ob > sbest[tid] || (ob == sbest[tid] && oi < sidx[tid])) { sbest[tid] = ob; sidx[tid] = oi; }
    }
    __syncthreads();
  }
  const double mx = sall[0];
  double sum = 0.0, ent = 0.0;
  for (int v = tid; v < V; v += blockDim.x) {
    const double z = (double)l[v] - mx;
    const double e = exp(z);
    sum += e;
    ent += e * z;
  }
  ssum[tid] = sum; sent[tid] = ent;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (tid < o) { ssum[tid] += ssum[tid + o]; sent[tid] += sent[tid + o]; }
    __syncthreads();
  }
  if (tid == 0) {
    const double Z = ssum[0];
    const int tok = sidx[0];
    out.tokens[row] = tok;
    out.probs[row] = exp((double)l[tok] - mx) / Z;
    if (out.top1) out.top1[row] = exp((double)st[0].a - mx) / Z;
    if (out.top2) out.top2[row] = exp((double)st[0].b - mx) / Z;
    // H = ln Z - sum p (l - max)
    if (out.entropy) out.entropy[row] = log(Z) - sent[0] / Z;
  }
}
cudaError_t lm_head_reduce(const float* logits, int n, int V, const int32_t* positions, const double* temperature,
                           const uint32_t* seed, const uint32_t* forward_index, int exclude, HeadOut out, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  FDL_LAUNCH(lm_head_k, n, 256, 0, s)(logits, V, positions, temperature, seed, forward_index, exclude, out);
  return cudaGetLastError();
}

// ---- small element-wise kernels ----
template <typename T> __global__ void embed_k(const T* table, const int32_t* ids, float* y, int n, int d) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * d; i += (size_t)gridDim.x * blockDim.x) {
    y[i] = to_f32(table[(size_t)ids[i / d] * d + i % d]);
  }
}
cudaError_t embed_bf16(const __nv_bfloat16* table, const int32_t* ids, float* y, int n, int d, cudaStream_t s) {
  FDL_LAUNCH(embed_k<__nv_bfloat16>, grid_for((size_t)n * d), 256, 0, s)(table, ids, y, n, d);
  return cudaGetLastError();
}
cudaError_t embed_f32(const float* table, const int32_t* ids, float* y, int n, int d, cudaStream_t s) {
  FDL_LAUNCH(embed_k<float>, grid_for((size_t)n * d), 256, 0, s)(table, ids, y, n, d);
  return cudaGetLastError();
}
// acc[rows[i]] (d) += w[i] * y[i] (d) for i < n; rows null: row i itself; w null: weight 1 (a plain add). No two i
// may name the same row (one expert's rows are distinct), so no two threads add into one element.
__global__ void scatter_add_rows_k(const float* y, const int32_t* rows, const float* w, float* acc, int n, int d) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * d; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / d;
    const size_t to = (rows ? (size_t)rows[r] : r) * d + i % d;
    acc[to] = __fadd_rn(acc[to], w ? __fmul_rn(w[r], y[i]) : y[i]);  // rounded product then sum: no FMA
  }
}
cudaError_t scatter_add_rows(const float* y, const int32_t* rows, const float* w, float* acc, int n, int d, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  FDL_LAUNCH(scatter_add_rows_k, grid_for((size_t)n * d), 256, 0, s)(y, rows, w, acc, n, d);
  return cudaGetLastError();
}
template <typename T> __global__ void fill_k(T* w, size_t count, uint32_t seed, float scale, float offset) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
    const uint32_t h = counter_hash(seed, (uint32_t)(i >> 32), (uint32_t)i, 0u);
    const float u = ((float)h * (1.f / 4294967296.f)) * 2.f - 1.f;
    w[i] = (T)(offset + u * scale);
  }
}
cudaError_t fill_random_bf16(__nv_bfloat16* w, size_t count, uint32_t seed, float scale, cudaStream_t s) {
  FDL_LAUNCH(fill_k<__nv_bfloat16>, grid_for(count), 256, 0, s)(w, count, seed, scale, 0.f);
  return cudaGetLastError();
}
cudaError_t fill_random_f32(float* w, size_t count, uint32_t seed, float scale, float offset, cudaStream_t s) {
  FDL_LAUNCH(fill_k<float>, grid_for(count), 256, 0, s)(w, count, seed, scale, offset);
  return cudaGetLastError();
}

}  // namespace fdl
