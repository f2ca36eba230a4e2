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
  FDL_LAUNCH(rmsnorm_k, n, 256, 0, s)(x, w, y, y16, d, eps);
  return cudaGetLastError();
}

// ---- f32 -> bf16 activations (one conversion feeds every GEMM that reads the same input) ----
__global__ void to_bf16_k(const float* x, __nv_bfloat16* y, size_t count) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
    y[i] = __float2bfloat16(x[i]);
}

// ---- GEMM bf16 on tensor cores, shaped for streaming weights ----
// Block tile: BM rows of A x 128 output columns, k in steps of 64, 8 warps. BM = 32 for short spans (a DualCache
// step): warp w owns columns [16w, 16w + 16) of all 32 rows (2 accumulators). BM = 128 for full and prefix
// forwards: warps in a 2 x 4 grid, each 64 rows x 32 columns (8 accumulators, so each fragment loaded from shared
// memory feeds more mma). Grid: x = row tiles (fastest, so the blocks that read the same weight tile run together
// and share it through L2), y = column tiles, z = k splits. Each k step moves the next tiles from global memory
// into registers (16-byte loads) while the tensor cores work on the current one. With split k each split writes
// its partial sums to `partial` (splits, m, n) and gemm_splitk_reduce adds them in split order, so results do not
// depend on scheduling.
constexpr int GBN = 128, GBK = 64;
constexpr int GLD = GBK + 8;       // smem row pitch in bf16: 144 bytes, keeps 16-byte rows and fewer bank conflicts
constexpr int GTHREADS = 256;
constexpr int GW_VECS = GBN * GBK / 8 / GTHREADS;  // uint4 (8 bf16) of W per thread per k step: 4
constexpr int GCLD = 20;           // per-warp epilogue tile pitch in f32 (a multiple of 4, rows 80 bytes)

union Vec8 { uint4 u; __nv_bfloat16 h[8]; };

// 8 consecutive bf16 of row `row` at column `col` of a (rows, k) matrix, zeros outside; vec: k % 8 == 0.
template <bool VEC>
__device__ static inline uint4 load8(const __nv_bfloat16* M, int rows, int k, int row, int col, int colEnd) {
  Vec8 v;
  if constexpr (VEC) {
    if (row < rows && col < colEnd) return *reinterpret_cast<const uint4*>(M + (size_t)row * k + col);
    v.u = uint4{0, 0, 0, 0};
  } else {
    for (int i = 0; i < 8; i++)
      v.h[i] = row < rows && col + i < colEnd ? M[(size_t)row * k + col + i] : __float2bfloat16(0.f);
  }
  return v.u;
}

template <int BM, bool VEC>
__global__ void __launch_bounds__(GTHREADS) gemm_bf16_k(const __nv_bfloat16* A, const __nv_bfloat16* W, const float* bias,
                                                        float* C, float* partial, int m, int n, int k, int kChunk,
                                                        bool accumulate) {
  constexpr int WARPS_M = BM == 32 ? 1 : 2, WARPS_N = 8 / WARPS_M;   // warp grid
  constexpr int FA = BM / WARPS_M / 16, FB = GBN / WARPS_N / 16;     // 16x16 fragments per warp: rows, columns
  constexpr int A_VECS = BM * GBK / 8 / GTHREADS;                    // uint4 of A per thread per k step: 1 or 4
  __shared__ __align__(32) __nv_bfloat16 As[BM][GLD];   // (BM, 72) bf16: rows of A, k
  __shared__ __align__(32) __nv_bfloat16 Ws[GBN][GLD];  // (128, 72) bf16: rows of W = output columns, k (B col-major)
  __shared__ __align__(32) float Cw[8][16][GCLD];       // (warps, 16, 20) f32: one accumulator on its way out
  const int row0 = blockIdx.x * BM, col0 = blockIdx.y * GBN;
  const int kBegin = blockIdx.z * kChunk, kEnd = k < kBegin + kChunk ? k : kBegin + kChunk;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = (warp / WARPS_N) * FA * 16, wn = (warp % WARPS_N) * FB * 16;  // warp tile origin in the block
  const int vr = tid >> 3, vc = (tid & 7) * 8;  // this thread's vectors: rows vr + 32 j of a tile, columns vc..vc+7
  uint4 wreg[GW_VECS], areg[A_VECS];
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FA][FB];
#pragma unroll
  for (int i = 0; i < FA; i++)
