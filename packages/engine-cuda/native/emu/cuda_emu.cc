// The emulator's runtime: fiber scheduler for launches, host-memory "device", synchronous streams and events.
// See cuda_emu.h for what it checks and what it cannot.
#include "cuda_emu.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include <chrono>
#include <map>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace {

thread_local cudaError_t lastError = cudaSuccess;  // sticky until cudaGetLastError, like the runtime's
cudaError_t fail(cudaError_t e) {
  if (e != cudaSuccess) lastError = e;
  return e;
}

enum class State { Ready, AtBlockBarrier, AtWarpBarrier, Done };

#if defined(__x86_64__)
// A fiber switch that saves only what the System V ABI makes callee-saved (rbx, rbp, r12-r15, MXCSR, x87 control
// word); swapcontext also saves the signal mask, a system call on every switch.
extern "C" void fdl_emu_switch(void** saveSp, void* loadSp);
asm(R"(
  .text
  .p2align 4
  .type fdl_emu_switch, @function
fdl_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size fdl_emu_switch, .-fdl_emu_switch
)");
struct Context { void* sp = nullptr; };
#else
struct Context { ucontext_t uc; };
#endif

constexpr size_t kStackBytes = 128 * 1024;  // per fiber; kernels keep at most a few KiB of locals
constexpr int kMaxThreads = 1024;           // per block, as on every GPU since sm_20
constexpr size_t kDefaultDynamicShared = 48 * 1024;  // without the opt-in attribute
constexpr size_t kMaxDynamicShared = 227 * 1024;     // sm_90's opt-in limit per block

// One cp.async in flight: its source bytes (read at issue), where they land, and its group number.
struct AsyncCopy {
  unsigned char* dst;
  unsigned char bytes[16];
  uint32_t size;
  uint64_t group;
};
// A thread's cp.async state: copies not yet landed, and how many groups it has committed.
struct AsyncState {
  std::vector<AsyncCopy> pending;
  uint64_t committed = 0;
};

// One block in flight on this OS thread.
struct BlockRun {
  Context scheduler;
  std::vector<Context> ctx;               // (threads,)
  std::vector<State> state;               // (threads,)
  std::vector<uint64_t> warpSlots;        // (warps, 32) exchange slots of __shfl_xor_sync
  std::unique_ptr<char[]> stacks;         // (threads, kStackBytes), reused across blocks and launches
  size_t stackCount = 0;
  std::unique_ptr<unsigned char[], void (*)(void*)> dynamicShared{nullptr, std::free};  // (capacity,) bytes, 128-aligned
  size_t dynamicCapacity = 0;
  std::vector<AsyncState> async;          // (threads,) cp.async groups per thread
  cudaError_t fault = cudaSuccess;        // set by a thread (misaligned cp.async); fails the launch
  unsigned blockLinear = 0;               // the running block's linear index
  const std::function<void()>* body = nullptr;
  int current = 0;                        // linear thread index of the running fiber
  int threads = 0;
};
std::mutex launchMutex;  // `__shared__` statics and `run` are process-wide: one launch at a time
BlockRun run;            // guarded by launchMutex

void switchTo(Context& save, Context& load) {
#if defined(__x86_64__)
  fdl_emu_switch(&save.sp, load.sp);
#else
  swapcontext(&save.uc, &load.uc);
#endif
}

void fiberEntry() {
  (*run.body)();
  run.state[run.current] = State::Done;
  switchTo(run.ctx[run.current], run.scheduler);  // never resumed
}

// Prepares fiber t to start fiberEntry on its own stack at the next switch to it.
void initFiber(int t) {
  char* base = run.stacks.get() + (size_t)t * kStackBytes;
#if defined(__x86_64__)
  // Top of stack, as fdl_emu_switch pops it: [mxcsr, fpu cw] r15 r14 r13 r12 rbx rbp, then `ret` into
  // fiberEntry with rsp = 8 (mod 16), as after a call; a null return address above it ends any backtrace.
  uint64_t* top = reinterpret_cast<uint64_t*>(((uintptr_t)(base + kStackBytes) & ~(uintptr_t)15) - 16);
  top[1] = 0;
  top[0] = (uint64_t)(uintptr_t)&fiberEntry;
  uint64_t* sp = top - 7;
  for (int i = 1; i < 7; i++) sp[i] = 0;
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  std::memcpy(sp, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  run.ctx[t].sp = sp;
#else
  getcontext(&run.ctx[t].uc);
  run.ctx[t].uc.uc_stack.ss_sp = base;
  run.ctx[t].uc.uc_stack.ss_size = kStackBytes;
  run.ctx[t].uc.uc_link = nullptr;
  makecontext(&run.ctx[t].uc, fiberEntry, 0);
#endif
}

void yieldTo(State s) {
  run.state[run.current] = s;
  switchTo(run.ctx[run.current], run.scheduler);
}

void setThreadIdx(int t) {
  threadIdx = dim3(t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y));
}

