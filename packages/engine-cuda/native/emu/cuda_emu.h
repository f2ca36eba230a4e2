// A CPU emulator of the small part of CUDA that native/kernels.cu and native/addon.cc use, so that the same
// kernel source and the same addon run, slowly, on a machine without a GPU (CI has nvcc but no GPU). It checks
// the program's logic: indexing, tiling, shared memory, barriers, warp shuffles, the wmma tile algebra, the K/V
// cache handling and the LM-head reduction. It cannot check what only hardware shows: the memory model between
// blocks, the real wmma fragment layout, occupancy and speed.
//
// Execution model: a launch runs its blocks one after another on the calling OS thread. The threads of a block
// are fibers (ucontext) scheduled cooperatively: a fiber runs until it reaches __syncthreads() (block barrier) or
// a warp-collective (__shfl_xor_sync, __syncwarp), and a barrier opens when every live thread of its scope has
// arrived. `__shared__` variables are function statics: one copy, used by one block at a time. Launches are
// serialised process-wide, and "device" memory is host memory, so streams and events are synchronous.
// Dynamic shared memory is filled with 0xFF bytes (NaN as f32 and bf16) at each launch, so a read of a shared
// word that nothing wrote shows up in the results; a kernel gets more than 48 KiB of it only after
// cudaFuncSetAttribute raised its limit (at most 227 KiB, as on sm_90).
// Asynchronous copies (cp.async through __pipeline_memcpy_async, __pipeline_commit, __pipeline_wait_prior) read
// their source when issued; half of them (alternating by thread, group and block) land in shared memory at once,
// the other half only when the issuing thread waits for their group. So a missing wait reads stale contents (the
// previous tile, or the 0xFF fill), and a missing barrier before a stage is refilled lets the refill overwrite
// data other threads still read; a misaligned copy fails the launch with cudaErrorMisalignedAddress.
// Every cudaMalloc block sits between 256-byte guard zones, checked after each launch: a kernel that wrote just
// past (or before) a buffer fails with cudaErrorIllegalAddress, as on a GPU. A write far outside lands elsewhere
// in the heap and may crash the process instead; out-of-bounds reads are not caught.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- launch geometry ----
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
// Set by the fiber scheduler before it resumes a thread: read-only for kernels, as on a GPU. Plain globals:
// launches are serialised process-wide, and thread-local storage in a shared object costs a call per access.
extern dim3 threadIdx, blockIdx, blockDim, gridDim;

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// One copy per kernel, used by one block at a time (blocks run in turn).
#define __shared__ static

// ---- runtime types and error codes (values as in driver_types.h) ----
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorIllegalAddress = 700,
  cudaErrorMisalignedAddress = 716,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
struct CUstream_st;
struct CUevent_st;
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
struct cudaDeviceProp {
  char name[256];
  int major, minor;
  size_t totalGlobalMem, sharedMemPerBlock;
  int multiProcessorCount, maxThreadsPerBlock;
};

const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes);
cudaError_t cudaMalloc(void** p, size_t bytes);
template <typename T> cudaError_t cudaMalloc(T** p, size_t bytes) { return cudaMalloc(reinterpret_cast<void**>(p), bytes); }
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
// The emulator is no driver and no runtime: both versions are 0.
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaRuntimeGetVersion(int* v);
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
// Only the dynamic shared memory limit (value in bytes, at most 227 KiB); launches above a kernel's limit fail.
cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attr, int value);
template <typename... P> cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}

// ---- device intrinsics ----
void __syncthreads();
void __syncwarp(unsigned mask = 0xffffffffu);
// Every live lane of the warp must take part (the kernels only use full masks).
float __shfl_xor_sync(unsigned mask, float v, int laneMask, int width = 32);
int __shfl_xor_sync(unsigned mask, int v, int laneMask, int width = 32);
double __shfl_xor_sync(unsigned mask, double v, int laneMask, int width = 32);
float __shfl_sync(unsigned mask, float v, int srcLane, int width = 32);
int __shfl_sync(unsigned mask, int v, int srcLane, int width = 32);
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
// Rounded product and sum that nvcc never fuses into an FMA (host code here has no FMA contraction either).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }

// ---- asynchronous global -> shared copies (cuda_pipeline_primitives.h; cp.async on sm_80+) ----
// Copies size_and_align (4, 8 or 16) bytes, the last zfill of them zeros (src is not read when zfill == size);
// dst and src aligned to the size. The copy joins the thread's open group.
void __pipeline_memcpy_async(void* dst, const void* src, size_t size_and_align, size_t zfill = 0);
// Closes the thread's open group (possibly empty).
void __pipeline_commit();
// Completes every committed group of this thread except the `prior` most recent ones.
void __pipeline_wait_prior(size_t prior);
template <typename T> inline T __ldg(const T* p) { return *p; }

// ---- bf16 (bit pattern as cuda_bf16.h; conversions round to nearest even) ----
struct __nv_bfloat16 {
  uint16_t bits;
  __nv_bfloat16() = default;
  explicit __nv_bfloat16(float f);
  explicit operator float() const {
    const uint32_t u = (uint32_t)bits << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
inline __nv_bfloat16::__nv_bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) bits = (uint16_t)((u >> 16) | 0x40);  // NaN stays NaN
  else bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return (float)b; }

// ---- vector types ----
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// ---- wmma: each thread holds the whole tile, so the emulation is exact for any fragment layout ----
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K> struct tile_dims;
template <int M, int N, int K> struct tile_dims<matrix_a, M, N, K> { static constexpr int rows = M, cols = K; };
template <int M, int N, int K> struct tile_dims<matrix_b, M, N, K> { static constexpr int rows = K, cols = N; };
template <int M, int N, int K> struct tile_dims<accumulator, M, N, K> { static constexpr int rows = M, cols = N; };

// x is the tile in row-major order (rows x cols as tile_dims says).
template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
  static constexpr int rows = tile_dims<Use, M, N, K>::rows, cols = tile_dims<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  T x[num_elements];
};

template <typename Use, int M, int N, int K, typename T, typename Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, T v) {
  for (auto& e : f.x) e = v;
}
template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  using Fr = fragment<Use, M, N, K, T, Layout>;
  constexpr bool colMajor = std::is_same<Layout, col_major>::value;
  for (int r = 0; r < Fr::rows; r++)
    for (int c = 0; c < Fr::cols; c++) f.x[r * Fr::cols + c] = colMajor ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}
template <int M, int N, int K, typename T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t layout) {
  for (int r = 0; r < M; r++)
    for (int c = 0; c < N; c++) f.x[r * N + c] = layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}
template <int M, int N, int K, typename T>
inline void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
  for (int r = 0; r < M; r++)
    for (int c = 0; c < N; c++) (layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c]) = f.x[r * N + c];
}
// d = a (M, K) @ b (K, N) + c, products and sums in f32.
template <int M, int N, int K, typename Ta, typename La, typename Lb>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, Ta, La>& a,
                     const fragment<matrix_b, M, N, K, Ta, Lb>& b, const fragment<accumulator, M, N, K, float>& c) {
  float out[M * N];
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float acc = c.x[i * N + j];
      for (int k = 0; k < K; k++) acc += (float)a.x[i * K + k] * (float)b.x[k * N + j];
      out[i * N + j] = acc;
    }
  std::memcpy(d.x, out, sizeof out);
}
}  // namespace wmma
}  // namespace nvcuda

// ---- kernel launch ----
namespace fdl_emu {
// Runs `body` once per thread of every block; validates the configuration as the driver would (dynamic shared
// memory against `kernel`'s limit).
cudaError_t launch(const void* kernel, dim3 grid, dim3 block, size_t dynamicShared, const std::function<void()>& body);
// Dynamic shared memory of the running block (`extern __shared__` on a GPU).
void* dynamic_shared();

template <typename... P> struct Launch {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t shared;
  template <typename... A> void operator()(A&&... args) const {
    auto bound = std::make_tuple(static_cast<P>(std::forward<A>(args))...);  // by value, as a launch copies them
    auto k = kernel;
    launch(reinterpret_cast<const void*>(k), grid, block, shared, [k, &bound]() { std::apply(k, bound); });
  }
};
template <typename... P> Launch<P...> launcher(void (*k)(P...), dim3 grid, dim3 block, size_t shared) {
  return Launch<P...>{k, grid, block, shared};
}
}  // namespace fdl_emu