#pragma unroll
    for (int j = 0; j < FB; j++) wmma::fill_fragment(acc[i][j], 0.f);
  if (kBegin < kEnd) {
    for (int j = 0; j < GW_VECS; j++) wreg[j] = load8<VEC>(W, n, k, col0 + vr + 32 * j, kBegin + vc, kEnd);
    for (int j = 0; j < A_VECS; j++) areg[j] = load8<VEC>(A, m, k, row0 + vr + 32 * j, kBegin + vc, kEnd);
  }
  for (int k0 = kBegin; k0 < kEnd; k0 += GBK) {
    for (int j = 0; j < GW_VECS; j++) *reinterpret_cast<uint4*>(&Ws[vr + 32 * j][vc]) = wreg[j];
    for (int j = 0; j < A_VECS; j++) *reinterpret_cast<uint4*>(&As[vr + 32 * j][vc]) = areg[j];
    __syncthreads();
    if (k0 + GBK < kEnd) {  // next tiles in flight during the mma below
      for (int j = 0; j < GW_VECS; j++) wreg[j] = load8<VEC>(W, n, k, col0 + vr + 32 * j, k0 + GBK + vc, kEnd);
      for (int j = 0; j < A_VECS; j++) areg[j] = load8<VEC>(A, m, k, row0 + vr + 32 * j, k0 + GBK + vc, kEnd);
    }
#pragma unroll
    for (int kk = 0; kk < GBK; kk += 16) {  // fragment pointers stay 32-byte aligned: 16 rows x 144 B, 16 bf16
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[FA];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[FB];
#pragma unroll
      for (int i = 0; i < FA; i++) wmma::load_matrix_sync(fa[i], &As[wm + 16 * i][kk], GLD);
#pragma unroll
      for (int j = 0; j < FB; j++) wmma::load_matrix_sync(fb[j], &Ws[wn + 16 * j][kk], GLD);
#pragma unroll
      for (int i = 0; i < FA; i++)
#pragma unroll
        for (int j = 0; j < FB; j++) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
  // Epilogue, one accumulator at a time through the warp's own staging tile: lane writes 8 of its 256 values,
  // half a row of 16 per 16 lanes, with bias and the residual (or raw, into its split's partial sums).
  float* out = partial ? partial + (size_t)blockIdx.z * m * n : C;
#pragma unroll
  for (int i = 0; i < FA; i++)
#pragma unroll
    for (int j = 0; j < FB; j++) {
      wmma::store_matrix_sync(&Cw[warp][0][0], acc[i][j], GCLD, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) {
        const int r = row0 + wm + 16 * i + e / 16, c = col0 + wn + 16 * j + e % 16;
        if (r < m && c < n) {
          float v = Cw[warp][e / 16][e % 16];
          if (!partial) v += (bias ? bias[c] : 0.f) + (accumulate ? C[(size_t)r * n + c] : 0.f);
          out[(size_t)r * n + c] = v;
        }
      }
      __syncwarp();  // the tile is read before the next store overwrites it
    }
}

__global__ void gemm_splitk_reduce_k(const float* partial, const float* bias, float* C, int m, int n, int splits,
                                     bool accumulate) {
  const size_t total = (size_t)m * n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    float acc = (accumulate ? C[i] : 0.f) + (bias ? bias[i % n] : 0.f);
    for (int z = 0; z < splits; z++) acc += partial[z * total + i];  // fixed order: deterministic
    C[i] = acc;
  }
}

// Rows per block: 128 once a span has enough rows to fill them (full and prefix forwards), else 32.
static inline int gemm_rows_per_block(int m) { return m >= 96 ? 128 : 32; }

int gemm_bf16_splits(int m, int n, int k, int sms) {
  const int bm = gemm_rows_per_block(m);
  const int tiles = ((m + bm - 1) / bm) * ((n + GBN - 1) / GBN);
  if (tiles >= 2 * sms) return 1;
  const int want = (2 * sms + tiles - 1) / tiles;  // about two blocks per SM
  const int most = k / (4 * GBK);                  // keep at least 4 k steps per split
  return want < most ? want : (most > 1 ? most : 1);
}

