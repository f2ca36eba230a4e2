// Shared by the addon's entry points: CUDA error checking that throws, the AsyncWorker that runs heavy calls off
// the JS thread and settles a promise, and an owning device buffer.
#pragma once
#include <napi.h>
#include <functional>
#include <stdexcept>
#include <string>
#include "cuda_compat.h"

namespace fdl_napi {

// Every CUDA call goes through CK: a failure throws "<the call>: <CUDA message>", which Job turns into a rejection.
#define CK(call)                                                                                  \
  do {                                                                                            \
    cudaError_t e_ = (call);                                                                      \
    if (e_ != cudaSuccess) throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorString(e_)); \
  } while (0)

// Runs fn on the worker thread; resolves with build(env) or rejects with the CUDA error.
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, std::function<void()> fn, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env), d(Napi::Promise::Deferred::New(env)), fn(std::move(fn)), done(std::move(done)) {}
  Napi::Promise promise() { return d.Promise(); }
  void Execute() override {
    try {
      CK(cudaSetDevice(0));
      fn();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { d.Resolve(done ? done(Env()) : Env().Undefined()); }
  void OnError(const Napi::Error& e) override { d.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred d;
  std::function<void()> fn;
  std::function<Napi::Value(Napi::Env)> done;
};

// Owning device allocation of n elements (at least one, so the pointer is always valid).
template <typename T> struct DevBuf {
  T* p = nullptr;
  explicit DevBuf(size_t n) { CK(cudaMalloc(&p, (n ? n : 1) * sizeof(T))); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { if (p) cudaFree(p); }
};

// Milliseconds that `iters` calls of launch() take on the default stream, timed with CUDA events (no warm-up).
template <typename F> float deviceMs(int iters, F launch) {
  struct Events {
    cudaEvent_t t0 = nullptr, t1 = nullptr;
    ~Events() {
      if (t0) cudaEventDestroy(t0);
      if (t1) cudaEventDestroy(t1);
    }
  } ev;
  CK(cudaEventCreate(&ev.t0));
  CK(cudaEventCreate(&ev.t1));
  CK(cudaEventRecord(ev.t0));
  for (int i = 0; i < iters; i++) launch();
  CK(cudaEventRecord(ev.t1));
  CK(cudaEventSynchronize(ev.t1));
  float ms = 0.f;
  CK(cudaEventElapsedTime(&ms, ev.t0, ev.t1));
  return ms;
}

}  // namespace fdl_napi
