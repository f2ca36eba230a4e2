// node-addon-api surface of the cuda engine (declared for TypeScript in src/binding.ts). Heavy calls run in
// Napi::AsyncWorker; every CUDA call is checked and a failure becomes a JS Error naming the call.
#include <napi.h>
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
};

// Slot numbering shared with src/plan.ts: 0 embed, 1 final norm, 2 lm head, then kRoles per layer.
enum Role { kAttnNorm, kQ, kK, kV, kQB, kKB, kVB, kQNorm, kKNorm, kO, kFfnNorm, kGate, kUp, kDown, kRoles };

// Per-pass working buffers, kept between passes (a cudaMalloc/cudaFree pair per buffer per step would cost more
// than a DualCache step's kernels, and cudaFree synchronises the device). Grown to the largest pass, never shrunk;
// the engine refuses passes over the rows it reserved them for (src/plan.ts passScratchBytes counts them).
enum Scratch { kIds, kRowSeq, kSeqs, kRepRow, kRepPos, kRepTemp, kRepSeed, kRepFi, kX, kH, kQKV, kQ_, kK_, kV_, kAtt,
               kGU, kG, kA16, kSel, kHn, kLogits, kPartial, kAttnPartial, kTok, kProb, kTop1, kTop2, kEnt,
               kScratchCount };

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
    for (auto& p : arenas) { if (p) cudaFree(p); p = nullptr; }
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
      case kQNorm: case kKNorm: return c.qkNorm ? c.hd : 0;
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
                                          InstanceMethod("free", &ModelWrap::Free)});
  }
  ModelWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<Model> m;

 private:
  Napi::Value Upload(const Napi::CallbackInfo& info);
  Napi::Value Randomize(const Napi::CallbackInfo& info);
  Napi::Value AllocArena(const Napi::CallbackInfo& info);
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
           i("maskId"), o.Get("qkNorm").ToBoolean().Value(), o.Has("blockSize") ? i("blockSize") : 0,
           o.Has("reportChunk") ? i("reportChunk") : 256};
  if (c.reportChunk < 1) throw Napi::RangeError::New(info.Env(), "CudaModel: reportChunk must be at least 1");
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
      const int role = Model::roleOf(slot);
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
};
struct PassIn {
  std::vector<int32_t> ids;  // (rows,) token of each computed row, sequence after sequence
  std::vector<PassSeq> seqs;
  std::vector<int32_t> repRow, repPos;  // (reports,) pass row that predicts each report, and its absolute position
  std::vector<double> repTemp;          // (reports,) sampling temperature, 0 = greedy
  std::vector<uint32_t> repSeed, repFi; // (reports,) the sequence's seed and forward index
  bool wantLogits, wantTop2, wantEntropy;
};
struct PassOut {
  std::vector<int32_t> tokens;
  std::vector<double> probs, top1, top2, entropy;
  std::vector<float> logits;
};

enum Mode { kFull = 0, kPrefix = 1, kDual = 2, kExtend = 3 };

