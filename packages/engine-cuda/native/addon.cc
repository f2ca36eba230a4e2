// node-addon-api surface of the cuda engine (declared for TypeScript in src/binding.ts). Heavy calls run in
// Napi::AsyncWorker; every CUDA call is checked and a failure becomes a JS Error naming the call.
#include <napi.h>
#include <cstring>
#include <algorithm>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>
#include "kernels.h"
#include "napi_job.h"
#include "kernel_probe.h"

namespace {

using fdl_napi::DevBuf;
using fdl_napi::Job;

// "13.0" from CUDA's 13000 (0: none, e.g. no driver; the emulator reports 0 for both).
std::string cudaVersionString(int v) { return v > 0 ? std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10) : "none"; }

// deviceInfo(): never throws; with no driver (static cudart, libcuda missing) cudaGetDeviceCount returns an error.
// Always says which driver the machine has and which runtime the addon was built with.
Napi::Value DeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  int driver = 0, runtime = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
  if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) runtime = 0;
  o.Set("driverVersion", cudaVersionString(driver));
  o.Set("runtimeVersion", cudaVersionString(runtime));
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    o.Set("available", false);
    std::string why = e != cudaSuccess ? std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e) : "0 devices";
    // The runtime reports a missing driver and an old one alike (cudaErrorInsufficientDriver): say which.
    if (e != cudaSuccess && driver == 0) why += "; no NVIDIA driver: libcuda.so.1 was not found";
    else if (e != cudaSuccess && driver < runtime)
      why += "; the driver supports CUDA " + cudaVersionString(driver) + ", this addon's runtime is CUDA " +
             cudaVersionString(runtime) + ": update the driver, or build the addon from source with the matching nvcc";
    o.Set("reason", "no CUDA device (" + why + ")");
    return o;
  }
  cudaDeviceProp p;
  if ((e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess) {
    o.Set("available", false);
    o.Set("reason", std::string("no CUDA device (cudaGetDeviceProperties: ") + cudaGetErrorString(e) + ")");
    return o;
  }
  size_t freeB = 0, totalB = 0;
  if ((e = cudaMemGetInfo(&freeB, &totalB)) != cudaSuccess) {
    o.Set("available", false);
    o.Set("reason", std::string("no CUDA device (cudaMemGetInfo: ") + cudaGetErrorString(e) + ")");
    return o;
  }
  o.Set("available", true);
  o.Set("name", p.name);
  o.Set("computeCapability", std::to_string(p.major) + "." + std::to_string(p.minor));
  o.Set("totalBytes", (double)totalB);
  o.Set("freeBytes", (double)freeB);
  o.Set("multiprocessors", p.multiProcessorCount);
  return o;
}

struct Config {
  int d, layers, H, KV, hd, ff, V, maxPos;
  float eps, theta;
  bool qkvBias, bf16;
  bool kvBf16;  // K/V cache (and a prefix step's fresh rows) in bf16; else f32
  int maskId;  // never proposed (DESIGN §3)
};

// Slot numbering shared with src/plan.ts: 0 embed, 1 final norm, 2 lm head, then 12 per layer.
enum Role { kAttnNorm, kQ, kK, kV, kQB, kKB, kVB, kO, kFfnNorm, kGate, kUp, kDown, kRoles };

// Per-forward working buffers, kept between forwards (a cudaMalloc/cudaFree pair per buffer per step would cost
// more than a DualCache step's kernels, and cudaFree synchronises the device). Grown, never shrunk.
enum Scratch { kIds, kRows, kPos, kX, kH, kQKV, kQ_, kK_, kV_, kAtt, kGU, kG, kA16, kHn, kLogits, kPartial,
               kSeqs, kAttnPartial, kTok, kProb, kTop1, kTop2, kEnt, kScratchCount };

class Model {
 public:
  Config c;
  std::vector<void*> w;  // device pointers by slot
  void* kcache = nullptr;   // (layers, L, KV, hd) bf16 or f32 (c.kvBf16)
  void* vcache = nullptr;   // (layers, L, KV, hd) bf16 or f32
  int cacheL = 0;
  int sms = 1;              // multiprocessors of device 0: picks schedules (never a result's arithmetic)
  cudaStream_t s = nullptr;
  std::vector<void*> scratch = std::vector<void*>(kScratchCount, nullptr);
  std::vector<size_t> scratchBytes = std::vector<size_t>(kScratchCount, 0);

