// CUDA kernels of the cuda engine: f32 activations, bf16 (tensor cores, f32 accumulate) or f32 weights.
#include "kernels.h"
#include <cfloat>

namespace fdl {

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

// ---- RMSNorm: one block per row ----
__global__ void rmsnorm_k(const float* x, const float* w, float* y, int d, float eps) {
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
  for (int i = threadIdx.x; i < d; i += blockDim.x) y[(size_t)blockIdx.x * d + i] = xr[i] * r * w[i];
}
cudaError_t rmsnorm(const float* x, const float* w, float* y, int n, int d, float eps, cudaStream_t s) {
  FDL_LAUNCH(rmsnorm_k, n, 256, 0, s)(x, w, y, d, eps);
  return cudaGetLastError();
}

// ---- GEMM bf16 on tensor cores: block tile 32x32 (4 warps, one 16x16 fragment each), k step 64 ----
using namespace nvcuda;
constexpr int GT = 32, GK = 64;  // fewer barriers per weight byte than a 16-wide k step
__global__ void gemm_bf16_k(const float* A, const __nv_bfloat16* W, const float* bias, float* C, int m, int n, int k) {
  __shared__ __align__(32) __nv_bfloat16 As[GT][GK];  // (rows of A, k) bf16
  __shared__ __align__(32) __nv_bfloat16 Ws[GT][GK];  // (rows of W = output cols, k) bf16: B in column-major
  __shared__ __align__(32) float Cs[GT][GT];          // (32, 32) f32 accumulator staging
  const int row0 = blockIdx.y * GT, col0 = blockIdx.x * GT;
  const int warp = threadIdx.x >> 5, wr = (warp >> 1) * 16, wc = (warp & 1) * 16;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.f);
  for (int k0 = 0; k0 < k; k0 += GK) {
    for (int i = threadIdx.x; i < GT * GK; i += blockDim.x) {
      const int r = i / GK, c = i % GK, kk = k0 + c;
      As[r][c] = __float2bfloat16(row0 + r < m && kk < k ? A[(size_t)(row0 + r) * k + kk] : 0.f);
      Ws[r][c] = col0 + r < n && kk < k ? W[(size_t)(col0 + r) * k + kk] : __float2bfloat16(0.f);
    }
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
#pragma unroll
    for (int kk = 0; kk < GK; kk += 16) {  // 16 bf16 = 32 bytes: each fragment pointer stays 256-bit aligned
      wmma::load_matrix_sync(fa, &As[wr][kk], GK);
      wmma::load_matrix_sync(fb, &Ws[wc][kk], GK);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    __syncthreads();
  }
  wmma::store_matrix_sync(&Cs[wr][wc], acc, GT, wmma::mem_row_major);
  __syncthreads();
  for (int i = threadIdx.x; i < GT * GT; i += blockDim.x) {
    const int r = row0 + i / GT, c = col0 + i % GT;
    if (r < m && c < n) C[(size_t)r * n + c] = Cs[i / GT][i % GT] + (bias ? bias[c] : 0.f);
  }
}
cudaError_t gemm_bf16(const float* A, const __nv_bfloat16* W, const float* bias, float* C, int m, int n, int k,
                      cudaStream_t s) {
  dim3 grid((n + GT - 1) / GT, (m + GT - 1) / GT);
  FDL_LAUNCH(gemm_bf16_k, grid, 128, 0, s)(A, W, bias, C, m, n, k);
  return cudaGetLastError();
}

// ---- GEMM f32 (strict mode): 16x16 tiles through shared memory ----
__global__ void gemm_f32_k(const float* A, const float* W, const float* bias, float* C, int m, int n, int k) {
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
  if (r < m && c < n) C[(size_t)r * n + c] = acc + (bias ? bias[c] : 0.f);
}
cudaError_t gemm_f32(const float* A, const float* W, const float* bias, float* C, int m, int n, int k, cudaStream_t s) {
  dim3 grid((n + 15) / 16, (m + 15) / 16), block(16, 16);
  FDL_LAUNCH(gemm_f32_k, grid, block, 0, s)(A, W, bias, C, m, n, k);
  return cudaGetLastError();
}

// ---- NeoX RoPE: pairs (i, i + hd/2) rotate by pos * theta^(-2i/hd) ----
__global__ void rope_k(float* x, int n, int heads, int hd, int pos0, float theta) {
  const int half = hd / 2;
  const size_t total = (size_t)n * heads * half;
  for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
    const int i = idx % half;
    const size_t rowhead = idx / half;
    const int row = rowhead / heads;
    // Angles in double: the reference computes inv_freq and pos*inv_freq before rounding to f32.
    const double inv = pow((double)theta, -2.0 * i / hd);
    const double ang = (double)(pos0 + row) * inv;
    const float cs = (float)cos(ang), sn = (float)sin(ang);
    float* p = x + rowhead * hd;
    const float a = p[i], b = p[i + half];
    p[i] = a * cs - b * sn;
    p[i + half] = b * cs + a * sn;
  }
}
cudaError_t rope_neox(float* x, int n, int heads, int hd, int pos0, float theta, cudaStream_t s) {
  const size_t total = (size_t)n * heads * (hd / 2);
  const int blocks = (int)((total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096);
  FDL_LAUNCH(rope_k, blocks > 0 ? blocks : 1, 256, 0, s)(x, n, heads, hd, pos0, theta);
  return cudaGetLastError();
}

// ---- SwiGLU ----
__global__ void swiglu_k(const float* g, const float* u, float* h, size_t total) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const float x = g[i];
    h[i] = x / (1.f + expf(-x)) * u[i];
  }
}
cudaError_t swiglu(const float* gate, const float* up, float* h, int n, int ff, cudaStream_t s) {
  const size_t total = (size_t)n * ff;
  const int blocks = (int)((total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096);
  FDL_LAUNCH(swiglu_k, blocks > 0 ? blocks : 1, 256, 0, s)(gate, up, h, total);
  return cudaGetLastError();
}

// ---- attention: one block per (query row, head); scores (L,) in dynamic shared memory ----
__global__ void attention_k(const float* q, const float* kc, const float* vc, float* out, int L, int H, int KV, int hd) {
  FDL_DYNAMIC_SHARED(float, sc);  // (L,) scores, then probabilities
  __shared__ float red[2];
  const int qi = blockIdx.x, h = blockIdx.y, kvh = h / (H / KV);
  const float* qr = q + ((size_t)qi * H + h) * hd;
  const float scale = rsqrtf((float)hd);
  for (int j = threadIdx.x; j < L; j += blockDim.x) {
    const float* kr = kc + ((size_t)j * KV + kvh) * hd;
    float dot = 0.f;
    for (int t = 0; t < hd; t++) dot += qr[t] * kr[t];
    sc[j] = dot * scale;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // Serial max/sum keeps the kernel small; the GEMMs dominate the run time.
    float mx = -FLT_MAX;
    for (int j = 0; j < L; j++) mx = fmaxf(mx, sc[j]);
    red[0] = mx;
  }
  __syncthreads();
  for (int j = threadIdx.x; j < L; j += blockDim.x) sc[j] = expf(sc[j] - red[0]);
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0.f;
    for (int j = 0; j < L; j++) sum += sc[j];
    red[1] = 1.f / sum;
  }
  __syncthreads();
  for (int t = threadIdx.x; t < hd; t += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < L; j++) acc += sc[j] * vc[((size_t)j * KV + kvh) * hd + t];
    out[((size_t)qi * H + h) * hd + t] = acc * red[1];
  }
}
cudaError_t attention(const float* q, const float* kc, const float* vc, float* out, int nq, int L, int H, int KV,
                      int hd, cudaStream_t s) {
  dim3 grid(nq, H);
  FDL_LAUNCH(attention_k, grid, 128, (size_t)L * sizeof(float), s)(q, kc, vc, out, L, H, KV, hd);
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
__global__ void lm_head_k(const float* logits, int V, const int32_t* positions, int sample, double temperature,
                          uint32_t seed, uint32_t fi, HeadOut out) {
  __shared__ Top2 st[256];
  __shared__ double sbest[256];
  __shared__ int sidx[256];
  __shared__ double ssum[256], sent[256];
  const int row = blockIdx.x, tid = threadIdx.x;
  const float* l = logits + (size_t)row * V;
  const uint32_t pos = (uint32_t)positions[row];
  Top2 t{-FLT_MAX, -FLT_MAX};
  double best = -DBL_MAX;
  int bi = 0x7fffffff;
  for (int v = tid; v < V; v += blockDim.x) {
    const float x = l[v];
    t = merge2(t, Top2{x, -FLT_MAX});
    const double score = sample ? (double)x / temperature + counter_gumbel(seed, fi, pos, (uint32_t)v) : (double)x;
    if (score > best) { best = score; bi = v; }  // strided ascending v: first max is the lowest id
  }
  st[tid] = t; sbest[tid] = best; sidx[tid] = bi;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (tid < o) {
      st[tid] = merge2(st[tid], st[tid + o]);
      const double ob = sbest[tid + o];
      const int oi = sidx[tid + o];
      if (ob > sbest[tid] || (ob == sbest[tid] && oi < sidx[tid])) { sbest[tid] = ob; sidx[tid] = oi; }
    }
    __syncthreads();
  }
  const double mx = st[0].a;
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
    if (out.top1) out.top1[row] = 1.0 / Z;
    if (out.top2) out.top2[row] = exp((double)st[0].b - mx) / Z;
    // H = ln Z - sum p (l - max)
    if (out.entropy) out.entropy[row] = log(Z) - sent[0] / Z;
  }
}
cudaError_t lm_head_reduce(const float* logits, int n, int V, const int32_t* positions, int sample, double temperature,
                           uint32_t seed, uint32_t forward_index, HeadOut out, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  FDL_LAUNCH(lm_head_k, n, 256, 0, s)(logits, V, positions, sample, temperature, seed, forward_index, out);
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
static inline int grid_for(size_t total) {
  const size_t b = (total + 255) / 256;
  return b == 0 ? 1 : (b > 8192 ? 8192 : (int)b);
}
cudaError_t embed_bf16(const __nv_bfloat16* table, const int32_t* ids, float* y, int n, int d, cudaStream_t s) {
  FDL_LAUNCH(embed_k<__nv_bfloat16>, grid_for((size_t)n * d), 256, 0, s)(table, ids, y, n, d);
  return cudaGetLastError();
}
cudaError_t embed_f32(const float* table, const int32_t* ids, float* y, int n, int d, cudaStream_t s) {
  FDL_LAUNCH(embed_k<float>, grid_for((size_t)n * d), 256, 0, s)(table, ids, y, n, d);
  return cudaGetLastError();
}
__global__ void add_k(float* x, const float* y, size_t count) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) x[i] += y[i];
}
cudaError_t add_inplace(float* x, const float* y, size_t count, cudaStream_t s) {
  FDL_LAUNCH(add_k, grid_for(count), 256, 0, s)(x, y, count);
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