// One pass over the rows of every sequence (DESIGN §7): embedding, every GEMM and element-wise kernel over all rows at
// once; qkv_rope and attention per row / per sequence through the AttnSeq descriptors, each sequence's fresh K/V
// written into its own cache (full, dual, extend) or into the pass's fresh rows (prefix); then the final norm, the
// LM head and the reduction over the reported rows only, `reportChunk` rows per LM-head GEMM. No choice of split,
// tile or schedule that changes a row's arithmetic depends on the rows or sequences beside it.
static void RunForward(Model& M, const PassIn& in, PassOut& out) {
  const Config& c = M.c;
  const int m = (int)in.ids.size(), nseq = (int)in.seqs.size(), n = (int)in.repRow.size();
  const int qd = c.H * c.hd, kvd = c.KV * c.hd;
  const size_t kvB = M.kvBytes();
  cudaStream_t s = M.s;
  bool anyPrefix = false;
  for (const PassSeq& q : in.seqs) anyPrefix = anyPrefix || q.mode == kPrefix;
  int32_t* ids = M.buf<int32_t>(kIds, m);        // (m,) tokens of the computed rows
  int32_t* rowSeq = M.buf<int32_t>(kRowSeq, m);  // (m,) sequence of each row
  float* x = M.buf<float>(kX, (size_t)m * c.d);  // (m, d) residual stream
  float* hf = c.bf16 ? nullptr : M.buf<float>(kH, (size_t)m * c.d);  // (m, d) normed input, f32 mode only
  float* qkv = M.buf<float>(kQKV, (size_t)m * (qd + 2 * kvd));        // (m, qd + 2 kvd) fused projection
  float* q = M.buf<float>(kQ_, (size_t)m * qd);                      // (m, H, hd) normed and rotated
  // (m, KV, hd) each in the cache's dtype: prefix sequences' fresh rows (at their pass rows); the other modes write
  // theirs straight into their caches.
  char* freshK = anyPrefix ? M.buf<char>(kK_, (size_t)m * kvd * kvB) : nullptr;
  char* freshV = anyPrefix ? M.buf<char>(kV_, (size_t)m * kvd * kvB) : nullptr;
  float* att = c.bf16 ? nullptr : M.buf<float>(kAtt, (size_t)m * qd);  // (m, H, hd), f32 mode
  float* gu = M.buf<float>(kGU, (size_t)m * 2 * c.ff);                 // (m, 2 ff) fused gate | up
  float* g = c.bf16 ? nullptr : M.buf<float>(kG, (size_t)m * c.ff);   // (m, ff) silu(gate) * up, f32 mode
  const int chunk = std::min(n, c.reportChunk);                        // reported rows per LM-head GEMM
  // bf16 mode: the kernel that produces a GEMM input also writes its bf16 copy into a16, (max(m, chunk), max(d, qd,
  // ff)); each copy is consumed before the next is written (one stream). f32 mode: a16 is null, GEMMs read f32.
  __nv_bfloat16* a16 =
      c.bf16 ? M.buf<__nv_bfloat16>(kA16, (size_t)std::max(m, chunk) * std::max({c.d, qd, c.ff})) : nullptr;

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
      for (int r = 0; r < p.rows; r++) rowSeqHost[p.rowOffset + r] = i;
    }
  }
  const fdl::AttnPlan plan = fdl::attention_plan(seqs.data(), nseq, c.H, c.hd, M.sms, fdl::kScheduleAuto);
  fdl::AttnSeq* dseq = M.buf<fdl::AttnSeq>(kSeqs, nseq);
  float* attnPartial = plan.combine ? M.buf<float>(kAttnPartial, plan.partialFloats) : nullptr;
  // Pageable sources: each copy is staged before the call returns, so the host vectors may go.
  CK(cudaMemcpyAsync(dseq, seqs.data(), nseq * sizeof(fdl::AttnSeq), cudaMemcpyHostToDevice, s));
  CK(cudaMemcpyAsync(ids, in.ids.data(), m * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  CK(cudaMemcpyAsync(rowSeq, rowSeqHost.data(), m * sizeof(int32_t), cudaMemcpyHostToDevice, s));
  if (c.bf16) CK(fdl::embed_bf16((const __nv_bfloat16*)M.w[0], ids, x, m, c.d, s));
  else CK(fdl::embed_f32((const float*)M.w[0], ids, x, m, c.d, s));
  for (int l = 0; l < c.layers; l++) {
    CK(fdl::rmsnorm(x, (const float*)M.L(l, kAttnNorm), hf, a16, m, c.d, c.eps, s));
    M.linear(hf, a16, l, kQ, c.qkvBias ? kQB : -1, qkv, m, qd + 2 * kvd, c.d);  // slot kQ is the fused [Wq; Wk; Wv]
    CK(fdl::qkv_rope(qkv, q, dseq, rowSeq, l, c.kvBf16, c.qkNorm ? (const float*)M.L(l, kQNorm) : nullptr,
                     c.qkNorm ? (const float*)M.L(l, kKNorm) : nullptr, c.eps, m, c.H, c.KV, c.hd, c.theta, s));
    CK(fdl::attention(q, dseq, nseq, plan, l, c.kvBf16, att, a16, attnPartial, c.H, c.KV, c.hd, s));
    M.linear(att, a16, l, kO, -1, x, m, c.d, qd, /*accumulate=*/true);  // x += att @ Wo^T
    CK(fdl::rmsnorm(x, (const float*)M.L(l, kFfnNorm), hf, a16, m, c.d, c.eps, s));
    M.linear(hf, a16, l, kGate, -1, gu, m, 2 * c.ff, c.d);  // slot kGate is the fused [Wgate; Wup]
    CK(fdl::swiglu(gu, g, a16, m, c.ff, s));
    M.linear(g, a16, l, kDown, -1, x, m, c.d, c.ff, /*accumulate=*/true);  // x += swiglu @ Wdown^T
  }
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

// forward(pass) -> Promise<{tokens, probs, top1Probs?, top2Probs?, entropy?, logits?}> over every report of the pass.
// pass: { ids: Int32Array (rows), seqs: Float64Array (batch, 8) [arena, offset, cap, mode, start, rows, L, rowOffset],
//         reportRow, position: Int32Array, temperature: Float64Array, seed, forwardIndex: Uint32Array (reports),
//         top2, entropy, logits: boolean }
Napi::Value ModelWrap::Forward(const Napi::CallbackInfo& info) {
  auto mm = live(info.Env());
  Napi::Object o = info[0].As<Napi::Object>();
  auto in = std::make_shared<PassIn>();
  in->ids = copyTyped<int32_t>(o.Get("ids"));
  const std::vector<double> seqs = copyTyped<double>(o.Get("seqs"));
  if (seqs.size() % 8 != 0) throw Napi::RangeError::New(info.Env(), "forward: seqs must hold 8 numbers per sequence");
  int rows = 0;
  for (size_t i = 0; i < seqs.size(); i += 8) {
    const PassSeq p{(int)seqs[i], (size_t)seqs[i + 1], (int)seqs[i + 2], (int)seqs[i + 3], (int)seqs[i + 4],
                    (int)seqs[i + 5], (int)seqs[i + 6], (int)seqs[i + 7]};
    if (p.mode < kFull || p.mode > kExtend || p.rows < 1 || p.start < 0 || p.start + p.rows > p.L || p.rowOffset != rows)
      throw Napi::RangeError::New(info.Env(), "forward: sequence " + std::to_string(i / 8) + " has a bad mode, span or row offset");
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
  auto out = std::make_shared<PassOut>();
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
