// node-addon-api surface of the cuda engine (declared for TypeScript in src/binding.ts). Heavy calls run in
// Napi::AsyncWorker; every CUDA call is checked and a failure becomes a JS Error naming the call.
#include <napi.h>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <functional>
#include <memory>
#include <mutex>
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
  bool kvBf16;      // K/V cache (and a prefix step's fresh rows) in bf16; else f32
  int maskId;       // never proposed (DESIGN §3)
  bool qkNorm;      // Qwen3 (SDAR): per-head RMSNorm of q and k before RoPE
  int blockSize;    // block-causal attention with blocks of this size (DESIGN §8); 0: bidirectional
  int reportChunk;  // reported rows whose logits one LM-head GEMM computes (bounds the (chunk, V) logits scratch)
  int rotaryDim;    // RoPE turns the first rotaryDim dims of each head (hd: all; fewer: LLaDA-MoE's partial rotary)
  float clipQkv;    // q, k, v clamped to [-clipQkv, clipQkv] before RoPE (LLaDA-MoE); 0: no clamp
  bool outputBias;  // the attention output projection has a bias (LLaDA2's use_bias, slot kOB)
  // Mixture-of-experts layers (LLaDA-MoE, DESIGN §13); E = 0: none. ff above is the dense layers' inner width.
  int E, topK, expertFF, sharedFF;  // experts, experts per row, a routed expert's and the shared expert's inner width
  std::vector<bool> moeLayer;       // (layers,) true where the FFN is the mixture
  int ffMax() const { return std::max({ff, expertFF, sharedFF}); }  // widest FFN: sizes gate|up and swiglu scratch
  bool isMoe(int l) const { return E > 0 && moeLayer[l]; }
};

// Slot numbering shared with src/plan.ts: 0 embed, 1 final norm, 2 lm head, then kRoles per layer; then, for models
// with experts, moeStride() = kMoeRoles + 3 E per layer: router, shared gate, up, down, then each expert's gate, up,
// down (a dense layer leaves these empty, a mixture layer its dense gate, up, down). The expert bias stays on the
// host: routing runs there (src/engine.ts). kOB (LLaDA2's output bias) comes last so the older roles keep their slots.
enum Role { kAttnNorm, kQ, kK, kV, kQB, kKB, kVB, kQNorm, kKNorm, kO, kFfnNorm, kGate, kUp, kDown, kOB, kRoles };
enum MoeRole { kRouter, kSharedGate, kSharedUp, kSharedDown, kMoeRoles };  // then kMoeRoles + 3 e + {0 gate, 1 up, 2 down}

// Per-pass working buffers, kept between passes (a cudaMalloc/cudaFree pair per buffer per step would cost more
// than a DualCache step's kernels, and cudaFree synchronises the device). Grown to the largest pass, never shrunk;
// the engine refuses passes over the rows it reserved them for (src/plan.ts passScratchBytes counts them).
enum Scratch { kIds, kRowSeq, kSeqs, kRepRow, kRepPos, kRepTemp, kRepSeed, kRepFi, kX, kH, kQKV, kQ_, kK_, kV_, kAtt,
               kGU, kG, kA16, kSel, kHn, kLogits, kPartial, kAttnPartial, kTok, kProb, kTop1, kTop2, kEnt,
               kRouterLogits, kMoeRows, kMoeW, kMoeX, kMoeX16, kMoeY, kMoeAcc, kScratchCount };

struct PassState;

class Model {
 public:
  Config c;
  std::vector<void*> w;  // device pointers by slot
  // Sequence caches live in arenas (src/cache-pool.ts places each sequence's block at an offset in one): grown by
  // allocArena on the JS thread, read by passes on a worker, so the list is guarded; freed with the model.
  std::vector<void*> arenas;
  std::vector<size_t> arenaBytes;
  std::mutex arenaMutex;
  int sms = 1;              // multiprocessors of device 0: picks schedules (never a result's arithmetic)
  cudaStream_t s = nullptr;
  std::vector<void*> scratch = std::vector<void*>(kScratchCount, nullptr);
  std::vector<size_t> scratchBytes = std::vector<size_t>(kScratchCount, 0);

  // The pass waiting for the host's routing of a mixture layer (forward() then route() calls, one pass at a time:
  // the engine's queue runs passes in order); null when none.
  std::shared_ptr<PassState> pending;

  explicit Model(const Config& cfg)
      : c(cfg), w(3 + (size_t)cfg.layers * (kRoles + moeStride(cfg)), nullptr), groupOfSlot(w.size(), -1) {
    // Slots that one GEMM reads as one matrix share a buffer (`fused` owns it): per layer [Wq; Wk; Wv], their
    // biases and [Wgate; Wup]; the shared expert's and each routed expert's [Wgate; Wup].
    for (int l = 0; l < c.layers; l++) {
      addGroup({denseSlot(l, kQ), denseSlot(l, kK), denseSlot(l, kV)});
      addGroup({denseSlot(l, kQB), denseSlot(l, kKB), denseSlot(l, kVB)});
      addGroup({denseSlot(l, kGate), denseSlot(l, kUp)});
      if (c.E == 0) continue;
      addGroup({moeSlot(l, kSharedGate), moeSlot(l, kSharedUp)});
      for (int e = 0; e < c.E; e++) addGroup({expertSlot(l, e, 0), expertSlot(l, e, 1)});
    }
    fused.assign(groups.size(), nullptr);
    CK(cudaStreamCreate(&s));
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    sms = p.multiProcessorCount > 0 ? p.multiProcessorCount : 1;
  }
  ~Model() { release(); }
  void release() {
    pending.reset();
    for (int slot = 0; slot < (int)w.size(); slot++)
      if (w[slot] && groupOfSlot[slot] < 0) cudaFree(w[slot]);  // grouped slots point into `fused`
    for (auto& p : w) p = nullptr;
    for (auto& p : fused) { if (p) cudaFree(p); p = nullptr; }
    for (auto& p : scratch) { if (p) cudaFree(p); p = nullptr; }
    for (auto& p : arenas) { if (p) cudaFree(p); p = nullptr; }
    if (s) cudaStreamDestroy(s);
    s = nullptr;
  }

