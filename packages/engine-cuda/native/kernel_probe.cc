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

int deviceSms() {
  cudaDeviceProp p;
  CK(cudaGetDeviceProperties(&p, 0));
  return p.multiProcessorCount;
}
fdl::Schedule scheduleArg(const Napi::CallbackInfo& info, int i) {
  const int v = info[i].IsUndefined() || info[i].IsNull() ? 0 : arg(info, i);
  if (v < 0 || v > 2) throw Napi::RangeError::New(info.Env(), "schedule must be 0 (auto), 1 (parallel) or 2 (serial)");
  return static_cast<fdl::Schedule>(v);
}

// gemmBf16(A, W bf16 bits, bias, m, n, k, splits, C0, schedule) -> Promise<C (m,n) f32>. A goes through to_bf16
// on the device, as in the engine. splits 0: the engine's choice for this weight shape.
Napi::Value GemmBf16(const Napi::CallbackInfo& info) {
  const GemmArgs<uint16_t> g = gemmArgs<uint16_t>(info, 7);
  const int asked = arg(info, 6);
  if (asked < 0) throw Napi::RangeError::New(info.Env(), "splits must be >= 0 (0: the engine's choice)");
  const fdl::Schedule schedule = scheduleArg(info, 8);
  auto* job = new Job(info.Env(), [g, asked, schedule]() {
    const int splits = asked > 0 ? asked : fdl::gemm_bf16_splits(g.n, g.k);
    DevBuf<float> a(g.A->size()), b(g.bias ? g.n : 0), c(g.C->size()), part((size_t)splits * g.m * g.n);
    DevBuf<__nv_bfloat16> a16(g.A->size()), w(g.W->size());
    upload(a, *g.A);
    CK(cudaMemcpy(w.p, g.W->data(), g.W->size() * 2, cudaMemcpyHostToDevice));
    if (g.bias) upload(b, *g.bias);
    if (g.C0) upload(c, *g.C0);
    CK(fdl::to_bf16(a.p, a16.p, g.A->size(), nullptr));
    CK(fdl::gemm_bf16(a16.p, w.p, g.bias ? b.p : nullptr, c.p, g.m, g.n, g.k, splits, part.p, g.C0 != nullptr, schedule,
                      deviceSms(), nullptr));
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

// One sequence of an attention probe: K, V (L, KV, hd) f32 on the host, split at n0 into two device segments.
struct ProbeSeq {
  std::shared_ptr<std::vector<float>> K, V;
  int n0, nq, pos0, causalBlock;
};

// attention(q (rows,H,hd), seqs [{k, v, n0, nq, pos0?, causalBlock?}], {H, KV, hd, kvBf16?, schedule?})
// -> Promise<out (rows,H,hd)>. Sequence i's queries are the next nq rows of q; its keys k, v (L, KV, hd) go to the
// device as two segments, rows [0, n0) and [n0, L) (a prefix step's cache and fresh rows), in bf16 when kvBf16
// (rounded to nearest even), as one pass of the engine's attention.
Napi::Value Attention(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto Q = hostCopy<float>(info[0]);
  Napi::Array list = info[1].As<Napi::Array>();
  Napi::Object shape = info[2].As<Napi::Object>();
  auto num = [&](Napi::Object o, const char* key, int dflt) {
    Napi::Value v = o.Get(key);
    return v.IsUndefined() ? dflt : v.As<Napi::Number>().Int32Value();
  };
  const int H = num(shape, "H", 0), KV = num(shape, "KV", 0), hd = num(shape, "hd", 0);
  const bool kvBf16 = shape.Get("kvBf16").ToBoolean().Value();
  const int sch = num(shape, "schedule", 0);
  if (H < 1 || KV < 1 || hd < 1) throw Napi::RangeError::New(env, "attention: H, KV and hd must be positive");
  if (sch < 0 || sch > 2) throw Napi::RangeError::New(env, "schedule must be 0 (auto), 1 (parallel) or 2 (serial)");
  std::vector<ProbeSeq> seqs;
  size_t rows = 0;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Object o = list.Get(i).As<Napi::Object>();
    ProbeSeq p{hostCopy<float>(o.Get("k")), hostCopy<float>(o.Get("v")), num(o, "n0", 0), num(o, "nq", 0),
               num(o, "pos0", 0), num(o, "causalBlock", 0)};
    const size_t row = (size_t)KV * hd;
    if (p.K->size() % row != 0 || p.K->size() == 0) throw Napi::RangeError::New(env, "k must hold L * KV * hd elements, L >= 1");
    expectSize(env, "v", *p.V, p.K->size());
    const int L = (int)(p.K->size() / row);
    if (p.n0 < 0 || p.n0 > L) throw Napi::RangeError::New(env, "n0 must be in [0, L]");
    rows += p.nq;
    seqs.push_back(p);
  }
  expectSize(env, "q", *Q, rows * H * hd);
  auto O = std::make_shared<std::vector<float>>(rows * H * hd);
  auto* job = new Job(env, [=]() {
    const size_t row = (size_t)KV * hd, bytes = kvBf16 ? 2 : 4;
    std::vector<std::unique_ptr<DevBuf<uint8_t>>> keep;
    // Segment rows [r0, r1) of X into a new device buffer in the K/V dtype.
    auto segment = [&](const std::vector<float>& X, size_t r0, size_t r1) -> const void* {
      const size_t count = (r1 - r0) * row;
      keep.push_back(std::make_unique<DevBuf<uint8_t>>(count * bytes));
      std::vector<uint8_t> host(count * bytes);
      for (size_t i = 0; i < count; i++) {
        const float x = X[r0 * row + i];
        if (kvBf16) {
          const __nv_bfloat16 b = __float2bfloat16(x);
          std::memcpy(host.data() + i * 2, &b, 2);
        } else {
          std::memcpy(host.data() + i * 4, &x, 4);
        }
      }
      if (count) CK(cudaMemcpy(keep.back()->p, host.data(), host.size(), cudaMemcpyHostToDevice));
      return keep.back()->p;
    };
    std::vector<fdl::AttnSeq> desc(seqs.size());
    int q0 = 0;
    for (size_t i = 0; i < seqs.size(); i++) {
      const ProbeSeq& p = seqs[i];
      const size_t L = p.K->size() / row;
      fdl::AttnSeq& d = desc[i];
      d = fdl::AttnSeq{};
      d.k0 = segment(*p.K, 0, p.n0);
      d.v0 = segment(*p.V, 0, p.n0);
      d.k1 = segment(*p.K, p.n0, L);
      d.v1 = segment(*p.V, p.n0, L);
      d.n0 = p.n0;
      d.L = (int)L;
      d.q0 = q0;
      d.nq = p.nq;
      d.pos0 = p.pos0;
      d.causalBlock = p.causalBlock;
      q0 += p.nq;
    }
    const fdl::AttnPlan plan = fdl::attention_plan(desc.data(), (int)desc.size(), H, hd, deviceSms(), static_cast<fdl::Schedule>(sch));
    DevBuf<fdl::AttnSeq> dseq(desc.size());
    CK(cudaMemcpy(dseq.p, desc.data(), desc.size() * sizeof(fdl::AttnSeq), cudaMemcpyHostToDevice));
    DevBuf<float> q(Q->size()), o(O->size()), part(plan.partialFloats);
    upload(q, *Q);
    CK(cudaMemset(o.p, 0xFF, O->size() * sizeof(float)));  // NaN: a row the kernel misses shows
    CK(fdl::attention(q.p, dseq.p, (int)desc.size(), plan, 0, kvBf16, o.p, nullptr, part.p, H, KV, hd, nullptr));
    CK(cudaMemcpy(O->data(), o.p, O->size() * sizeof(float), cudaMemcpyDeviceToHost));
  }, [O](Napi::Env env) { return floats(env, *O); });
  job->Queue();
  return job->promise();
}

// timeGemmBf16(m, n, k, splits, iters, schedule) -> Promise<{ msPerLaunch, splits, parallel, sms }>: the bf16 GEMM
// on device-resident random A (m,k) and W (n,k), bf16, timed with CUDA events over `iters` launches after one
// warm-up. splits 0 takes the engine's own choice for the weight shape; schedule 0 the engine's choice for this
// device (both reported back).
Napi::Value TimeGemmBf16(const Napi::CallbackInfo& info) {
  const int m = arg(info, 0), n = arg(info, 1), k = arg(info, 2), asked = arg(info, 3), iters = arg(info, 4);
  if (m < 1 || n < 1 || k < 1 || asked < 0 || iters < 1) throw Napi::RangeError::New(info.Env(), "timeGemmBf16: bad shape, splits or iters");
  const fdl::Schedule schedule = scheduleArg(info, 5);
  auto result = std::make_shared<std::vector<double>>(4);  // ms per launch, splits used, parallel, SMs
  auto* job = new Job(info.Env(), [=]() {
    const int sms = deviceSms();
    const int splits = asked > 0 ? asked : fdl::gemm_bf16_splits(n, k);
    const bool parallel = fdl::gemm_bf16_parallel(m, n, splits, schedule, sms);
    DevBuf<__nv_bfloat16> a((size_t)m * k), w((size_t)n * k);
    DevBuf<float> c((size_t)m * n), part(parallel ? (size_t)splits * m * n : 0);
    CK(fdl::fill_random_bf16(a.p, (size_t)m * k, 1, 1.f, nullptr));
    CK(fdl::fill_random_bf16(w.p, (size_t)n * k, 2, 0.02f, nullptr));
    auto launch = [&]() { CK(fdl::gemm_bf16(a.p, w.p, nullptr, c.p, m, n, k, splits, part.p, false, schedule, sms, nullptr)); };
    launch();  // warm-up
    (*result)[0] = fdl_napi::deviceMs(iters, launch) / iters;
    (*result)[1] = splits;
    (*result)[2] = parallel ? 1 : 0;
    (*result)[3] = sms;
  }, [result](Napi::Env env) -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("msPerLaunch", (*result)[0]);
    o.Set("splits", (*result)[1]);
    o.Set("parallel", (*result)[2] != 0);
    o.Set("sms", (*result)[3]);
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
  // The engine's split choices, so plan.ts's copy of them can be checked against the kernels'.
  o.Set("gemmSplits", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), fdl::gemm_bf16_splits(arg(info, 0), arg(info, 1)));
  }));
  o.Set("attentionChunk", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), fdl::attention_chunk(arg(info, 0)));
  }));
  return o;
}