// Runs one block to completion; false on a barrier deadlock (threads waiting at barriers that cannot open).
// Warps run one at a time: the lanes of a warp run one after another until each waits at a warp collective, which
// then opens, until all its lanes wait at __syncthreads or have exited; then the next warp. When every live thread
// waits at __syncthreads, that barrier opens. Lanes and warps run in ascending order in some blocks and rounds and
// descending in others: a missing barrier then shows as a stale shared-memory read whichever side of the race
// the reading thread is on.
bool runBlock(bool descendingFirst) {
  const int n = run.threads, warps = (n + 31) / 32;
  for (int t = 0; t < n; t++) {
    initFiber(t);
    run.state[t] = State::Ready;
    run.async[t].pending.clear();  // copies a thread never waited for are lost with its block
    run.async[t].committed = 0;
  }
  for (int round = 0;; round++) {
    const bool descending = descendingFirst != (round & 1);
    for (int wi = 0; wi < warps; wi++) {
      const int w = descending ? warps - 1 - wi : wi;
      const int lo = w * 32, hi = lo + 32 < n ? lo + 32 : n;
      for (;;) {
        for (int i = lo; i < hi; i++) {
          const int t = descending ? lo + hi - 1 - i : i;
          if (run.state[t] != State::Ready) continue;
          run.current = t;
          setThreadIdx(t);
          switchTo(run.scheduler, run.ctx[t]);
        }
        int waiting = 0, live = 0;
        for (int t = lo; t < hi; t++) {
          live += run.state[t] != State::Done;
          waiting += run.state[t] == State::AtWarpBarrier;
        }
        if (waiting == 0 || waiting != live) break;  // at __syncthreads, exited, or (mixed) deadlocked
        for (int t = lo; t < hi; t++)
          if (run.state[t] == State::AtWarpBarrier) run.state[t] = State::Ready;
      }
    }
    int done = 0, atBlock = 0;
    for (int t = 0; t < n; t++) {
      done += run.state[t] == State::Done;
      atBlock += run.state[t] == State::AtBlockBarrier;
    }
    if (done == n) return true;
    if (atBlock == 0 || atBlock + done != n) return false;  // some wait at a warp collective that cannot complete
    for (int t = 0; t < n; t++)  // exited threads no longer take part in __syncthreads
      if (run.state[t] == State::AtBlockBarrier) run.state[t] = State::Ready;
  }
}

// Every lane publishes v, then reads lane `srcOf(lane)`'s value (its own when that lane does not exist).
template <typename T, typename Src> T shuffle(T v, Src srcOf) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 64 bits");
  const int t = run.current, lane = t & 31, base = t - lane;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  run.warpSlots[t] = bits;
  yieldTo(State::AtWarpBarrier);  // every lane has written its value
  const int src = base + (srcOf(lane) & 31);
  T r = v;
  if (src < run.threads) std::memcpy(&r, &run.warpSlots[src], sizeof(T));
  yieldTo(State::AtWarpBarrier);  // every lane has read before anyone writes again
  return r;
}

const char* errorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorMisalignedAddress: return "cudaErrorMisalignedAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

// ---- device memory with guard zones: [kGuard bytes of kGuardByte][user bytes][kGuard bytes of kGuardByte] ----
constexpr size_t kGuard = 256;  // also keeps the user pointer 256-byte aligned, as cudaMalloc's are
constexpr unsigned char kGuardByte = 0xA5;
std::mutex allocMutex;
std::map<void*, size_t> allocations;  // user pointer -> user bytes
std::mutex attrMutex;
std::map<const void*, size_t> sharedLimits;  // kernel -> dynamic shared memory limit set by cudaFuncSetAttribute

