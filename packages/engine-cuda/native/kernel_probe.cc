// Kernel-level entry points for tests (test/engine-cuda-kernels.test.ts): each runs one kernel on host data and
// resolves with the result, so the kernels can be compared with a float64 reference on random shapes that the
// model fixtures never reach (split k, k not a multiple of 8, many k steps, GQA). Not used by the engine.
#include "kernel_probe.h"

#include <cstring>
#include <string>
#include <memory>
#include <vector>

#include "kernels.h"
#include "napi_job.h"

namespace {

using fdl_napi::DevBuf;
using fdl_napi::Job;

template <typename T> std::shared_ptr<std::vector<T>> hostCopy(const Napi::Value& v) {
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  auto r = std::make_shared<std::vector<T>>(ta.ByteLength() / sizeof(T));
  std::memcpy(r->data(), (uint8_t*)ta.ArrayBuffer().Data() + ta.ByteOffset(), ta.ByteLength());
  return r;
}
template <typename T> void upload(DevBuf<T>& d, const std::vector<T>& h) {
  CK(cudaMemcpy(d.p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
}
Napi::Value floats(Napi::Env env, const std::vector<float>& v) {
  Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
  std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));
  return a;
}
int arg(const Napi::CallbackInfo& info, int i) { return info[i].As<Napi::Number>().Int32Value(); }
// Throws a RangeError unless the array holds exactly `want` elements.
template <typename T> void expectSize(Napi::Env env, const char* what, const std::vector<T>& v, size_t want) {
  if (v.size() != want)
    throw Napi::RangeError::New(env, std::string(what) + " holds " + std::to_string(v.size()) + " elements, expected " + std::to_string(want));
}

// gemmBf16(A (m,k) f32, W (n,k) bf16 bits, bias (n) f32 | null, m, n, k, splits, C0 (m,n) f32 | null)
// -> Promise<C (m,n) f32>. A goes through to_bf16 on the device, as in the engine; with C0 the product is added
// to it (the residual-add mode).
Napi::Value GemmBf16(const Napi::CallbackInfo& info) {
  auto A = hostCopy<float>(info[0]);
  auto W = hostCopy<uint16_t>(info[1]);
  auto bias = info[2].IsNull() ? nullptr : hostCopy<float>(info[2]);
  const int m = arg(info, 3), n = arg(info, 4), k = arg(info, 5), splits = arg(info, 6);
  auto C0 = info[7].IsNull() || info[7].IsUndefined() ? nullptr : hostCopy<float>(info[7]);
  expectSize(info.Env(), "A", *A, (size_t)m * k);
  if (C0) expectSize(info.Env(), "C0", *C0, (size_t)m * n);
  expectSize(info.Env(), "W", *W, (size_t)n * k);
  if (bias) expectSize(info.Env(), "bias", *bias, n);
  if (splits < 1) throw Napi::RangeError::New(info.Env(), "splits must be >= 1");
  auto C = std::make_shared<std::vector<float>>((size_t)m * n);
  auto* job = new Job(info.Env(), [=]() {
    DevBuf<float> a(A->size()), b(bias ? bias->size() : 0), c(C->size()), part((size_t)splits * m * n);
    DevBuf<__nv_bfloat16> a16(A->size()), w(W->size());
    upload(a, *A);
    CK(cudaMemcpy(w.p, W->data(), W->size() * 2, cudaMemcpyHostToDevice));
    if (bias) upload(b, *bias);
    if (C0) upload(c, *C0);
    CK(fdl::to_bf16(a.p, a16.p, A->size(), nullptr));
    CK(fdl::gemm_bf16(a16.p, w.p, bias ? b.p : nullptr, c.p, m, n, k, splits, part.p, C0 != nullptr, nullptr));
    CK(cudaMemcpy(C->data(), c.p, C->size() * sizeof(float), cudaMemcpyDeviceToHost));
  }, [C](Napi::Env env) { return floats(env, *C); });
  job->Queue();
  return job->promise();
}

// gemmF32(A (m,k), W (n,k), bias (n) | null, m, n, k, C0 (m,n) | null) -> Promise<C (m,n)>, all f32; with C0 the
// product is added to it.
Napi::Value GemmF32(const Napi::CallbackInfo& info) {
  auto A = hostCopy<float>(info[0]);
  auto W = hostCopy<float>(info[1]);
  auto bias = info[2].IsNull() ? nullptr : hostCopy<float>(info[2]);
  const int m = arg(info, 3), n = arg(info, 4), k = arg(info, 5);
  auto C0 = info[6].IsNull() || info[6].IsUndefined() ? nullptr : hostCopy<float>(info[6]);
  expectSize(info.Env(), "A", *A, (size_t)m * k);
  if (C0) expectSize(info.Env(), "C0", *C0, (size_t)m * n);
  expectSize(info.Env(), "W", *W, (size_t)n * k);
  if (bias) expectSize(info.Env(), "bias", *bias, n);
  auto C = std::make_shared<std::vector<float>>((size_t)m * n);
  auto* job = new Job(info.Env(), [=]() {
    DevBuf<float> a(A->size()), w(W->size()), b(bias ? bias->size() : 0), c(C->size());
    upload(a, *A);
    upload(w, *W);
    if (bias) upload(b, *bias);
    if (C0) upload(c, *C0);
    CK(fdl::gemm_f32(a.p, w.p, bias ? b.p : nullptr, c.p, m, n, k, C0 != nullptr, nullptr));
    CK(cudaMemcpy(C->data(), c.p, C->size() * sizeof(float), cudaMemcpyDeviceToHost));
  }, [C](Napi::Env env) { return floats(env, *C); });
  job->Queue();
  return job->promise();
}

// attention(q (nq,H,hd), k (L,KV,hd), v (L,KV,hd), nq, L, H, KV, hd, n0) -> Promise<out (nq,H,hd)>. Rows
// [0, n0) and [n0, L) of k and v go to separate device buffers, the two segments of a prefix step.
Napi::Value Attention(const Napi::CallbackInfo& info) {
  auto Q = hostCopy<float>(info[0]);
  auto K = hostCopy<float>(info[1]);
  auto V = hostCopy<float>(info[2]);
  const int nq = arg(info, 3), L = arg(info, 4), H = arg(info, 5), KV = arg(info, 6), hd = arg(info, 7), n0 = arg(info, 8);
  expectSize(info.Env(), "q", *Q, (size_t)nq * H * hd);
  expectSize(info.Env(), "k", *K, (size_t)L * KV * hd);
  expectSize(info.Env(), "v", *V, (size_t)L * KV * hd);
  if (n0 < 0 || n0 > L) throw Napi::RangeError::New(info.Env(), "n0 must be in [0, L]");
  auto O = std::make_shared<std::vector<float>>((size_t)nq * H * hd);
  auto* job = new Job(info.Env(), [=]() {
    const size_t row = (size_t)KV * hd, head = (size_t)n0 * row;  // floats per key row; in segment 0
    DevBuf<float> q(Q->size()), k0(head), v0(head), k1(K->size() - head), v1(V->size() - head), o(O->size());
    upload(q, *Q);
    CK(cudaMemcpy(k0.p, K->data(), head * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(v0.p, V->data(), head * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(k1.p, K->data() + head, (K->size() - head) * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(v1.p, V->data() + head, (V->size() - head) * 4, cudaMemcpyHostToDevice));
    CK(fdl::attention(q.p, k0.p, v0.p, n0, k1.p, v1.p, o.p, nullptr, nq, L, H, KV, hd, nullptr));
    CK(cudaMemcpy(O->data(), o.p, O->size() * sizeof(float), cudaMemcpyDeviceToHost));
  }, [O](Napi::Env env) { return floats(env, *O); });
  job->Queue();
  return job->promise();
}

}  // namespace

Napi::Object KernelProbes(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("gemmBf16", Napi::Function::New(env, GemmBf16));
  o.Set("gemmF32", Napi::Function::New(env, GemmF32));
  o.Set("attention", Napi::Function::New(env, Attention));
  return o;
}