cudaError_t gemm_bf16(const __nv_bfloat16* A, const __nv_bfloat16* W, const float* bias, float* C, int m, int n, int k,
                      int splits, float* partial, bool accumulate, cudaStream_t s) {
  if (m <= 0 || n <= 0) return cudaSuccess;
  if (splits < 1) splits = 1;
  int kChunk = ((k + splits - 1) / splits + GBK - 1) / GBK * GBK;
  if (kChunk < GBK) kChunk = GBK;
  splits = (k + kChunk - 1) / kChunk;
  if (splits < 1) splits = 1;
  if (splits > 1 && !partial) return cudaErrorInvalidValue;
  const int bm = gemm_rows_per_block(m);
  dim3 grid((m + bm - 1) / bm, (n + GBN - 1) / GBN, splits);
  float* part = splits > 1 ? partial : nullptr;
  const bool vec = k % 8 == 0;  // rows of A and W start 16-byte aligned: vector loads
  auto kernel = bm == 32 ? (vec ? &gemm_bf16_k<32, true> : &gemm_bf16_k<32, false>)
                         : (vec ? &gemm_bf16_k<128, true> : &gemm_bf16_k<128, false>);
  FDL_LAUNCH(kernel, grid, GTHREADS, 0, s)(A, W, bias, C, part, m, n, k, kChunk, accumulate);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || splits == 1) return e;
  FDL_LAUNCH(gemm_splitk_reduce_k, grid_for((size_t)m * n), 256, 0, s)(partial, bias, C, m, n, splits, accumulate);
  return cudaGetLastError();
}

cudaError_t to_bf16(const float* x, __nv_bfloat16* y, size_t count, cudaStream_t s) {
  FDL_LAUNCH(to_bf16_k, grid_for(count), 256, 0, s)(x, y, count);
  return cudaGetLastError();
}

// ---- GEMM f32 (strict mode): 16x16 tiles through shared memory ----
__global__ void gemm_f32_k(const float* A, const float* W, const float* bias, float* C, int m, int n, int k, bool accumulate) {
  __shared__ float As[16][17], Ws[16][17];  // (16, 16) tiles, padded against bank conflicts
  const int r = blockIdx.y * 16 + threadIdx.y, c = blockIdx.x * 16 + threadIdx.x;
  float acc = 0.f;
  for (int k0 = 0; k0 < k; k0 += 16) {
    const int ka = k0 + threadIdx.x;
    As[threadIdx.y][threadIdx.x] = r < m && ka < k ? A[(size_t)r * k + ka] : 0.f;
    const int wrow = blockIdx.x * 16 + threadIdx.y;
    Ws[threadIdx.y][threadIdx.x] = wrow < n && ka < k ? W[(size_t)wrow * k + ka] : 0.f;
    __syncthreads();
    for (int i = 0; i < 16; i++) acc += As[threadIdx.y][i] * Ws[threadIdx.x][i];
    __syncthreads();
  }
  if (r < m && c < n) C[(size_t)r * n + c] = (accumulate ? C[(size_t)r * n + c] : 0.f) + acc + (bias ? bias[c] : 0.f);
}
cudaError_t gemm_f32(const float* A, const float* W, const float* bias, float* C, int m, int n, int k, bool accumulate,
                     cudaStream_t s) {
  dim3 grid((n + 15) / 16, (m + 15) / 16), block(16, 16);
  FDL_LAUNCH(gemm_f32_k, grid, block, 0, s)(A, W, bias, C, m, n, k, accumulate);
  return cudaGetLastError();
}