  explicit Model(const Config& cfg) : c(cfg), w(3 + cfg.layers * kRoles, nullptr), fused((size_t)cfg.layers * 3, nullptr) {
    CK(cudaStreamCreate(&s));
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    sms = p.multiProcessorCount > 0 ? p.multiProcessorCount : 1;
  }
  ~Model() { release(); }
  void release() {
    for (int slot = 0; slot < (int)w.size(); slot++)
      if (w[slot] && groupOf(slot) < 0) cudaFree(w[slot]);  // grouped slots point into `fused`
    for (auto& p : w) p = nullptr;
    for (auto& p : fused) { if (p) cudaFree(p); p = nullptr; }
    for (auto& p : scratch) { if (p) cudaFree(p); p = nullptr; }
    if (kcache) cudaFree(kcache);
    if (vcache) cudaFree(vcache);
    kcache = vcache = nullptr;
    if (s) cudaStreamDestroy(s);
    s = nullptr;
  }

  // ---- weight storage ----
  // Roles stored together so that one GEMM computes them: per layer [Wq; Wk; Wv] (qd + 2 kvd, d), the matching
  // biases (qd + 2 kvd,) and [Wgate; Wup] (2 ff, d). The group's first role's slot points at the buffer start (so
  // it is the fused weight), the others inside it; `fused` (layers, 3) owns the buffers.
  std::vector<void*> fused;
  static int roleOf(int slot) { return slot < 3 ? -1 : (slot - 3) % kRoles; }
  static int groupOf(int slot) {
    switch (roleOf(slot)) {
      case kQ: case kK: case kV: return 0;
      case kQB: case kKB: case kVB: return 1;
      case kGate: case kUp: return 2;
      default: return -1;
    }
  }
  // Elements of one slot's tensor (0 for biases the model does not have).
  size_t slotElements(int slot) const {
    if (slot == 0 || slot == 2) return (size_t)c.V * c.d;
    if (slot == 1) return c.d;
    const size_t q = (size_t)c.H * c.hd, kv = (size_t)c.KV * c.hd;
    switch (roleOf(slot)) {
      case kAttnNorm: case kFfnNorm: return c.d;
      case kQ: return q * c.d;
      case kK: case kV: return kv * c.d;
      case kQB: return c.qkvBias ? q : 0;
      case kKB: case kVB: return c.qkvBias ? kv : 0;
      case kO: return (size_t)c.d * q;
      default: return (size_t)c.ff * c.d;  // gate, up, down
    }
  }
  size_t slotBytes(int slot) const { return slotElements(slot) * (c.bf16 && isMatrix(slot) ? 2 : 4); }
  // Device memory for `slot`'s tensor (bytes of its own size for ungrouped slots, which may differ from the plan,
  // e.g. a padded embedding); grouped slots land at their offset in the layer's fused buffer.
  void* slotDest(int slot, size_t bytes) {
    const int g = groupOf(slot);
    if (g < 0) {
      if (w[slot]) CK(cudaFree(w[slot]));
      w[slot] = nullptr;
      CK(cudaMalloc(&w[slot], bytes));
      return w[slot];
    }
    if (bytes != slotBytes(slot))
      throw std::runtime_error("upload: slot " + std::to_string(slot) + " holds " + std::to_string(bytes) + " bytes, expected " +
                               std::to_string(slotBytes(slot)));
    const int l = (slot - 3) / kRoles;
    static const int members[3][3] = {{kQ, kK, kV}, {kQB, kKB, kVB}, {kGate, kUp, -1}};
    void*& buf = fused[(size_t)l * 3 + g];
    if (!buf) {
      size_t total = 0;
      for (int r : members[g]) if (r >= 0) total += slotBytes(3 + l * kRoles + r);
      CK(cudaMalloc(&buf, total ? total : 1));
      size_t off = 0;
      for (int r : members[g]) {
        if (r < 0) continue;
        w[3 + l * kRoles + r] = static_cast<char*>(buf) + off;
        off += slotBytes(3 + l * kRoles + r);
      }
    }
    return w[slot];
  }
  // Scratch buffer `id` with room for `count` elements of T; contents are not kept across growth.
  template <typename T> T* buf(Scratch id, size_t count) {
    const size_t bytes = (count ? count : 1) * sizeof(T);
    if (scratchBytes[id] < bytes) {
      if (scratch[id]) CK(cudaStreamSynchronize(s));  // the old buffer may still be read by queued work
      if (scratch[id]) CK(cudaFree(scratch[id]));
      scratch[id] = nullptr;
      scratchBytes[id] = 0;
      CK(cudaMalloc(&scratch[id], bytes));
      scratchBytes[id] = bytes;
    }
    return static_cast<T*>(scratch[id]);
  }
  bool isMatrix(int slot) const {
    if (slot == 0 || slot == 2) return true;
    if (slot < 3) return false;
    int r = (slot - 3) % kRoles;
    return r == kQ || r == kK || r == kV || r == kO || r == kGate || r == kUp || r == kDown;
  }
  void* L(int l, int r) const { return w[3 + l * kRoles + r]; }
  size_t kvBytes() const { return c.kvBf16 ? 2 : 4; }
  // y (m, n) = x (m, k) @ W^T (+ bias) (+ y itself when `accumulate`: the residual add). The GEMM reads x16, x in
  // bf16, in bf16 mode and x in f32 mode; the caller passes whichever it has (the other may be null). The k split
  // comes from the weight's shape (batch invariance, SPEC §7); m and the SM count only pick the schedule.
  void linear(const float* x, const __nv_bfloat16* x16, const void* W, const float* bias, float* y, int m, int n, int k,
              bool accumulate = false) {
    if (c.bf16) {
      const int splits = fdl::gemm_bf16_splits(n, k);
      const bool parallel = fdl::gemm_bf16_parallel(m, n, splits, fdl::kScheduleAuto, sms);
      float* partial = parallel ? buf<float>(kPartial, (size_t)splits * m * n) : nullptr;
      CK(fdl::gemm_bf16(x16, (const __nv_bfloat16*)W, bias, y, m, n, k, splits, partial, accumulate, fdl::kScheduleAuto,
                        sms, s));
    } else {
      CK(fdl::gemm_f32(x, (const float*)W, bias, y, m, n, k, accumulate, s));
    }
  }
  void linear(const float* x, const __nv_bfloat16* x16, int l, int r, int rb, float* y, int m, int n, int k,
              bool accumulate = false) {
    linear(x, x16, L(l, r), rb >= 0 ? (const float*)L(l, rb) : nullptr, y, m, n, k, accumulate);
  }
};

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "CudaModel", {InstanceMethod("upload", &ModelWrap::Upload),
                                          InstanceMethod("randomize", &ModelWrap::Randomize),
                                          InstanceMethod("forward", &ModelWrap::Forward),
                                          InstanceMethod("free", &ModelWrap::Free)});
  }
  ModelWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<Model> m;

 private:
  Napi::Value Upload(const Napi::CallbackInfo& info);
  Napi::Value Randomize(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Free(const Napi::CallbackInfo& info);
  std::shared_ptr<Model> live(Napi::Env env) {
    if (!m) throw Napi::Error::New(env, "CudaModel: used after free()");
    return m;
  }
};

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  Napi::Object o = info[0].As<Napi::Object>();
  auto i = [&](const char* k) { return o.Get(k).As<Napi::Number>().Int32Value(); };
  Config c{i("hiddenSize"), i("numLayers"), i("numHeads"), i("numKvHeads"), i("headDim"), i("intermediateSize"),
           i("vocabSize"), i("maxPositions"), o.Get("rmsNormEps").As<Napi::Number>().FloatValue(),
           o.Get("ropeTheta").As<Napi::Number>().FloatValue(), o.Get("qkvBias").As<Napi::Boolean>().Value(),
           o.Get("bf16").As<Napi::Boolean>().Value(), o.Get("kvBf16").ToBoolean().Value(),
           i("maskId")};
  try {
    m = std::make_shared<Model>(c);
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

// upload(slot, bytes): bytes are bf16 (matrices in bf16 mode) or f32, already in device layout.
Napi::Value ModelWrap::Upload(const Napi::CallbackInfo& info) {
  auto mm = live(info.Env());
  int slot = info[0].As<Napi::Number>().Int32Value();
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  if (slot < 0 || slot >= (int)mm->w.size()) throw Napi::RangeError::New(info.Env(), "upload: slot out of range");
  auto bytes = std::make_shared<std::vector<uint8_t>>(ta.ByteLength());
  std::memcpy(bytes->data(), (uint8_t*)ta.ArrayBuffer().Data() + ta.ByteOffset(), ta.ByteLength());
  auto* job = new Job(info.Env(), [mm, slot, bytes]() {
    void* dst = mm->slotDest(slot, bytes->size());
    CK(cudaMemcpy(dst, bytes->data(), bytes->size(), cudaMemcpyHostToDevice));
  }, nullptr);
  job->Queue();
  return job->promise();
}

// randomize(seed, scale): allocates every slot and fills it on the device (benchmarks; no host traffic).
Napi::Value ModelWrap::Randomize(const Napi::CallbackInfo& info) {
  auto mm = live(info.Env());
  uint32_t seed = info[0].As<Napi::Number>().Uint32Value();
  float scale = info[1].As<Napi::Number>().FloatValue();
  auto* job = new Job(info.Env(), [mm, seed, scale]() {
    const Config& c = mm->c;
    for (int slot = 0; slot < (int)mm->w.size(); slot++) {
      const size_t n = mm->slotElements(slot);
      if (n == 0) continue;
      const bool bf = c.bf16 && mm->isMatrix(slot);
      void* dst = mm->slotDest(slot, mm->slotBytes(slot));
      const int role = Model::roleOf(slot);
      // Norm weights near 1 keep activations bounded through 32 layers.
      if (bf) CK(fdl::fill_random_bf16((__nv_bfloat16*)dst, n, seed + slot, scale, mm->s));
      else if (slot == 1 || role == kAttnNorm || role == kFfnNorm) CK(fdl::fill_random_f32((float*)dst, n, seed + slot, 0.05f, 1.f, mm->s));
      else CK(fdl::fill_random_f32((float*)dst, n, seed + slot, scale, 0.f, mm->s));
    }
    CK(cudaStreamSynchronize(mm->s));
  }, nullptr);
  job->Queue();
  return job->promise();
}

struct FwdIn {
  std::vector<int32_t> canvas, srcRows, positions;
  int mode, start, end;
  bool sample, wantLogits, wantTop2, wantEntropy;
  double temperature;
  uint32_t seed, forwardIndex;
};
struct FwdOut {
  std::vector<int32_t> tokens;
  std::vector<double> probs, top1, top2, entropy;
  std::vector<float> logits;
};

// The forward pass over span [start, end) (mode 0 full, 1 prefix, 2 dual); see engine.ts for the semantics.
static void RunForward(Model& M, const FwdIn& in, FwdOut& out) {
  const Config& c = M.c;
  const int L = (int)in.canvas.size(), s0 = in.start, m = in.end - in.start, n = (int)in.srcRows.size();
  const int qd = c.H * c.hd, kvd = c.KV * c.hd;
  const size_t layerKV = (size_t)L * kvd;  // elements per layer of the cache: (L, KV, hd)
  const size_t kvB = M.kvBytes();
  if (in.mode == 0 && M.cacheL != L) {
    if (M.kcache) CK(cudaFree(M.kcache));
    if (M.vcache) CK(cudaFree(M.vcache));
    M.kcache = M.vcache = nullptr;
    M.cacheL = 0;
    CK(cudaMalloc(&M.kcache, layerKV * c.layers * kvB));
    CK(cudaMalloc(&M.vcache, layerKV * c.layers * kvB));
    M.cacheL = L;
  }
  if (in.mode != 0 && M.cacheL != L) throw std::runtime_error("forward: no cache for a canvas of this length; run a full forward first");
  cudaStream_t s = M.s;
  int32_t* ids = M.buf<int32_t>(kIds, m);     // (m,) tokens of the computed span
  int32_t* rows = M.buf<int32_t>(kRows, n);   // (n,) span rows whose hidden state predicts each position
  int32_t* pos = M.buf<int32_t>(kPos, n);     // (n,) absolute positions, for the sampling RNG
  float* x = M.buf<float>(kX, (size_t)m * c.d);          // (m, d) residual stream
  float* h = M.buf<float>(kH, (size_t)m * c.d);          // (m, d) normed input (f32 mode), final-normed rows
  float* qkv = M.buf<float>(kQKV, (size_t)m * (qd + 2 * kvd));  // (m, qd + 2 kvd) fused projection
  float* q = M.buf<float>(kQ_, (size_t)m * qd);          // (m, H, hd) rotated
  // (m, KV, hd) each in the cache's dtype: a prefix step's fresh rows; full and dual steps write theirs straight
  // into the cache.
  void* k = in.mode == 1 ? M.buf<uint8_t>(kK_, (size_t)m * kvd * kvB) : nullptr;
  void* v = in.mode == 1 ? M.buf<uint8_t>(kV_, (size_t)m * kvd * kvB) : nullptr;
  float* att = c.bf16 ? nullptr : M.buf<float>(kAtt, (size_t)m * qd);  // (m, H, hd), f32 mode
  float* hf = c.bf16 ? nullptr : h;  // bf16 mode: the layer's GEMM inputs exist only as a16
  float* gu = M.buf<float>(kGU, (size_t)m * 2 * c.ff);   // (m, 2 ff) fused gate | up
  float* g = c.bf16 ? nullptr : M.buf<float>(kG, (size_t)m * c.ff);  // (m, ff) silu(gate) * up, f32 mode
  float* hn = M.buf<float>(kHn, (size_t)n * c.d);        // (n, d) final-normed rows that are reported
  float* logits = M.buf<float>(kLogits, (size_t)n * c.V);  // (n, V)
  CK(cudaMemcpyAsync(ids, in.canvas.data() + s0, m * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  CK(cudaMemcpyAsync(rows, in.srcRows.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  CK(cudaMemcpyAsync(pos, in.positions.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  if (c.bf16) CK(fdl::embed_bf16((const __nv_bfloat16*)M.w[0], ids, x, m, c.d, s));
  else CK(fdl::embed_f32((const float*)M.w[0], ids, x, m, c.d, s));
  // bf16 mode: the kernel that produces a GEMM input also writes its bf16 copy into a16, (m, max(d, qd, ff)); each
  // copy is consumed before the next is written (one stream). f32 mode: a16 is null and the GEMMs read f32.
  __nv_bfloat16* a16 = c.bf16 ? M.buf<__nv_bfloat16>(kA16, (size_t)(m > n ? m : n) * std::max({c.d, qd, c.ff})) : nullptr;
  // Attention reads the cache through one sequence descriptor (layer l at l * layerKV): prefix steps attend to
  // cached [0, start) and their fresh rows; full and dual steps write their rows into the cache and read it whole.
  fdl::AttnSeq seq{};
  seq.k0 = M.kcache;
  seq.v0 = M.vcache;
  seq.stride0 = layerKV;
  seq.n0 = in.mode == 1 ? s0 : L;
  if (in.mode == 1) {
    seq.k1 = k;
    seq.v1 = v;
    seq.stride1 = 0;  // the fresh rows' buffer is refilled by every layer
  }
  seq.L = L;
  seq.q0 = 0;
  seq.nq = m;
  seq.pos0 = s0;
  seq.causalBlock = 0;
  const fdl::AttnPlan plan = fdl::attention_plan(&seq, 1, c.H, c.hd, M.sms, fdl::kScheduleAuto);
  fdl::AttnSeq* dseq = M.buf<fdl::AttnSeq>(kSeqs, 1);
  CK(cudaMemcpyAsync(dseq, &seq, sizeof seq, cudaMemcpyHostToDevice, s));  // pageable source: staged before return
  float* attnPartial = plan.combine ? M.buf<float>(kAttnPartial, plan.partialFloats) : nullptr;
  for (int l = 0; l < c.layers; l++) {
    CK(fdl::rmsnorm(x, (const float*)M.L(l, kAttnNorm), hf, a16, m, c.d, c.eps, s));
    M.linear(hf, a16, l, kQ, c.qkvBias ? kQB : -1, qkv, m, qd + 2 * kvd, c.d);  // slot kQ is the fused [Wq; Wk; Wv]
    if (in.mode == 1) {
      // prefix: the fresh rows go to their own buffer; the cache keeps the full forward's K/V.
      CK(fdl::qkv_rope(qkv, q, k, v, c.kvBf16, m, c.H, c.KV, c.hd, s0, c.theta, s));
    } else {
      // full and dual write the fresh rows into the cache (dual refreshes its block each step).
      const size_t at = (layerKV * l + (size_t)s0 * kvd) * kvB;  // bytes to row s0 of layer l
      CK(fdl::qkv_rope(qkv, q, static_cast<char*>(M.kcache) + at, static_cast<char*>(M.vcache) + at, c.kvBf16, m, c.H,
                       c.KV, c.hd, s0, c.theta, s));
    }
    CK(fdl::attention(q, dseq, 1, plan, l, c.kvBf16, att, a16, attnPartial, c.H, c.KV, c.hd, s));
    M.linear(att, a16, l, kO, -1, x, m, c.d, qd, /*accumulate=*/true);  // x += att @ Wo^T
    CK(fdl::rmsnorm(x, (const float*)M.L(l, kFfnNorm), hf, a16, m, c.d, c.eps, s));
    M.linear(hf, a16, l, kGate, -1, gu, m, 2 * c.ff, c.d);  // slot kGate is the fused [Wgate; Wup]
    CK(fdl::swiglu(gu, g, a16, m, c.ff, s));
    M.linear(g, a16, l, kDown, -1, x, m, c.d, c.ff, /*accumulate=*/true);  // x += swiglu @ Wdown^T
  }
  if (n > 0) {
    CK(fdl::rmsnorm(x, (const float*)M.w[1], h, nullptr, m, c.d, c.eps, s));
    CK(fdl::embed_f32(h, rows, hn, n, c.d, s));  // gather the reported rows (Dream shift applied by the caller)
    if (a16) CK(fdl::to_bf16(hn, a16, (size_t)n * c.d, s));
    const void* head = M.w[2] ? M.w[2] : M.w[0];  // tied embeddings: the embedding is the LM head
    M.linear(hn, a16, head, nullptr, logits, n, c.V, c.d);
  }
  int32_t* tok = M.buf<int32_t>(kTok, n);  // (n,)
  double* pr = M.buf<double>(kProb, n);    // (n,) each
  double* t1 = M.buf<double>(kTop1, n);
  double* t2 = M.buf<double>(kTop2, n);
  double* en = M.buf<double>(kEnt, n);
  fdl::HeadOut ho{tok, pr, in.wantTop2 ? t1 : nullptr, in.wantTop2 ? t2 : nullptr, in.wantEntropy ? en : nullptr};
  CK(fdl::lm_head_reduce(logits, n, c.V, pos, in.sample ? 1 : 0, in.temperature, in.seed, in.forwardIndex, c.maskId, ho, s));
  out.tokens.resize(n);
  out.probs.resize(n);
  CK(cudaMemcpyAsync(out.tokens.data(), tok, n * sizeof(int32_t), cudaMemcpyDeviceToHost, s));
  CK(cudaMemcpyAsync(out.probs.data(), pr, n * sizeof(double), cudaMemcpyDeviceToHost, s));
  if (in.wantTop2) {
    out.top1.resize(n);
    out.top2.resize(n);
    CK(cudaMemcpyAsync(out.top1.data(), t1, n * sizeof(double), cudaMemcpyDeviceToHost, s));
    CK(cudaMemcpyAsync(out.top2.data(), t2, n * sizeof(double), cudaMemcpyDeviceToHost, s));
  }
  if (in.wantEntropy) {
    out.entropy.resize(n);
    CK(cudaMemcpyAsync(out.entropy.data(), en, n * sizeof(double), cudaMemcpyDeviceToHost, s));
  }
  if (in.wantLogits) {
    out.logits.resize((size_t)n * c.V);
    CK(cudaMemcpyAsync(out.logits.data(), logits, (size_t)n * c.V * sizeof(float), cudaMemcpyDeviceToHost, s));
  }
  CK(cudaStreamSynchronize(s));
}

template <typename T> static std::vector<T> copyTyped(const Napi::Value& v) {
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  std::vector<T> r(ta.ByteLength() / sizeof(T));
  std::memcpy(r.data(), (uint8_t*)ta.ArrayBuffer().Data() + ta.ByteOffset(), ta.ByteLength());
  return r;
}
template <typename TA, typename T> static Napi::Value toTyped(Napi::Env env, const std::vector<T>& v) {
  TA a = TA::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(T));
  return a;
}

// forward(canvas, mode, start, end, srcRows, positions, opts) -> Promise<{tokens, probs, top1?, top2?, entropy?, logits?}>
Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  auto mm = live(info.Env());
  auto in = std::make_shared<FwdIn>();
  in->canvas = copyTyped<int32_t>(info[0]);
  in->mode = info[1].As<Napi::Number>().Int32Value();
  in->start = info[2].As<Napi::Number>().Int32Value();
  in->end = info[3].As<Napi::Number>().Int32Value();
  in->srcRows = copyTyped<int32_t>(info[4]);
  in->positions = copyTyped<int32_t>(info[5]);
  Napi::Object o = info[6].As<Napi::Object>();
  in->sample = o.Get("sample").ToBoolean().Value();
  in->temperature = o.Get("temperature").ToNumber().DoubleValue();
  in->seed = o.Get("seed").ToNumber().Uint32Value();
  in->forwardIndex = o.Get("forwardIndex").ToNumber().Uint32Value();
  in->wantTop2 = o.Get("top2").ToBoolean().Value();
  in->wantEntropy = o.Get("entropy").ToBoolean().Value();
  in->wantLogits = o.Get("logits").ToBoolean().Value();
  auto out = std::make_shared<FwdOut>();
  auto* job = new Job(info.Env(), [mm, in, out]() { RunForward(*mm, *in, *out); }, [in, out](Napi::Env env) -> Napi::Value {
    Napi::Object r = Napi::Object::New(env);
    r.Set("tokens", toTyped<Napi::Int32Array>(env, out->tokens));
    r.Set("probs", toTyped<Napi::Float64Array>(env, out->probs));
    if (in->wantTop2) {
      r.Set("top1Probs", toTyped<Napi::Float64Array>(env, out->top1));
      r.Set("top2Probs", toTyped<Napi::Float64Array>(env, out->top2));
    }
    if (in->wantEntropy) r.Set("entropy", toTyped<Napi::Float64Array>(env, out->entropy));
    if (in->wantLogits) r.Set("logits", toTyped<Napi::Float32Array>(env, out->logits));
    return r;
  });
  job->Queue();
  return job->promise();
}

Napi::Value ModelWrap::Free(const Napi::CallbackInfo& info) {
  m.reset();  // in-flight jobs hold their own reference; memory goes when the last one finishes
  return info.Env().Undefined();
}

// counterHash(seed, forwardIndex, position, lane): the device RNG's hash on the host, for the port's self-test.
Napi::Value CounterHash(const Napi::CallbackInfo& info) {
  auto u = [&](int i) { return info[i].As<Napi::Number>().Uint32Value(); };
  return Napi::Number::New(info.Env(), fdl::counter_hash(u(0), u(1), u(2), u(3)));
}

// copyBandwidth(bytes, iters): async; device-to-device cudaMemcpy of `bytes`, timed with events. Resolves with
// bytes/s counting read + write traffic (2 * bytes per copy): the memory-bound floor's yardstick.
Napi::Value CopyBandwidth(const Napi::CallbackInfo& info) {
  const size_t bytes = (size_t)info[0].As<Napi::Number>().DoubleValue();
  const int iters = info[1].As<Napi::Number>().Int32Value();
  auto result = std::make_shared<double>(0.0);
  auto* job = new Job(info.Env(), [bytes, iters, result]() {
    DevBuf<uint8_t> a(bytes), b(bytes);
    cudaEvent_t t0, t1;
    CK(cudaEventCreate(&t0));
    CK(cudaEventCreate(&t1));
    CK(cudaMemcpy(b.p, a.p, bytes, cudaMemcpyDeviceToDevice));  // warm-up
    CK(cudaEventRecord(t0));
    for (int i = 0; i < iters; i++) CK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice));
    CK(cudaEventRecord(t1));
    CK(cudaEventSynchronize(t1));
    float ms = 0.f;
    CK(cudaEventElapsedTime(&ms, t0, t1));
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    *result = 2.0 * (double)bytes * iters / (ms * 1e-3);
  }, [result](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *result); });
  job->Queue();
  return job->promise();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("deviceInfo", Napi::Function::New(env, DeviceInfo));
  exports.Set("counterHash", Napi::Function::New(env, CounterHash));
  exports.Set("copyBandwidth", Napi::Function::New(env, CopyBandwidth));
  exports.Set("CudaModel", ModelWrap::Init(env));
  exports.Set("kernels", KernelProbes(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(fast_dllm_cuda, Init)