bool guardsIntact() {
  std::lock_guard<std::mutex> lock(allocMutex);
  for (const auto& [p, bytes] : allocations) {
    const unsigned char* lo = static_cast<unsigned char*>(p) - kGuard;
    const unsigned char* hi = static_cast<unsigned char*>(p) + bytes;
    for (size_t i = 0; i < kGuard; i++)
      if (lo[i] != kGuardByte || hi[i] != kGuardByte) return false;
  }
  return true;
}

size_t meminfo(const char* key) {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return (size_t)1 << 30;
  char line[256];
  size_t kb = 0;
  const size_t len = std::strlen(key);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, len) == 0) kb = std::strtoull(line + len, nullptr, 10);
  std::fclose(f);
  return kb * 1024;
}

}  // namespace

namespace fdl_emu {

cudaError_t launch(const void* kernel, dim3 grid, dim3 block, size_t dynamicShared, const std::function<void()>& body) {
  const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 ||
      grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    return fail(cudaErrorInvalidConfiguration);
  size_t limit = kDefaultDynamicShared;
  {
    std::lock_guard<std::mutex> lock(attrMutex);
    auto it = sharedLimits.find(kernel);
    if (it != sharedLimits.end()) limit = it->second;
  }
  if (dynamicShared > limit) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(launchMutex);
  run.threads = (int)threads;
  if (run.stackCount < threads) {
    run.stacks.reset(new char[threads * kStackBytes]);
    run.stackCount = threads;
  }
  run.ctx.resize(threads);
  run.state.resize(threads);
  run.warpSlots.assign(threads, 0);
  run.async.resize(threads);
  run.fault = cudaSuccess;
  const size_t capacity = (dynamicShared + 127) / 128 * 128 + 128;
  if (run.dynamicCapacity < capacity) {
    run.dynamicShared.reset(static_cast<unsigned char*>(std::aligned_alloc(128, capacity)));
    run.dynamicCapacity = capacity;
  }
  std::memset(run.dynamicShared.get(), 0xFF, capacity);  // NaN in f32 and bf16: unwritten shared memory shows
  run.body = &body;
  blockDim = block;
  gridDim = grid;
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        blockIdx = dim3(x, y, z);
        run.blockLinear = (z * grid.y + y) * grid.x + x;
        if (!runBlock(((x + y + z) & 1) != 0)) return fail(cudaErrorLaunchFailure);  // deadlock at a barrier: a kernel bug
        if (run.fault != cudaSuccess) return fail(run.fault);
      }
  return guardsIntact() ? cudaSuccess : fail(cudaErrorIllegalAddress);
}

void* dynamic_shared() { return run.dynamicShared.get(); }

}  // namespace fdl_emu

void __syncthreads() { yieldTo(State::AtBlockBarrier); }

void __pipeline_memcpy_async(void* dst, const void* src, size_t size, size_t zfill) {
  if ((size != 4 && size != 8 && size != 16) || zfill > size || (uintptr_t)dst % size != 0 ||
      (zfill < size && (uintptr_t)src % size != 0)) {
    run.fault = cudaErrorMisalignedAddress;
    return;
  }
  AsyncState& st = run.async[run.current];
  // A copy lands at some point between its issue and the wait for its group. Half of them (alternating by
  // thread, group and block) land at once, half only at the wait: a missing wait reads stale data, and a stage
  // refilled while other threads still read it (a missing barrier) is overwritten under them.
  const bool early = ((unsigned)run.current ^ (unsigned)st.committed ^ run.blockLinear) & 1u;
  if (early) {
    if (zfill < size) std::memcpy(dst, src, size - zfill);
    std::memset(static_cast<unsigned char*>(dst) + (size - zfill), 0, zfill);
    return;
  }
  AsyncCopy c;
  c.dst = static_cast<unsigned char*>(dst);
  c.size = (uint32_t)size;
  c.group = st.committed;  // the group it joins: the next one committed
  std::memset(c.bytes, 0, sizeof c.bytes);
  if (zfill < size) std::memcpy(c.bytes, src, size - zfill);
  st.pending.push_back(c);
}
void __pipeline_commit() { run.async[run.current].committed++; }
void __pipeline_wait_prior(size_t prior) {
  AsyncState& st = run.async[run.current];
  const uint64_t done = st.committed > prior ? st.committed - prior : 0;  // groups [0, done) must have landed
  size_t kept = 0;
  for (size_t i = 0; i < st.pending.size(); i++) {
    const AsyncCopy& c = st.pending[i];
    if (c.group < done) std::memcpy(c.dst, c.bytes, c.size);
    else st.pending[kept++] = c;
  }
  st.pending.resize(kept);
}
void __syncwarp(unsigned) { yieldTo(State::AtWarpBarrier); }
float __shfl_xor_sync(unsigned, float v, int m, int) { return shuffle(v, [m](int lane) { return lane ^ m; }); }
int __shfl_xor_sync(unsigned, int v, int m, int) { return shuffle(v, [m](int lane) { return lane ^ m; }); }
double __shfl_xor_sync(unsigned, double v, int m, int) { return shuffle(v, [m](int lane) { return lane ^ m; }); }
float __shfl_sync(unsigned, float v, int src, int) { return shuffle(v, [src](int) { return src; }); }
int __shfl_sync(unsigned, int v, int src, int) { return shuffle(v, [src](int) { return src; }); }

