// Kernel-level entry points for tests (test/kernels.test.ts): each runs one kernel on host data and resolves with
// the result, so the kernels can be compared with a float64 reference on random shapes that the model fixtures
// never reach (split k, k not a multiple of 8, many k steps, GQA). timeGemmBf16 times the GEMM on device data for
// bench/cuda/gemm-sweep.mjs. Not used by the engine.
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

// The arguments both GEMM probes share: A (m,k) f32, W (n,k) of WT, bias (n) f32 | null, m, n, k, then at index
// `c0At` C0 (m,n) f32 | null, the values the product is added to (the residual-add mode). Sizes are checked.
template <typename WT> struct GemmArgs {
  std::shared_ptr<std::vector<float>> A, bias, C0, C;  // C (m,n): the result, filled by the job
  std::shared_ptr<std::vector<WT>> W;
  int m, n, k;
};
template <typename WT> GemmArgs<WT> gemmArgs(const Napi::CallbackInfo& info, int c0At) {
  const Napi::Env env = info.Env();
  GemmArgs<WT> g;
  g.A = hostCopy<float>(info[0]);
  g.W = hostCopy<WT>(info[1]);
  g.bias = info[2].IsNull() ? nullptr : hostCopy<float>(info[2]);
  g.m = arg(info, 3), g.n = arg(info, 4), g.k = arg(info, 5);
  g.C0 = info[c0At].IsNull() || info[c0At].IsUndefined() ? nullptr : hostCopy<float>(info[c0At]);
  expectSize(env, "A", *g.A, (size_t)g.m * g.k);
  expectSize(env, "W", *g.W, (size_t)g.n * g.k);
  if (g.bias) expectSize(env, "bias", *g.bias, g.n);
  if (g.C0) expectSize(env, "C0", *g.C0, (size_t)g.m * g.n);
  g.C = std::make_shared<std::vector<float>>((size_t)g.m * g.n);
  return g;
}

// gemmBf16(A, W bf16 bits, bias, m, n, k, splits, C0) -> Promise<C (m,n) f32>. A goes through to_bf16 on the
// device, as in the engine.
Napi::Value GemmBf16(const Napi::CallbackInfo& info) {
  const GemmArgs<uint16_t> g = gemmArgs<uint16_t>(info, 7);
  const int splits = arg(info, 6);
  if (splits < 1) throw Napi::RangeError::New(info.Env(), "splits must be >= 1");
  auto* job = new Job(info.Env(), [g, splits]() {
    DevBuf<float> a(g.A->size()), b(g.bias ? g.n : 0), c(g.C->size()), part((size_t)splits * g.m * g.n);
    DevBuf<__nv_bfloat16> a16(g.A->size()), w(g.W->size());
    upload(a, *g.A);
    CK(cudaMemcpy(w.p, g.W->data(), g.W->size() * 2, cudaMemcpyHostToDevice));
    if (g.bias) upload(b, *g.bias);
    if (g.C0) upload(c, *g.C0);
    CK(fdl::to_bf16(a.p, a16.p, g.A->size(), nullptr));
    CK(fdl::gemm_bf16(a16.p, w.p, g.bias ? b.p : nullptr, c.p, g.m, g.n, g.k, splits, part.p, g.C0 != nullptr, nullptr));
    CK(cudaMemcpy(g.C->data(), c.p, g.C->size() * sizeof(float), cudaMemcpyDeviceToHost));
  }, [C = g.C](Napi::Env env) { return floats(env, *C); });
  job->Queue();
  return job->promise();
}

// gemmF32(A, W f32, bias, m, n, k, C0) -> Promise<C (m,n)>, all f32.
Napi::Value GemmF32(const Napi::CallbackInfo& info) {
  const GemmArgs<float> g = gemmArgs<float>(info, 6);
  auto* job = new Job(info.Env(), [g]() {
    DevBuf<float> a(g.A->size()), w(g.W->size()), b(g.bias ? g.n : 0), c(g.C->size());
    upload(a, *g.A);
    upload(w, *g.W);
    if (g.bias) upload(b, *g.bias);
    if (g.C0) upload(c, *g.C0);
    CK(fdl::gemm_f32(a.p, w.p, g.bias ? b.p : nullptr, c.p, g.m, g.n, g.k, g.C0 != nullptr, nullptr));
    CK(cudaMemcpy(g.C->data(), c.p, g.C->size() * sizeof(float), cudaMemcpyDeviceToHost));
  }, [C = g.C](Napi::Env env) { return floats(env, *C); });
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

// timeGemmBf16(m, n, k, splits, iters) -> Promise<{ msPerLaunch, splits, sms}>: the bf16 GEMM on device-resident
// random A (m,k) and W (n,k), bf16, timed with CUDA events over `iters` launches after one warm-up. splits 0 takes
// the engine's own choice (gemm_bf16_splits for this device), which the result reports.
Napi::Value TimeGemmBf16(const Napi::CallbackInfo& info) {
  const int m = arg(info, 0), n = arg(info, 1), k = arg(info, 2), asked = arg(info, 3), iters = arg(info, 4);
  if (m < 1 || n < 1 || k < 1 || asked < 0 || iters < 1) throw Napi::RangeError::New(info.Env(), "timeGemmBf16: bad shape, splits or iters");
  auto result = std::make_shared<std::vector<double>>(3);  // ms per launch, splits used, SMs
  auto* job = new Job(info.Env(), [=]() {
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    const int splits = asked > 0 ? asked : fdl::gemm_bf16_splits(m, n, k, p.multiProcessorCount);
    DevBuf<__nv_bfloat16> a((size_t)m * k), w((size_t)n * k);
    DevBuf<float> c((size_t)m * n), part((size_t)splits * m * n);
    CK(fdl::fill_random_bf16(a.p, (size_t)m * k, 1, 1.f, nullptr));
    CK(fdl::fill_random_bf16(w.p, (size_t)n * k, 2, 0.02f, nullptr));
    auto launch = [&]() { CK(fdl::gemm_bf16(a.p, w.p, nullptr, c.p, m, n, k, splits, part.p, false, nullptr)); };
    launch();  // warm-up
    (*result)[0] = fdl_napi::deviceMs(iters, launch) / iters;
    (*result)[1] = splits;
    (*result)[2] = p.multiProcessorCount;
  }, [result](Napi::Env env) -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("msPerLaunch", (*result)[0]);
    o.Set("splits", (*result)[1]);
    o.Set("sms", (*result)[2]);
    return o;
  });
  job->Queue();
  return job->promise();
}

}  // namespace

Napi::Object KernelProbes(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("gemmBf16", Napi::Function::New(env, GemmBf16));
  o.Set("gemmF32", Napi::Function::New(env, GemmF32));
  o.Set("attention", Napi::Function::New(env, Attention));
  o.Set("timeGemmBf16", Napi::Function::New(env, TimeGemmBf16));
  return o;
}
