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

}  // namespace fdl_napi