  // ---- weight storage ----
  // Roles stored together so that one GEMM computes them (groups, built in the constructor): the group's first
  // slot points at the buffer start (so it is the fused weight), the others inside it; `fused` owns the buffers.
  std::vector<int> groupOfSlot;          // (slots,) group of each slot, -1: stored alone
  std::vector<std::vector<int>> groups;  // member slots of each group, in buffer order
  std::vector<void*> fused;              // (groups,) each group's buffer, allocated by its first upload
  void addGroup(std::initializer_list<int> members) {
    for (int slot : members) groupOfSlot[slot] = (int)groups.size();
    groups.emplace_back(members);
  }
  static int moeStride(const Config& k) { return k.E > 0 ? kMoeRoles + 3 * k.E : 0; }
  static int denseSlot(int l, int r) { return 3 + l * kRoles + r; }
  int moeSlot(int l, int r) const { return 3 + c.layers * kRoles + l * moeStride(c) + r; }
  int expertSlot(int l, int e, int part) const { return moeSlot(l, kMoeRoles + 3 * e + part); }
  // Dense role of a slot (-1: embed, final norm, LM head or a mixture slot).
  int roleOf(int slot) const { return slot < 3 || slot >= 3 + c.layers * kRoles ? -1 : (slot - 3) % kRoles; }
  int layerOf(int slot) const {
    if (slot < 3) return -1;
    if (slot < 3 + c.layers * kRoles) return (slot - 3) / kRoles;
    return (slot - 3 - c.layers * kRoles) / moeStride(c);
  }
  // Mixture role of a slot: kRouter..kSharedDown, or kMoeRoles + 3 e + part (-1: not a mixture slot).
  int moeRoleOf(int slot) const { return slot < 3 + c.layers * kRoles ? -1 : (slot - 3 - c.layers * kRoles) % moeStride(c); }
  // Elements of one slot's tensor (0 for biases the model does not have, and for the FFN slots a layer's kind leaves
  // empty).
  size_t slotElements(int slot) const {
    if (slot == 0 || slot == 2) return (size_t)c.V * c.d;
    if (slot == 1) return c.d;
    const bool moe = c.isMoe(layerOf(slot));
    const int mr = moeRoleOf(slot);
    if (mr >= 0) {
      if (!moe) return 0;
      if (mr == kRouter) return (size_t)c.E * c.d;
      if (mr < kMoeRoles) return (size_t)c.sharedFF * c.d;  // shared gate, up (sff, d), down (d, sff); 0 without one
      return (size_t)c.expertFF * c.d;                      // an expert's gate, up (eff, d) or down (d, eff)
    }
    const size_t q = (size_t)c.H * c.hd, kv = (size_t)c.KV * c.hd;
    switch (roleOf(slot)) {
      case kAttnNorm: case kFfnNorm: return c.d;
      case kQ: return q * c.d;
      case kK: case kV: return kv * c.d;
      case kQB: return c.qkvBias ? q : 0;
      case kKB: case kVB: return c.qkvBias ? kv : 0;
      case kQNorm: case kKNorm: return c.qkNorm ? c.hd : 0;
      case kO: return (size_t)c.d * q;
      case kOB: return c.outputBias ? c.d : 0;
      default: return moe ? 0 : (size_t)c.ff * c.d;  // gate, up, down
    }
  }
  size_t slotBytes(int slot) const { return slotElements(slot) * (c.bf16 && isMatrix(slot) ? 2 : 4); }
  // Device memory for `slot`'s tensor (bytes of its own size for ungrouped slots, which may differ from the plan,
  // e.g. a padded embedding); grouped slots land at their offset in their group's buffer.
  void* slotDest(int slot, size_t bytes) {
    const int g = groupOfSlot[slot];
    if (g < 0) {
      if (w[slot]) CK(cudaFree(w[slot]));
      w[slot] = nullptr;
      CK(cudaMalloc(&w[slot], bytes));
      return w[slot];
    }
    if (bytes != slotBytes(slot))
      throw std::runtime_error("upload: slot " + std::to_string(slot) + " holds " + std::to_string(bytes) + " bytes, expected " +
                               std::to_string(slotBytes(slot)));
    void*& buf = fused[g];
    if (!buf) {
      size_t total = 0;
      for (int member : groups[g]) total += slotBytes(member);
      CK(cudaMalloc(&buf, total ? total : 1));
      size_t off = 0;
      for (int member : groups[g]) {
        w[member] = static_cast<char*>(buf) + off;
        off += slotBytes(member);
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
  // Matrices are bf16 in bf16 mode; the router stays f32 (its top-k is a discrete choice, DESIGN §13).
  bool isMatrix(int slot) const {
    if (slot == 0 || slot == 2) return true;
    if (slot < 3) return false;
    const int mr = moeRoleOf(slot);
    if (mr >= 0) return mr != kRouter;
    int r = (slot - 3) % kRoles;
    return r == kQ || r == kK || r == kV || r == kO || r == kGate || r == kUp || r == kDown;
  }
  void* L(int l, int r) const { return w[denseSlot(l, r)]; }
  size_t kvBytes() const { return c.kvBf16 ? 2 : 4; }
  // y (m, n) = x (m, k) @ W^T (+ bias) (+ y itself when `accumulate`: the residual add). The GEMM reads x16, x in
  // bf16, in bf16 mode and x in f32 mode; the caller passes whichever it has (the other may be null). The k split
  // comes from the weight's shape (batch invariance, DESIGN §7); m and the SM count only pick the schedule.
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
                                          InstanceMethod("allocArena", &ModelWrap::AllocArena),
                                          InstanceMethod("forward", &ModelWrap::Forward),
                                          InstanceMethod("route", &ModelWrap::Route),
                                          InstanceMethod("free", &ModelWrap::Free)});
  }
  ModelWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<Model> m;