const char* cudaGetErrorName(cudaError_t e) { return errorName(e); }
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered (emulator: a kernel wrote outside a cudaMalloc block)";
    case cudaErrorMisalignedAddress: return "misaligned address (emulator: a cp.async whose size or addresses break its alignment)";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator: threads deadlocked at a barrier)";
  }
  return "unknown error";
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = lastError;
  lastError = cudaSuccess;
  return e;
}
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device != 0) return fail(cudaErrorInvalidValue);
  std::memset(p, 0, sizeof *p);
  std::strncpy(p->name, "fast-dllm CUDA emulator (CPU)", sizeof p->name - 1);
  p->major = 9;
  p->minor = 0;
  p->totalGlobalMem = meminfo("MemTotal:");
  p->sharedMemPerBlock = kDefaultDynamicShared;
  // An H100/H200's count, so the execution strategies chosen from it (never the arithmetic) are a GPU's.
  p->multiProcessorCount = 132;
  p->maxThreadsPerBlock = kMaxThreads;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : fail(cudaErrorInvalidValue); }
cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes) {
  *freeBytes = meminfo("MemAvailable:");
  *totalBytes = meminfo("MemTotal:");
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = nullptr;
#if defined(__SANITIZE_ADDRESS__)
  // Under AddressSanitizer the exact size, so its red zones catch out-of-bounds reads as well as writes.
  *p = std::malloc(bytes ? bytes : 1);
  if (!*p) return fail(cudaErrorMemoryAllocation);
  return cudaSuccess;
#endif
  const size_t padded = (bytes + 255) / 256 * 256;
  unsigned char* base = static_cast<unsigned char*>(std::aligned_alloc(256, padded + 2 * kGuard));
  if (!base) return fail(cudaErrorMemoryAllocation);
  std::memset(base, kGuardByte, kGuard);
  std::memset(base + kGuard + bytes, kGuardByte, padded - bytes + kGuard);  // the rounding slack guards too
  *p = base + kGuard;
  std::lock_guard<std::mutex> lock(allocMutex);
  allocations[*p] = bytes;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
#if defined(__SANITIZE_ADDRESS__)
  std::free(p);
  return cudaSuccess;
#endif
  std::lock_guard<std::mutex> lock(allocMutex);
  auto it = allocations.find(p);
  if (it == allocations.end()) return fail(cudaErrorInvalidValue);
  allocations.erase(it);
  std::free(static_cast<unsigned char*>(p) - kGuard);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
  std::memset(dst, value, bytes);
  return cudaSuccess;
}
// Streams and events: execution is synchronous, so a stream is only a distinct non-null handle.
struct CUstream_st { int unused; };
struct CUevent_st { std::chrono::steady_clock::time_point t; };
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = new CUstream_st{0};
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st{std::chrono::steady_clock::now()};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int* v) {
  *v = 0;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 0;
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || (size_t)value > kMaxDynamicShared)
    return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(attrMutex);
  sharedLimits[kernel] = (size_t)value;
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  *ms = std::chrono::duration<float, std::milli>(end->t - start->t).count();
  return cudaSuccess;
}