// ---- QKV split + NeoX RoPE: pairs (i, i + hd/2) rotate by pos * theta^(-2i/hd) ----
// qkv (n, H*hd + 2*KV*hd) is the fused projection's output, rows at absolute positions pos0 + r. Writes q (n, H, hd)
// and k (n, KV, hd) rotated and v (n, KV, hd) as is; k and v may point straight into the K/V cache.
__global__ void qkv_rope_k(const float* qkv, float* q, float* k, float* v, int n, int H, int KV, int hd, int pos0,
                           float theta) {
  const int half = hd / 2, heads = H + 2 * KV, width = heads * hd;
  const size_t total = (size_t)n * heads * half;  // one thread per (row, head, pair)
  for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
    const int i = idx % half;
    const int head = (idx / half) % heads;
    const int row = idx / ((size_t)half * heads);
    const float* src = qkv + (size_t)row * width + (size_t)head * hd;
    float a = src[i], b = src[i + half];
    float* dst;
    if (head < H + KV) {
      // Angles in double: the reference computes inv_freq and pos*inv_freq before rounding to f32.
      const double inv = pow((double)theta, -2.0 * i / hd);
      const double ang = (double)(pos0 + row) * inv;
      const float cs = (float)cos(ang), sn = (float)sin(ang);
      const float ra = a * cs - b * sn, rb = b * cs + a * sn;
      a = ra;
      b = rb;
      dst = head < H ? q + ((size_t)row * H + head) * hd : k + ((size_t)row * KV + head - H) * hd;
    } else {
      dst = v + ((size_t)row * KV + head - H - KV) * hd;
    }
    dst[i] = a;
    dst[i + half] = b;
  }
}
cudaError_t qkv_rope(const float* qkv, float* q, float* k, float* v, int n, int H, int KV, int hd, int pos0, float theta,
                     cudaStream_t s) {
  const size_t total = (size_t)n * (H + 2 * KV) * (hd / 2);
  FDL_LAUNCH(qkv_rope_k, grid_for(total), 256, 0, s)(qkv, q, k, v, n, H, KV, hd, pos0, theta);
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

// ---- attention over K/V segments, flash style ----
// One 128-thread block per (chunk of AQ = 16 queries, head). Keys come from two segments, seg0 (n0 rows) then
// seg1 (n1 rows), each (rows, KV, hd) f32: the cache and the fresh rows of a prefix step, or the whole cache
// (n1 = 0) for full and dual steps, so nothing is copied. The block walks the keys in tiles of AK = 32 staged in
// shared memory, read once for all 16 queries; each warp owns 4 queries, lane j scores key j of the tile (its
// probability goes through shared memory to the lanes that own the output dims), and the softmax is kept online
// (running max and sum), so any canvas length fits. hd <= 128.
constexpr int ATHREADS = 128, AQ = 16, AK = 32, AHD = 128;
constexpr int AQ_PER_WARP = AQ / (ATHREADS / 32);  // 4
__global__ void __launch_bounds__(ATHREADS) attention_k(const float* q, const float* k0, const float* v0, int n0,
                                                         const float* k1, const float* v1, float* out,
                                                         __nv_bfloat16* out16, int nq, int L, int H, int KV, int hd) {
  __shared__ float Qs[AQ][AHD];       // (16, 128) the chunk's queries, pre-scaled by 1/sqrt(hd)
  __shared__ float Ks[AK][AHD + 1];   // (32, 129) key tile; +1: lanes reading different keys hit different banks
  __shared__ float Vs[AK][AHD];       // (32, 128) value tile
  __shared__ float Ps[ATHREADS / 32][AQ_PER_WARP][AK];  // (4, 4, 32) each warp's probabilities for the tile's keys
  const int q0 = blockIdx.x * AQ, h = blockIdx.y, kvh = h / (H / KV);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float scale = rsqrtf((float)hd);
  for (int i = threadIdx.x; i < AQ * hd; i += ATHREADS) {
    const int r = i / hd, t = i % hd;
    Qs[r][t] = q0 + r < nq ? q[((size_t)(q0 + r) * H + h) * hd + t] * scale : 0.f;
  }
  float mx[AQ_PER_WARP], sum[AQ_PER_WARP], acc[AQ_PER_WARP][AHD / 32];  // per query: running max, sum, out dims
#pragma unroll
  for (int a = 0; a < AQ_PER_WARP; a++) {
    mx[a] = -FLT_MAX;
    sum[a] = 0.f;
    for (int d = 0; d < AHD / 32; d++) acc[a][d] = 0.f;
  }
  for (int j0 = 0; j0 < L; j0 += AK) {
    __syncthreads();  // the previous tile is no longer read (and Qs is written, the first time)
    for (int i = threadIdx.x; i < AK * hd; i += ATHREADS) {
      const int r = i / hd, t = i % hd, j = j0 + r;
      const float* kr = j < n0 ? k0 + ((size_t)j * KV + kvh) * hd : k1 + ((size_t)(j - n0) * KV + kvh) * hd;
      const float* vr = j < n0 ? v0 + ((size_t)j * KV + kvh) * hd : v1 + ((size_t)(j - n0) * KV + kvh) * hd;
      Ks[r][t] = j < L ? kr[t] : 0.f;
      Vs[r][t] = j < L ? vr[t] : 0.f;
    }
    __syncthreads();
    const bool valid = j0 + lane < L;
#pragma unroll
    for (int a = 0; a < AQ_PER_WARP; a++) {
      const int qr = warp * AQ_PER_WARP + a;
      float sc = 0.f;
      for (int t = 0; t < hd; t++) sc += Qs[qr][t] * Ks[lane][t];
      sc = valid ? sc : -FLT_MAX;
      float tileMax = sc;
      for (int o = 16; o > 0; o >>= 1) tileMax = fmaxf(tileMax, __shfl_xor_sync(0xffffffffu, tileMax, o));
      const float newMax = fmaxf(mx[a], tileMax);
      const float rescale = expf(mx[a] - newMax);  // 0 on the first tile
      const float p = valid ? expf(sc - newMax) : 0.f;
      float tileSum = p;
      for (int o = 16; o > 0; o >>= 1) tileSum += __shfl_xor_sync(0xffffffffu, tileSum, o);
      sum[a] = sum[a] * rescale + tileSum;
      mx[a] = newMax;
      for (int d = 0; d < AHD / 32; d++) acc[a][d] *= rescale;
      Ps[warp][a][lane] = p;
    }
    __syncwarp();  // the warp's probabilities are visible to all its lanes
#pragma unroll
    for (int a = 0; a < AQ_PER_WARP; a++)
      for (int j = 0; j < AK; j++) {  // out[t] += p_j v_j[t]; lane holds dims t = lane + 32 d
        const float pj = Ps[warp][a][j];
        for (int d = 0; d < AHD / 32; d++)
          if (lane + 32 * d < hd) acc[a][d] += pj * Vs[j][lane + 32 * d];
      }
  }
#pragma unroll
  for (int a = 0; a < AQ_PER_WARP; a++) {
    const int qi = q0 + warp * AQ_PER_WARP + a;
    if (qi >= nq) continue;
    const float inv = 1.f / sum[a];
    for (int d = 0; d < AHD / 32; d++)
      if (lane + 32 * d < hd) {
        const size_t o = ((size_t)qi * H + h) * hd + lane + 32 * d;
        if (out) out[o] = acc[a][d] * inv;
        if (out16) out16[o] = __float2bfloat16(acc[a][d] * inv);
      }
  }
}
cudaError_t attention(const float* q, const float* k0, const float* v0, int n0, const float* k1, const float* v1,
                      float* out, __nv_bfloat16* out16, int nq, int L, int H, int KV, int hd, cudaStream_t s) {
  if (hd > AHD || hd <= 0) return cudaErrorInvalidValue;
  if (nq <= 0) return cudaSuccess;
  dim3 grid((nq + AQ - 1) / AQ, H);
  FDL_LAUNCH(attention_k, grid, ATHREADS, 0, s)(q, k0, v0, n0, k1, v1, out, out16, nq, L, H, KV, hd);
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
__global__ void lm_head_k(const float* logits, int V, const int32_t* positions, int sample, double temperature,
                          uint32_t seed, uint32_t fi, int exclude, HeadOut out) {
  __shared__ Top2 st[256];
  __shared__ double sbest[256];
  __shared__ int sidx[256];
  __shared__ double ssum[256], sent[256];
  __shared__ float sall[256];
  const int row = blockIdx.x, tid = threadIdx.x;
  const float* l = logits + (size_t)row * V;
  const uint32_t pos = (uint32_t)positions[row];
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
cudaError_t lm_head_reduce(const float* logits, int n, int V, const int32_t* positions, int sample, double temperature,
                           uint32_t seed, uint32_t forward_index, int exclude, HeadOut out, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  FDL_LAUNCH(lm_head_k, n, 256, 0, s)(logits, V, positions, sample, temperature, seed, forward_index, exclude, out);
  return cudaGetLastError();
}

// ---- small element-wise kernels ----
template <typename T> __device__ static inline float to_f32(T v);
template <> __device__ inline float to_f32<float>(float v) { return v; }
template <> __device__ inline float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
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