 private:
  Napi::Value Upload(const Napi::CallbackInfo& info);
  Napi::Value Randomize(const Napi::CallbackInfo& info);
  Napi::Value AllocArena(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Route(const Napi::CallbackInfo& info);
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
           i("maskId"), o.Get("qkNorm").ToBoolean().Value(), o.Has("blockSize") ? i("blockSize") : 0,
           o.Has("reportChunk") ? i("reportChunk") : 256};
  if (c.reportChunk < 1) throw Napi::RangeError::New(info.Env(), "CudaModel: reportChunk must be at least 1");
  c.rotaryDim = o.Has("rotaryDim") && !o.Get("rotaryDim").IsUndefined() ? i("rotaryDim") : c.hd;
  if (c.rotaryDim < 2 || c.rotaryDim > c.hd || c.rotaryDim % 2 != 0)
    throw Napi::RangeError::New(info.Env(), "CudaModel: rotaryDim must be even, in [2, headDim]");
  c.clipQkv = o.Has("clipQkv") && !o.Get("clipQkv").IsUndefined() ? o.Get("clipQkv").As<Napi::Number>().FloatValue() : 0.f;
  if (!(c.clipQkv >= 0.f)) throw Napi::RangeError::New(info.Env(), "CudaModel: clipQkv must be positive (or absent)");
  c.outputBias = o.Has("outputBias") && o.Get("outputBias").ToBoolean().Value();
  c.E = c.topK = c.expertFF = c.sharedFF = 0;
  c.moeLayer.assign(c.layers, false);
  if (o.Has("moe") && o.Get("moe").IsObject()) {
    Napi::Object mo = o.Get("moe").As<Napi::Object>();
    auto mi = [&](const char* k) { return mo.Get(k).As<Napi::Number>().Int32Value(); };
    c.E = mi("numExperts");
    c.topK = mi("topK");
    c.expertFF = mi("expertSize");
    c.sharedFF = mo.Has("sharedExpertSize") && mo.Get("sharedExpertSize").IsNumber() ? mi("sharedExpertSize") : 0;
    Napi::Array layers = mo.Get("moeLayers").As<Napi::Array>();
    if (c.E < 1 || c.topK < 1 || c.topK > c.E || c.expertFF < 1 || c.sharedFF < 0 || (int)layers.Length() != c.layers)
      throw Napi::RangeError::New(info.Env(), "CudaModel: moe needs numExperts >= topK >= 1, expertSize >= 1 and one moeLayers entry per layer");
    for (int l = 0; l < c.layers; l++) c.moeLayer[l] = layers.Get(l).ToBoolean().Value();
  }
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
  if (!bytes->empty()) std::memcpy(bytes->data(), (uint8_t*)ta.ArrayBuffer().Data() + ta.ByteOffset(), ta.ByteLength());
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
      const int role = mm->roleOf(slot);
      // Norm weights near 1 keep activations bounded through 32 layers.
      if (bf) CK(fdl::fill_random_bf16((__nv_bfloat16*)dst, n, seed + slot, scale, mm->s));
      else if (slot == 1 || role == kAttnNorm || role == kFfnNorm || role == kQNorm || role == kKNorm) CK(fdl::fill_random_f32((float*)dst, n, seed + slot, 0.05f, 1.f, mm->s));
      else CK(fdl::fill_random_f32((float*)dst, n, seed + slot, scale, 0.f, mm->s));
    }
    CK(cudaStreamSynchronize(mm->s));
  }, nullptr);
  job->Queue();
  return job->promise();
}

// One sequence's part of a pass (src/engine.ts builds these from the ForwardRequests, DESIGN §4, §7).
struct PassSeq {
  int arena;      // arena holding the sequence's cache block
  size_t offset;  // byte offset of the block in the arena: K (layers, cap, KV, hd), then V (layers, cap, KV, hd)
  int cap;        // positions the block holds (the sequence's maxLength)
  int mode;       // 0 full, 1 prefix, 2 dual, 3 extend
  int start, rows, L, rowOffset;  // computed span [start, start + rows) of a canvas of L, at pass rows rowOffset..
  // Elastic-Cache (DESIGN §16): a refresh's layers below refreshFrom write only [refreshLo, refreshHi) (0: no refresh);
  // the attention report of rows [statLo, statHi) (statLo < 0: none).
  int refreshFrom, refreshLo, refreshHi, statLo, statHi;
};
// Numbers per sequence in a pass's `seqs` (src/marshal.ts PASS_SEQ_FIELDS).
constexpr size_t kSeqFields = 13;
struct PassIn {
  std::vector<int32_t> ids;  // (rows,) token of each computed row, sequence after sequence
  std::vector<PassSeq> seqs;
  std::vector<int32_t> repRow, repPos;  // (reports,) pass row that predicts each report, and its absolute position
  std::vector<double> repTemp;          // (reports,) sampling temperature, 0 = greedy
  std::vector<uint32_t> repSeed, repFi; // (reports,) the sequence's seed and forward index
  bool wantLogits, wantTop2, wantEntropy;
  std::vector<int32_t> statKeys;  // (sequences, layers) each layer's tracked key of the attention report, -1: none
};
struct PassOut {
  std::vector<int32_t> tokens;
  std::vector<double> probs, top1, top2, entropy;
  std::vector<float> logits;
};
// The attention reports of a pass (DESIGN §16), sequence after sequence (those that asked): (layers,) top, and
// (layers, rows) atTop and tracked each.
struct StatOut {
  std::vector<int32_t> top;
  std::vector<double> atTop, tracked;
};

enum Mode { kFull = 0, kPrefix = 1, kDual = 2, kExtend = 3 };

// A pass between its calls: its input, the device buffers it laid out, and where it stopped. A model with mixture
// layers stops after each one's router logits, which the host routes (src/engine.ts, @fast-dllm/model routeRows: one
// rule for every engine) and hands back with route(); the pass then runs that layer's experts and goes on.
struct PassState {
  std::shared_ptr<const PassIn> in;
  int m = 0, nseq = 0, n = 0;  // computed rows, sequences, reports
  int layer = 0;               // next layer to run; while routing is awaited, the mixture layer waiting for it
  bool awaitingRoute = false;
  std::vector<float> routerLogits;  // (m, E) the awaited layer's router logits, f32, on the host
  // Device buffers (M.buf scratch, shapes in BeginPass).
  int32_t *ids = nullptr, *rowSeq = nullptr;
  float *x = nullptr, *hf = nullptr, *qkv = nullptr, *q = nullptr, *att = nullptr, *gu = nullptr, *g = nullptr;
  char *freshK = nullptr, *freshV = nullptr;
  __nv_bfloat16* a16 = nullptr;
  fdl::AttnSeq* dseq = nullptr;
  std::vector<fdl::AttnSeq> hseq;  // the descriptors on the host (the attention report reads the keys through them)
  std::vector<StatOut> stats;       // (sequences,) attention reports, filled layer by layer
  fdl::AttnPlan plan{};
  float* attnPartial = nullptr;
  int chunk = 1;
};

// One pass over the rows of every sequence (DESIGN §7): embedding, every GEMM and element-wise kernel over all rows at
// once; qkv_rope and attention per row / per sequence through the AttnSeq descriptors, each sequence's fresh K/V
// written into its own cache (full, dual, extend) or into the pass's fresh rows (prefix); then the final norm, the
// LM head and the reduction over the reported rows only, `reportChunk` rows per LM-head GEMM. No choice of split,
// tile or schedule that changes a row's arithmetic depends on the rows or sequences beside it. BeginPass lays the
// pass out and embeds its rows, RunLayers runs the layers up to the next mixture layer's routing (or the end), and
// FinishPass reduces the reports.
static std::shared_ptr<PassState> BeginPass(Model& M, std::shared_ptr<const PassIn> inp) {
  auto st = std::make_shared<PassState>();
  st->in = inp;
  const PassIn& in = *inp;
  const Config& c = M.c;
  const int m = st->m = (int)in.ids.size(), nseq = st->nseq = (int)in.seqs.size(), n = st->n = (int)in.repRow.size();
  const int qd = c.H * c.hd, kvd = c.KV * c.hd, ffw = c.ffMax();
  const size_t kvB = M.kvBytes();
  cudaStream_t s = M.s;
  bool anyPrefix = false;
  for (const PassSeq& q : in.seqs) anyPrefix = anyPrefix || q.mode == kPrefix;
  int32_t* ids = st->ids = M.buf<int32_t>(kIds, m);        // (m,) tokens of the computed rows
  int32_t* rowSeq = st->rowSeq = M.buf<int32_t>(kRowSeq, m);  // (m,) sequence of each row
  float* x = st->x = M.buf<float>(kX, (size_t)m * c.d);  // (m, d) residual stream
  // (m, d) normed input: f32 mode; bf16 mode only for mixtures (the f32 router and the rows gathered per expert)
  st->hf = c.bf16 && c.E == 0 ? nullptr : M.buf<float>(kH, (size_t)m * c.d);
  st->qkv = M.buf<float>(kQKV, (size_t)m * (qd + 2 * kvd));        // (m, qd + 2 kvd) fused projection
  st->q = M.buf<float>(kQ_, (size_t)m * qd);                      // (m, H, hd) normed and rotated
  // (m, KV, hd) each in the cache's dtype: prefix sequences' fresh rows (at their pass rows); the other modes write
  // theirs straight into their caches.
  char* freshK = st->freshK = anyPrefix ? M.buf<char>(kK_, (size_t)m * kvd * kvB) : nullptr;
  char* freshV = st->freshV = anyPrefix ? M.buf<char>(kV_, (size_t)m * kvd * kvB) : nullptr;
  st->att = c.bf16 ? nullptr : M.buf<float>(kAtt, (size_t)m * qd);  // (m, H, hd), f32 mode
  st->gu = M.buf<float>(kGU, (size_t)m * 2 * ffw);                  // (m, 2 ff) fused gate | up (ff: the widest FFN)
  st->g = c.bf16 ? nullptr : M.buf<float>(kG, (size_t)m * ffw);    // (m, ff) silu(gate) * up, f32 mode
  const int chunk = st->chunk = std::min(n, c.reportChunk);         // reported rows per LM-head GEMM
  // bf16 mode: the kernel that produces a GEMM input also writes its bf16 copy into a16, (max(m, chunk), max(d, qd,
  // ff)); each copy is consumed before the next is written (one stream). f32 mode: a16 is null, GEMMs read f32.
  st->a16 = c.bf16 ? M.buf<__nv_bfloat16>(kA16, (size_t)std::max(m, chunk) * std::max({c.d, qd, ffw})) : nullptr;
  // Attention descriptors: a cache block is K (layers, cap, KV, hd) then V, so a layer starts cap * kvd elements
  // after the previous one. prefix reads cached [0, start) and its fresh rows; full, dual and extend write their
  // rows into the cache first (qkv_rope) and read keys [0, L) from it.
  std::vector<fdl::AttnSeq> seqs(nseq);
  std::vector<int32_t> rowSeqHost(m);
  {
    std::lock_guard<std::mutex> lock(M.arenaMutex);
    for (int i = 0; i < nseq; i++) {
      const PassSeq& p = in.seqs[i];
      if (p.arena < 0 || p.arena >= (int)M.arenas.size())
        throw std::runtime_error("forward: sequence " + std::to_string(i) + " names arena " + std::to_string(p.arena) + " of " +
                                 std::to_string(M.arenas.size()));
      const size_t half = (size_t)c.layers * p.cap * kvd * kvB;
      if (p.L > p.cap || p.offset + 2 * half > M.arenaBytes[p.arena])
        throw std::runtime_error("forward: sequence " + std::to_string(i) + "'s cache block lies outside its arena");
      char* base = static_cast<char*>(M.arenas[p.arena]) + p.offset;
      fdl::AttnSeq& S = seqs[i];
      S = fdl::AttnSeq{};
      S.k0 = base;
      S.v0 = base + half;
      S.stride0 = (size_t)p.cap * kvd;
      S.n0 = p.mode == kPrefix ? p.start : p.L;
      if (p.mode == kPrefix) {
        S.k1 = freshK + (size_t)p.rowOffset * kvd * kvB;
        S.v1 = freshV + (size_t)p.rowOffset * kvd * kvB;
        S.stride1 = 0;  // the fresh rows' buffer is refilled by every layer
      }
      S.L = p.L;
      S.q0 = p.rowOffset;
      S.nq = p.rows;
      S.pos0 = p.start;
      S.causalBlock = c.blockSize;
      if (p.refreshFrom > 0) S.keepLayers = p.refreshFrom, S.keepLo = p.refreshLo, S.keepHi = p.refreshHi;
      for (int r = 0; r < p.rows; r++) rowSeqHost[p.rowOffset + r] = i;
    }
  }
  const fdl::AttnPlan plan = st->plan = fdl::attention_plan(seqs.data(), nseq, c.H, c.hd, M.sms, fdl::kScheduleAuto);
  st->hseq = seqs;
  st->stats.assign(nseq, StatOut{});
  for (int i = 0; i < nseq; i++) {
    const PassSeq& p = in.seqs[i];
    if (p.statLo < 0) continue;
    const size_t rows = (size_t)(p.statHi - p.statLo);
    st->stats[i].top.assign(c.layers, 0);
    st->stats[i].atTop.assign(c.layers * rows, 0.0);
    st->stats[i].tracked.assign(c.layers * rows, 0.0);
  }
  fdl::AttnSeq* dseq = st->dseq = M.buf<fdl::AttnSeq>(kSeqs, nseq);
  st->attnPartial = plan.combine ? M.buf<float>(kAttnPartial, plan.partialFloats) : nullptr;
  // Pageable sources: each copy is staged before the call returns, so the host vectors may go.
  CK(cudaMemcpyAsync(dseq, seqs.data(), nseq * sizeof(fdl::AttnSeq), cudaMemcpyHostToDevice, s));
  CK(cudaMemcpyAsync(ids, in.ids.data(), m * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  CK(cudaMemcpyAsync(rowSeq, rowSeqHost.data(), m * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  if (c.bf16) CK(fdl::embed_bf16((const __nv_bfloat16*)M.w[0], ids, x, m, c.d, s));
  else CK(fdl::embed_f32((const float*)M.w[0], ids, x, m, c.d, s));
  return st;
}

// One mixture FFN (DESIGN §13) of layer l over the normed rows st.hf (and st.a16 in bf16 mode), added to the residual
// stream: each expert in ascending order runs once over the rows routed to it (gathered, gate|up GEMM, SwiGLU, down
// GEMM) and its output, times each row's weight, is added into the (m, d) sum in that order; then the shared expert
// over every row; then x += the sum. A row's experts and weights come from its own logits (routing), its sum runs in
// expert order and every GEMM's arithmetic is the weight shape's (DESIGN §7): batch invariant.
// experts (m, topK) ascending per row, weights (m, topK).
static void RunMoe(Model& M, PassState& st, int l, const std::vector<int32_t>& experts, const std::vector<double>& weights) {
  const Config& c = M.c;
  const int m = st.m, k = c.topK, E = c.E;
  cudaStream_t s = M.s;
  // Rows routed to each expert, ascending, with their weights, all experts' lists one after another.
  std::vector<int32_t> rowsHost;
  std::vector<float> wHost;
  std::vector<int> first(E + 1, 0);  // expert e's rows are [first[e], first[e + 1])
  rowsHost.reserve((size_t)m * k);
  wHost.reserve((size_t)m * k);
  std::vector<std::vector<std::pair<int32_t, float>>> byExpert(E);
  for (int i = 0; i < m; i++)
    for (int r = 0; r < k; r++) byExpert[experts[(size_t)i * k + r]].emplace_back(i, (float)weights[(size_t)i * k + r]);
  for (int e = 0; e < E; e++) {
    first[e] = (int)rowsHost.size();
    for (auto& [row, wt] : byExpert[e]) rowsHost.push_back(row), wHost.push_back(wt);
  }
  first[E] = (int)rowsHost.size();
  int32_t* rows = M.buf<int32_t>(kMoeRows, (size_t)m * k);  // (m k,) rows routed to each expert, expert after expert
  float* wts = M.buf<float>(kMoeW, (size_t)m * k);          // (m k,) their weights
  const int ffw = std::max(c.expertFF, c.sharedFF);
  float* xs = M.buf<float>(kMoeX, (size_t)m * c.d);         // (rows of an expert, d) its gathered input, f32
  // (rows, max(d, ff)) bf16 mode: the gathered input's bf16 copy, then the SwiGLU output (each read before the next
  // write); a16 keeps the normed rows for the shared expert.
  __nv_bfloat16* xs16 = c.bf16 ? M.buf<__nv_bfloat16>(kMoeX16, (size_t)m * std::max(c.d, ffw)) : nullptr;
  float* ys = M.buf<float>(kMoeY, (size_t)m * c.d);         // (rows, d) an expert's output
  float* acc = M.buf<float>(kMoeAcc, (size_t)m * c.d);      // (m, d) the mixture's output, summed in f32
  CK(cudaMemcpyAsync(rows, rowsHost.data(), rowsHost.size() * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  CK(cudaMemcpyAsync(wts, wHost.data(), wHost.size() * sizeof(float), cudaMemcpyHostToDevice, s));
  CK(cudaMemsetAsync(acc, 0, (size_t)m * c.d * sizeof(float), s));
  const int eff = c.expertFF;
  for (int e = 0; e < E; e++) {
    const int cnt = first[e + 1] - first[e];
    if (cnt == 0) continue;  // no row chose it: its weights are not read
    CK(fdl::embed_f32(st.hf, rows + first[e], xs, cnt, c.d, s));  // gather the expert's rows
    if (c.bf16) CK(fdl::to_bf16(xs, xs16, (size_t)cnt * c.d, s));
    M.linear(xs, xs16, M.w[M.expertSlot(l, e, 0)], nullptr, st.gu, cnt, 2 * eff, c.d);  // fused [Wgate; Wup]
    CK(fdl::swiglu(st.gu, st.g, xs16, cnt, eff, s));
    M.linear(st.g, xs16, M.w[M.expertSlot(l, e, 2)], nullptr, ys, cnt, c.d, eff);
    CK(fdl::scatter_add_rows(ys, rows + first[e], wts + first[e], acc, cnt, c.d, s));  // acc[row] += w · y
  }
  if (c.sharedFF > 0) {
    M.linear(st.hf, st.a16, M.w[M.moeSlot(l, kSharedGate)], nullptr, st.gu, m, 2 * c.sharedFF, c.d);
    CK(fdl::swiglu(st.gu, st.g, st.a16, m, c.sharedFF, s));
    M.linear(st.g, st.a16, M.w[M.moeSlot(l, kSharedDown)], nullptr, ys, m, c.d, c.sharedFF);
    CK(fdl::scatter_add_rows(ys, nullptr, nullptr, acc, m, c.d, s));  // + shared(x), after the routed experts
  }
  CK(fdl::scatter_add_rows(acc, nullptr, nullptr, st.x, m, c.d, s));  // x += the mixture
}

// Layer l's part of the attention reports (DESIGN §16; ForwardRequest.attention in the engine contract): the reported
// rows' queries (f32) and the sequence's L keys as this layer's attention read them are copied to the host, where the
// contract's definition (engine-kit addAttentionLayer) runs in double: per row and head the softmax of q·k/sqrt(hd)
// over the keys, the mean over heads A(r, j), column sums in row order, the first largest. Per sequence, from its own
// rows and keys only (batch invariant). Host-side: a copy and a synchronisation per layer, paid only by such passes.
static void AttentionReports(Model& M, PassState& st, int l) {
  const PassIn& in = *st.in;
  const Config& c = M.c;
  const int qd = c.H * c.hd, kvd = c.KV * c.hd, group = c.H / c.KV;
  const size_t kvB = M.kvBytes();
  for (int i = 0; i < st.nseq; i++) {
    const PassSeq& p = in.seqs[i];
    if (p.statLo < 0) continue;
    const fdl::AttnSeq& S = st.hseq[i];
    const int n = p.statHi - p.statLo, L = p.L;
    std::vector<float> qh((size_t)n * qd);
    std::vector<char> raw((size_t)L * kvd * kvB);
    CK(cudaMemcpyAsync(qh.data(), st.q + (size_t)(p.rowOffset + p.statLo - p.start) * qd, qh.size() * sizeof(float), cudaMemcpyDeviceToHost, M.s));
    // Keys [0, n0) from segment 0 at this layer, [n0, L) from segment 1 (a prefix step's fresh rows).
    const size_t row = (size_t)kvd * kvB;
    CK(cudaMemcpyAsync(raw.data(), static_cast<const char*>(S.k0) + S.stride0 * l * kvB, (size_t)S.n0 * row, cudaMemcpyDeviceToHost, M.s));
    if (L > S.n0)
      CK(cudaMemcpyAsync(raw.data() + (size_t)S.n0 * row, static_cast<const char*>(S.k1) + S.stride1 * l * kvB, (size_t)(L - S.n0) * row,
                         cudaMemcpyDeviceToHost, M.s));
    CK(cudaStreamSynchronize(M.s));
    std::vector<double> keys((size_t)L * kvd);
    for (size_t t = 0; t < keys.size(); t++) {
      if (kvB == 4) {
        float f;
        std::memcpy(&f, raw.data() + t * 4, 4);
        keys[t] = f;
      } else {  // bf16 bits: the high half of an f32
        uint16_t b;
        std::memcpy(&b, raw.data() + t * 2, 2);
        const uint32_t u = (uint32_t)b << 16;
        float f;
        std::memcpy(&f, &u, 4);
        keys[t] = f;
      }
    }
    const double scale = 1.0 / std::sqrt((double)c.hd);
    std::vector<double> A((size_t)n * L, 0.0), sc(L);
    for (int r = 0; r < n; r++)
      for (int h = 0; h < c.H; h++) {
        const float* qv = qh.data() + ((size_t)r * c.H + h) * c.hd;
        const size_t ko = (size_t)(h / group) * c.hd;
        double mx = -INFINITY;
        for (int j = 0; j < L; j++) {
          double dot = 0;
          for (int t = 0; t < c.hd; t++) dot += (double)qv[t] * keys[(size_t)j * kvd + ko + t];
          sc[j] = dot * scale;
          if (sc[j] > mx) mx = sc[j];
        }
        double sum = 0;
        for (int j = 0; j < L; j++) sc[j] = std::exp(sc[j] - mx), sum += sc[j];
        for (int j = 0; j < L; j++) A[(size_t)r * L + j] += sc[j] / sum / c.H;
      }
    int top = 0;
    double best = -INFINITY;
    for (int j = 0; j < L; j++) {
      double col = 0;
      for (int r = 0; r < n; r++) col += A[(size_t)r * L + j];
      if (col > best) best = col, top = j;
    }
    StatOut& o = st.stats[i];
    const int key = in.statKeys[(size_t)i * c.layers + l];
    o.top[l] = top;
    for (int r = 0; r < n; r++) {
      o.atTop[(size_t)l * n + r] = A[(size_t)r * L + top];
      o.tracked[(size_t)l * n + r] = key >= 0 && key < L ? A[(size_t)r * L + key] : 0.0;
    }
  }
}

// Runs layers from st.layer on; returns false when it stopped at a mixture layer's routing (st.routerLogits filled),
// true when every layer ran.
static bool RunLayers(Model& M, PassState& st) {
  const Config& c = M.c;
  const int m = st.m, nseq = st.nseq;
  const int qd = c.H * c.hd, kvd = c.KV * c.hd;
  cudaStream_t s = M.s;
  float *x = st.x, *hf = st.hf, *qkv = st.qkv, *q = st.q, *att = st.att, *gu = st.gu, *g = st.g;
  __nv_bfloat16* a16 = st.a16;
  for (int l = st.layer; l < c.layers; l++) {
    CK(fdl::rmsnorm(x, (const float*)M.L(l, kAttnNorm), c.bf16 ? nullptr : hf, a16, m, c.d, c.eps, s));
    M.linear(hf, a16, l, kQ, c.qkvBias ? kQB : -1, qkv, m, qd + 2 * kvd, c.d);  // slot kQ is the fused [Wq; Wk; Wv]
    CK(fdl::qkv_rope(qkv, q, st.dseq, st.rowSeq, l, c.kvBf16, c.qkNorm ? (const float*)M.L(l, kQNorm) : nullptr,
                     c.qkNorm ? (const float*)M.L(l, kKNorm) : nullptr, c.eps, m, c.H, c.KV, c.hd, c.rotaryDim, c.clipQkv,
                     c.theta, s));
    CK(fdl::attention(q, st.dseq, nseq, st.plan, l, c.kvBf16, att, a16, st.attnPartial, c.H, c.KV, c.hd, s));
    AttentionReports(M, st, l);
    M.linear(att, a16, l, kO, c.outputBias ? kOB : -1, x, m, c.d, qd, /*accumulate=*/true);  // x += att @ Wo^T (+ bo)
    if (c.isMoe(l)) {
      // The router in f32 (weights and input) whatever the mode: its top-k is a discrete choice (DESIGN §13).
      CK(fdl::rmsnorm(x, (const float*)M.L(l, kFfnNorm), hf, a16, m, c.d, c.eps, s));
      float* logits = M.buf<float>(kRouterLogits, (size_t)m * c.E);  // (m, E)
      CK(fdl::gemm_f32(hf, (const float*)M.w[M.moeSlot(l, kRouter)], nullptr, logits, m, c.E, c.d, false, s));
      st.routerLogits.resize((size_t)m * c.E);
      CK(cudaMemcpyAsync(st.routerLogits.data(), logits, (size_t)m * c.E * sizeof(float), cudaMemcpyDeviceToHost, s));
      CK(cudaStreamSynchronize(s));
      st.layer = l;
      st.awaitingRoute = true;
      return false;
    }
    CK(fdl::rmsnorm(x, (const float*)M.L(l, kFfnNorm), c.bf16 ? nullptr : hf, a16, m, c.d, c.eps, s));
    M.linear(hf, a16, l, kGate, -1, gu, m, 2 * c.ff, c.d);  // slot kGate is the fused [Wgate; Wup]
    CK(fdl::swiglu(gu, g, a16, m, c.ff, s));
    M.linear(g, a16, l, kDown, -1, x, m, c.d, c.ff, /*accumulate=*/true);  // x += swiglu @ Wdown^T
  }
  st.layer = c.layers;
  return true;
}

// The reports of a pass whose layers all ran: final norm, LM head and reduction per chunk of reported rows.
static void FinishPass(Model& M, PassState& st, PassOut& out) {
  const PassIn& in = *st.in;
  const Config& c = M.c;
  const int n = st.n, chunk = st.chunk;
  cudaStream_t s = M.s;
  float* x = st.x;
  __nv_bfloat16* a16 = st.a16;
  out.tokens.resize(n);
  out.probs.resize(n);
  if (in.wantTop2) out.top1.resize(n), out.top2.resize(n);
  if (in.wantEntropy) out.entropy.resize(n);
  if (in.wantLogits) out.logits.resize((size_t)n * c.V);
  if (n > 0) {
    int32_t* repRow = M.buf<int32_t>(kRepRow, n);     // (n,) pass row predicting each report
    int32_t* repPos = M.buf<int32_t>(kRepPos, n);     // (n,) absolute positions (sampling keys)
    double* repTemp = M.buf<double>(kRepTemp, n);     // (n,) 0 = greedy
    uint32_t* repSeed = M.buf<uint32_t>(kRepSeed, n);
    uint32_t* repFi = M.buf<uint32_t>(kRepFi, n);
    CK(cudaMemcpyAsync(repRow, in.repRow.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, s));
    CK(cudaMemcpyAsync(repPos, in.repPos.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice, s));
    CK(cudaMemcpyAsync(repTemp, in.repTemp.data(), n * sizeof(double), cudaMemcpyHostToDevice, s));
    CK(cudaMemcpyAsync(repSeed, in.repSeed.data(), n * sizeof(uint32_t), cudaMemcpyHostToDevice, s));
    CK(cudaMemcpyAsync(repFi, in.repFi.data(), n * sizeof(uint32_t), cudaMemcpyHostToDevice, s));
    float* sel = M.buf<float>(kSel, (size_t)chunk * c.d);          // (chunk, d) gathered rows of x
    float* hn = M.buf<float>(kHn, (size_t)chunk * c.d);            // (chunk, d) final-normed
    float* logits = M.buf<float>(kLogits, (size_t)chunk * c.V);    // (chunk, V)
    int32_t* tok = M.buf<int32_t>(kTok, n);                        // (n,) each
    double* pr = M.buf<double>(kProb, n);
    double* t1 = M.buf<double>(kTop1, n);
    double* t2 = M.buf<double>(kTop2, n);
    double* en = M.buf<double>(kEnt, n);
    const void* head = M.w[2] ? M.w[2] : M.w[0];  // tied embeddings: the embedding is the LM head
    for (int r0 = 0; r0 < n; r0 += chunk) {
      const int cn = std::min(chunk, n - r0);
      CK(fdl::embed_f32(x, repRow + r0, sel, cn, c.d, s));  // gather the predicting rows (Dream's shift applied)
      CK(fdl::rmsnorm(sel, (const float*)M.w[1], hn, a16, cn, c.d, c.eps, s));
      M.linear(hn, a16, head, nullptr, logits, cn, c.V, c.d);
      fdl::HeadOut ho{tok + r0, pr + r0, in.wantTop2 ? t1 + r0 : nullptr, in.wantTop2 ? t2 + r0 : nullptr,
                      in.wantEntropy ? en + r0 : nullptr};
      CK(fdl::lm_head_reduce(logits, cn, c.V, repPos + r0, repTemp + r0, repSeed + r0, repFi + r0, c.maskId, ho, s));
      if (in.wantLogits)
        CK(cudaMemcpyAsync(out.logits.data() + (size_t)r0 * c.V, logits, (size_t)cn * c.V * sizeof(float),
                           cudaMemcpyDeviceToHost, s));
    }
    CK(cudaMemcpyAsync(out.tokens.data(), tok, n * sizeof(int32_t), cudaMemcpyDeviceToHost, s));
    CK(cudaMemcpyAsync(out.probs.data(), pr, n * sizeof(double), cudaMemcpyDeviceToHost, s));
    if (in.wantTop2) {
      CK(cudaMemcpyAsync(out.top1.data(), t1, n * sizeof(double), cudaMemcpyDeviceToHost, s));
      CK(cudaMemcpyAsync(out.top2.data(), t2, n * sizeof(double), cudaMemcpyDeviceToHost, s));
    }
    if (in.wantEntropy) CK(cudaMemcpyAsync(out.entropy.data(), en, n * sizeof(double), cudaMemcpyDeviceToHost, s));
  }
  CK(cudaStreamSynchronize(s));
}

template <typename T> static std::vector<T> copyTyped(const Napi::Value& v) {
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  std::vector<T> r(ta.ByteLength() / sizeof(T));
  if (!r.empty()) std::memcpy(r.data(), (uint8_t*)ta.ArrayBuffer().Data() + ta.ByteOffset(), ta.ByteLength());  // empty: no pointer
  return r;
}
template <typename TA, typename T> static Napi::Value toTyped(Napi::Env env, const std::vector<T>& v) {
  TA a = TA::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(T));
  return a;
}

// After a pass's layers ran up to a stop: its reports when every layer ran, else it waits in M.pending for route().
static void Advance(Model& M, const std::shared_ptr<PassState>& st, PassOut& out) {
  if (RunLayers(M, *st)) FinishPass(M, *st, out);
  else M.pending = st;
}

// What a forward or route call resolves with: the router logits the host must route ({ route: { layer, logits } }),
// or the pass's reports.
static Napi::Value PassResult(Napi::Env env, const PassState& st, const PassOut& out) {
  Napi::Object r = Napi::Object::New(env);
  if (st.awaitingRoute) {
    Napi::Object q = Napi::Object::New(env);
    q.Set("layer", st.layer);
    q.Set("logits", toTyped<Napi::Float32Array>(env, st.routerLogits));  // (rows, E)
    r.Set("route", q);
    return r;
  }
  const PassIn& in = *st.in;
  r.Set("tokens", toTyped<Napi::Int32Array>(env, out.tokens));
  r.Set("probs", toTyped<Napi::Float64Array>(env, out.probs));
  if (in.wantTop2) {
    r.Set("top1Probs", toTyped<Napi::Float64Array>(env, out.top1));
    r.Set("top2Probs", toTyped<Napi::Float64Array>(env, out.top2));
  }
  if (in.wantEntropy) r.Set("entropy", toTyped<Napi::Float64Array>(env, out.entropy));
  if (in.wantLogits) r.Set("logits", toTyped<Napi::Float32Array>(env, out.logits));
  // The attention reports, concatenated over the sequences that asked (DESIGN §16).
  StatOut all;
  for (const StatOut& o : st.stats) {
    all.top.insert(all.top.end(), o.top.begin(), o.top.end());
    all.atTop.insert(all.atTop.end(), o.atTop.begin(), o.atTop.end());
    all.tracked.insert(all.tracked.end(), o.tracked.begin(), o.tracked.end());
  }
  if (!all.top.empty()) {
    Napi::Object a = Napi::Object::New(env);
    a.Set("top", toTyped<Napi::Int32Array>(env, all.top));
    a.Set("atTop", toTyped<Napi::Float64Array>(env, all.atTop));
    a.Set("tracked", toTyped<Napi::Float64Array>(env, all.tracked));
    r.Set("attention", a);
  }
  return r;
}

// allocArena(bytes) -> index: a device block for sequence caches (synchronous; src/cache-pool.ts places blocks in it).
Napi::Value ModelWrap::AllocArena(const Napi::CallbackInfo& info) {
  auto mm = live(info.Env());
  const double want = info[0].As<Napi::Number>().DoubleValue();
  if (!(want >= 1 && want <= 9.0e15)) throw Napi::RangeError::New(info.Env(), "allocArena: bytes must be a positive integer");
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, (size_t)want);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free allocation error
    throw Napi::Error::New(info.Env(), std::string("cudaMalloc(") + std::to_string((size_t)want) + " bytes): " + cudaGetErrorString(e));
  }
  std::lock_guard<std::mutex> lock(mm->arenaMutex);
  mm->arenas.push_back(p);
  mm->arenaBytes.push_back((size_t)want);
  return Napi::Number::New(info.Env(), (double)(mm->arenas.size() - 1));
}

// forward(pass) -> Promise<{tokens, probs, top1Probs?, top2Probs?, entropy?, logits?, attention?}> over every report
// of the pass, or, for a model with mixture layers, Promise<{ route: { layer, logits } }> at the first one (see route()).
// pass: { ids: Int32Array (rows), seqs: Float64Array (batch, 13) [arena, offset, cap, mode, start, rows, L, rowOffset,
//         refreshFrom, refreshLo, refreshHi, statLo, statHi], attentionKeys: Int32Array (batch, layers),
//         reportRow, position: Int32Array, temperature: Float64Array, seed, forwardIndex: Uint32Array (reports),
//         top2, entropy, logits: boolean }
Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  auto mm = live(info.Env());
  Napi::Object o = info[0].As<Napi::Object>();
  auto in = std::make_shared<PassIn>();
  in->ids = copyTyped<int32_t>(o.Get("ids"));
  const std::vector<double> seqs = copyTyped<double>(o.Get("seqs"));
  if (seqs.size() % kSeqFields != 0) throw Napi::RangeError::New(info.Env(), "forward: seqs must hold 13 numbers per sequence");
  int rows = 0;
  for (size_t i = 0; i < seqs.size(); i += kSeqFields) {
    const PassSeq p{(int)seqs[i], (size_t)seqs[i + 1], (int)seqs[i + 2], (int)seqs[i + 3], (int)seqs[i + 4],
                    (int)seqs[i + 5], (int)seqs[i + 6], (int)seqs[i + 7], (int)seqs[i + 8], (int)seqs[i + 9],
                    (int)seqs[i + 10], (int)seqs[i + 11], (int)seqs[i + 12]};
    if (p.mode < kFull || p.mode > kExtend || p.rows < 1 || p.start < 0 || p.start + p.rows > p.L || p.rowOffset != rows)
      throw Napi::RangeError::New(info.Env(), "forward: sequence " + std::to_string(i / kSeqFields) + " has a bad mode, span or row offset");
    if (p.refreshFrom < 0 || p.refreshFrom >= mm->c.layers || (p.refreshFrom > 0 && !(0 <= p.refreshLo && p.refreshLo < p.refreshHi && p.refreshHi <= p.L)) ||
        (p.statLo >= 0 && !(p.start <= p.statLo && p.statLo < p.statHi && p.statHi <= p.start + p.rows)))
      throw Napi::RangeError::New(info.Env(), "forward: sequence " + std::to_string(i / kSeqFields) + " has a bad refresh or attention span");
    rows += p.rows;
    in->seqs.push_back(p);
  }
  if (rows != (int)in->ids.size())
    throw Napi::RangeError::New(info.Env(), "forward: ids holds " + std::to_string(in->ids.size()) + " rows, the sequences " + std::to_string(rows));
  in->repRow = copyTyped<int32_t>(o.Get("reportRow"));
  in->repPos = copyTyped<int32_t>(o.Get("position"));
  in->repTemp = copyTyped<double>(o.Get("temperature"));
  in->repSeed = copyTyped<uint32_t>(o.Get("seed"));
  in->repFi = copyTyped<uint32_t>(o.Get("forwardIndex"));
  const size_t n = in->repRow.size();
  if (in->repPos.size() != n || in->repTemp.size() != n || in->repSeed.size() != n || in->repFi.size() != n)
    throw Napi::RangeError::New(info.Env(), "forward: the report arrays differ in length");
  for (int32_t r : in->repRow)
    if (r < 0 || r >= rows) throw Napi::RangeError::New(info.Env(), "forward: a reported row is outside the pass's " + std::to_string(rows) + " rows");
  for (int32_t t : in->ids)
    if (t < 0 || t >= mm->c.V) throw Napi::RangeError::New(info.Env(), "forward: token " + std::to_string(t) + " is outside the vocabulary");
  in->wantTop2 = o.Get("top2").ToBoolean().Value();
  in->wantEntropy = o.Get("entropy").ToBoolean().Value();
  in->wantLogits = o.Get("logits").ToBoolean().Value();
  in->statKeys = copyTyped<int32_t>(o.Get("attentionKeys"));
  if (in->statKeys.size() != in->seqs.size() * (size_t)mm->c.layers)
    throw Napi::RangeError::New(info.Env(), "forward: attentionKeys must hold one key per sequence and layer");
  for (int32_t k : in->statKeys)
    if (k < -1) throw Napi::RangeError::New(info.Env(), "forward: an attention key is below -1");
  std::shared_ptr<const PassIn> cin = in;
  auto out = std::make_shared<PassOut>();
  auto st = std::make_shared<std::shared_ptr<PassState>>();  // set on the worker
  auto* job = new Job(info.Env(), [mm, cin, out, st]() {
    mm->pending.reset();  // a pass left waiting (its caller gave up on it) is abandoned
    *st = BeginPass(*mm, cin);
    Advance(*mm, *st, *out);
  }, [out, st](Napi::Env env) { return PassResult(env, **st, *out); });
  job->Queue();
  return job->promise();
}

// route(experts, weights) -> the same as forward: the routing of the mixture layer the pending pass stopped at,
// experts (rows, topK) int32 ascending per row in [0, E), weights (rows, topK) float64; runs that layer's experts and
// goes on to the next mixture layer's routing or the reports.
Napi::Value ModelWrap::Route(const Napi::CallbackInfo& info) {
  auto mm = live(info.Env());
  std::shared_ptr<PassState> st = mm->pending;
  if (!st || !st->awaitingRoute) throw Napi::Error::New(info.Env(), "route: no pass is waiting for its routing");
  auto experts = std::make_shared<std::vector<int32_t>>(copyTyped<int32_t>(info[0]));
  auto weights = std::make_shared<std::vector<double>>(copyTyped<double>(info[1]));
  const size_t want = (size_t)st->m * mm->c.topK;
  if (experts->size() != want || weights->size() != want)
    throw Napi::RangeError::New(info.Env(), "route: experts and weights must hold " + std::to_string(want) + " entries (rows x topK)");
  for (int i = 0; i < st->m; i++)
    for (int r = 0; r < mm->c.topK; r++) {
      const int32_t e = (*experts)[(size_t)i * mm->c.topK + r];
      if (e < 0 || e >= mm->c.E || (r > 0 && e <= (*experts)[(size_t)i * mm->c.topK + r - 1]))
        throw Napi::RangeError::New(info.Env(), "route: row " + std::to_string(i) + "'s experts must be distinct, ascending and under " + std::to_string(mm->c.E));
    }
  st->awaitingRoute = false;
  mm->pending.reset();
  auto out = std::make_shared<PassOut>();
  auto* job = new Job(info.Env(), [mm, st, experts, weights, out]() {
    RunMoe(*mm, *st, st->layer, *experts, *weights);
    st->layer++;
    Advance(*mm, st, *out);
  }, [out, st](Napi::Env env) { return PassResult(env, *st, *out); });
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
