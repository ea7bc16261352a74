#include "tf_ops/cuda/encoder_runner.h"

#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "tf_ops/common/row_buckets.h"
#include "tf_ops/cuda/gemm_plans.h"
#include "tf_ops/cuda/graph_cache.h"
#include "tf_ops/cuda/int8_kernels.h"
#include "tf_ops/cuda/runner_state.h"

namespace fastbert {
namespace cuda {
Buffers Carve(const EncoderDims& d, int64_t rows, DType dtype, void* base) {
  Carver c(base);
  Buffers b;
  const size_t es = ElementSize(dtype);
  const size_t r = static_cast<size_t>(rows), h = r * d.hidden * es;
  b.seq_len = static_cast<int32_t*>(c.Take(sizeof(int32_t) * d.batch));
  b.cu_seqlens = static_cast<int32_t*>(c.Take(sizeof(int32_t) * (d.batch + 1)));
  b.io = static_cast<const void**>(c.Take(sizeof(void*) * 2));
  b.qkv_ptrs = static_cast<const void**>(c.Take(sizeof(void*) * 9 * d.num_layer));
  b.staging_bytes = c.used();
  b.x = c.Take(h);
  b.qkv = c.Take(3 * h);
  b.x1 = c.Take(h);
  if (d.int8_mode == 0) {
    b.ctx = c.Take(h);
    b.tmp = c.Take(h);
    b.inter = c.Take(r * d.inter_size * es);
    b.lt_ws = c.Take(kLtWorkspaceBytes);
    b.blas_ws = c.Take(kBlasWorkspaceBytes);
  } else {
    b.x8 = static_cast<int8_t*>(c.Take(r * d.hidden));
    b.ctx8 = static_cast<int8_t*>(c.Take(r * d.hidden));
    b.x1_8 = static_cast<int8_t*>(c.Take(r * d.hidden));
    b.inter8 = static_cast<int8_t*>(c.Take(r * d.inter_size));
    b.acc = static_cast<int32_t*>(c.Take(sizeof(int32_t) * r * std::max(3 * d.hidden, d.inter_size)));
    b.gemm_ws = c.Take(kInt8GemmWorkspaceBytes);
    b.alpha = static_cast<float*>(c.Take(sizeof(float) * (5 * d.hidden + d.inter_size)));
    b.bias_qkv = c.Take(2 * 3 * d.hidden);
  }
  b.total_bytes = c.used();
  return b;
}

namespace {

// Enqueues the whole encoder on `stream` (TF's stream, or the capture stream).
Status Enqueue(GpuContext* ctx, const Call& c, cudaStream_t stream, StageTimer* timer) {
  const EncoderDims& d = *c.d;
  const Buffers& buf = c.buf;
  const DType dtype = c.dtype;
  const int64_t rows = c.rows;
  const int B = d.batch, S = d.seq_len, H = d.hidden, I = d.inter_size;
  const size_t es = ElementSize(dtype);
  const size_t plane = static_cast<size_t>(rows) * H * es;
  char* qkv = static_cast<char*>(buf.qkv);
  const DeviceAddress input{c.input, buf.io}, output{c.output, buf.io + 1}, x{buf.x, nullptr};
  auto mark = [&](const char* stage) {
    if (timer) timer->Mark(stage, stream);
  };
  if (d.int8_mode != 0) return EnqueueInt8(ctx, c, stream, timer);
  if (d.remove_padding) {
    FB_CUDA("PackRows", PackRows(input, buf.cu_seqlens, B, S, rows, int64_t{H} * es, buf.x, stream));
    mark("pack");
  }

  auto* blas = static_cast<cublasHandle_t>(ctx->blas());
  FB_BLAS("cublasSetWorkspace", cublasSetWorkspace(blas, buf.blas_ws, kBlasWorkspaceBytes));
  const cudaDataType_t t = CudaType(dtype);
  const float one = 1.0f, zero = 0.0f;
  const float scale = 1.0f / (std::sqrt(static_cast<float>(d.size_per_head)) * d.q_scaling);
  auto gemm = [&](const void* a, const void* w, void* out, int64_t n, int64_t k, Epilogue ep, const void* bias,
                  bool* supported) {
    return ctx->gemms()->Run(dtype, d.tf32, rows, n, k, a, w, out, ep, bias, buf.lt_ws, kLtWorkspaceBytes, stream,
                             supported);
  };
  bool supported = true;
  for (int l = 0; l < d.num_layer; ++l) {
    const LayerWeights<void, void>& w = (*c.layers)[l];
    // Padded mode reads the input tensor in the first layer and writes the output tensor in the
    // last (no copies); packed mode works on buf.x throughout.
    const bool first = l == 0, last = l + 1 == d.num_layer;
    const DeviceAddress layer_in = !d.remove_padding && first ? input : x;
    const DeviceAddress layer_out = !d.remove_padding && last ? output : x;
    const void** dev_ptrs = buf.qkv_ptrs + 9 * l;
    FB_BLAS("cublasGemmBatchedEx(qkv)",
            cublasGemmBatchedEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, H, static_cast<int>(rows), H, &one, dev_ptrs, t, H,
                                dev_ptrs + 3, t, H, &zero, const_cast<void**>(dev_ptrs + 6), t, H, 3,
                                ComputeType(dtype, d.tf32), CUBLAS_GEMM_DEFAULT));
    mark("qkv_gemm");
    AttentionParams ap;
    ap.dtype = dtype;
    ap.q = qkv;
    ap.k = qkv + plane;
    ap.v = qkv + 2 * plane;
    ap.ld = H;
    ap.q_bias = w.q_bias;
    ap.v_bias = w.v_bias;
    ap.out = buf.ctx;
    ap.cu_seqlens = d.remove_padding ? buf.cu_seqlens : nullptr;
    ap.seq_len = buf.seq_len;
    ap.batch = B;
    ap.seq_len_max = S;  // not the call's longest sequence: blocks past a sequence's end return at once
    ap.padded_seq_len = S;
    ap.head_num = d.head_num;
    ap.size_per_head = d.size_per_head;
    ap.scale = scale;
    FB_CUDA("Attention", Attention(ap, stream));
    mark("attention");
    FB_OK(gemm(buf.ctx, w.attn_out_kernel, buf.tmp, H, H, Epilogue::kNone, nullptr, &supported));
    mark("attn_out_gemm");
    FB_CUDA("AddBiasResidualLayerNorm",
            AddBiasResidualLayerNorm(dtype, buf.tmp, w.attn_out_bias, layer_in, w.attn_ln_gamma, w.attn_ln_beta,
                                     d.layer_norm_eps, rows, H, DeviceAddress{buf.x1, nullptr}, nullptr, S, stream));
    mark("layernorm");
    // Google BERT's tanh GELU is cuBLASLt's GELU epilogue; the erf form gets its own pass.
    bool fused = false;
    if (d.activation == Activation::kGeluTanh) {
      FB_OK(gemm(buf.x1, w.inter_kernel, buf.inter, I, H, Epilogue::kGeluTanhBias, w.inter_bias, &fused));
    }
    if (!fused) {
      FB_OK(gemm(buf.x1, w.inter_kernel, buf.inter, I, H, Epilogue::kNone, nullptr, &supported));
      mark("inter_gemm");
      FB_CUDA("AddBiasActivation", AddBiasActivation(dtype, buf.inter, w.inter_bias, d.activation, rows, I, stream));
      mark("activation");
    } else {
      mark("inter_gemm");
    }
    FB_OK(gemm(buf.inter, w.out_kernel, buf.tmp, H, I, Epilogue::kNone, nullptr, &supported));
    mark("out_gemm");
    // Padded mode: the last LayerNorm writes zeros in the padding, so no extra pass is needed.
    const bool zero_pad = !d.remove_padding && last;
    FB_CUDA("AddBiasResidualLayerNorm",
            AddBiasResidualLayerNorm(dtype, buf.tmp, w.out_bias, DeviceAddress{buf.x1, nullptr}, w.out_ln_gamma,
                                     w.out_ln_beta, d.layer_norm_eps, rows, H, layer_out,
                                     zero_pad ? buf.seq_len : nullptr, S, stream));
    mark("layernorm");
  }
  if (d.remove_padding) {
    FB_CUDA("UnpackRows", UnpackRows(buf.x, buf.cu_seqlens, B, S, int64_t{H} * es, output, stream));
    mark("unpack");
  }
  return Status::Ok();
}

// Captures Enqueue on the context's private stream into *graph.
Status Capture(GpuContext* ctx, const Call& c, cudaGraph_t* graph) {
  auto* blas = static_cast<cublasHandle_t>(ctx->blas());
  cudaStream_t cap = ctx->capture_stream();
  FB_BLAS("cublasSetStream", cublasSetStream(blas, cap));
  cudaError_t err = cudaStreamBeginCapture(cap, cudaStreamCaptureModeThreadLocal);
  Status st = err == cudaSuccess ? Enqueue(ctx, c, cap, nullptr) : CudaError("cudaStreamBeginCapture", err);
  *graph = nullptr;
  if (err == cudaSuccess) {
    const cudaError_t end = cudaStreamEndCapture(cap, graph);
    if (st.ok() && end != cudaSuccess) st = CudaError("cudaStreamEndCapture", end);
  }
  cublasSetStream(blas, ctx->stream());
  if (!st.ok() && *graph) {
    cudaGraphDestroy(*graph);
    *graph = nullptr;
  }
  return st;
}

// FASTBERT_STAGE_TIMES=1: every call launches directly with an event after each stage, waits, and
// adds the stage times up per (dims, dtype, mode) key; the totals go to stderr at exit (a
// per-stage kernel-time breakdown without a profiler; it serializes the host with the device, so
// it is for breakdowns only, never for timing whole calls).
class EventStageTimer : public StageTimer {
 public:
  void Mark(const char* stage, cudaStream_t stream) override {
    cudaEvent_t e;
    if (cudaEventCreate(&e) != cudaSuccess) return;
    cudaEventRecord(e, stream);
    marks_.push_back({stage, e});
  }
  // Waits for the call, then adds its stage times to the report of `key`.
  void Finish(cudaStream_t stream, cudaEvent_t start, const std::string& key) {
    cudaEventSynchronize(marks_.empty() ? start : marks_.back().second);
    cudaEvent_t prev = start;
    auto& totals = Report()[key];
    for (const auto& m : marks_) {
      float ms = 0.0f;
      cudaEventElapsedTime(&ms, prev, m.second);
      auto& t = totals[m.first];
      t.first += ms;
      t.second += 1;
      prev = m.second;
    }
    totals["(calls)"].second += 1;
    for (const auto& m : marks_) cudaEventDestroy(m.second);
    marks_.clear();
  }
  static bool Enabled() {
    static const bool on = [] {
      const char* env = std::getenv("FASTBERT_STAGE_TIMES");
      if (env == nullptr || std::strcmp(env, "1") != 0) return false;
      std::atexit(Print);
      return true;
    }();
    return on;
  }

 private:
  using Totals = std::map<std::string, std::pair<double, int64_t>>;  // stage -> (ms, marks)
  static std::map<std::string, Totals>& Report() {
    static auto* r = new std::map<std::string, Totals>();
    return *r;
  }
  static void Print() {
    for (const auto& [key, totals] : Report()) {
      const int64_t calls = std::max<int64_t>(1, totals.at("(calls)").second);
      double all = 0.0;
      for (const auto& [stage, t] : totals) all += t.first;
      std::fprintf(stderr, "fastbert stage times %s: %lld calls, %.3f ms per call\n", key.c_str(),
                   static_cast<long long>(calls), all / calls);
      for (const auto& [stage, t] : totals) {
        if (stage == "(calls)") continue;
        std::fprintf(stderr, "  %-16s %8.3f ms per call  %5.1f%%\n", stage.c_str(), t.first / calls,
                     100.0 * t.first / all);
      }
    }
  }
  std::vector<std::pair<const char*, cudaEvent_t>> marks_;
};

int64_t FloatBits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return bits;
}

}  // namespace

int64_t EncoderRows(const EncoderDims& d, int64_t tokens) {
  const int64_t capacity = int64_t{d.batch} * d.seq_len;
  return d.remove_padding ? RowBucket(tokens, capacity) : capacity;
}

size_t EncoderScratchBytes(const EncoderDims& dims, int64_t rows, DType dtype) {
  return Carve(dims, rows, dtype, nullptr).total_bytes;
}

Status RunEncoder(GpuContext* ctx, const EncoderDims& dims, DType dtype, const int32_t* seq_len, const void* input,
                  const std::vector<LayerWeights<void, void>>& layers, void* output, StageTimer* timer) {
  std::lock_guard<std::mutex> lock(ctx->mu);
  cudaStream_t stream = ctx->stream();
  FB_CUDA("cudaSetDevice", cudaSetDevice(ctx->device()));
  if (dims.int8_mode != 0) FB_OK(Int8Supported(ctx->device(), dims, dtype));
  EncoderDims d = dims;
  const int B = d.batch, S = d.seq_len, H = d.hidden;
  const size_t es = ElementSize(dtype);
  std::vector<int32_t> cu(B + 1);
  const int64_t tokens = PrefixSums(seq_len, B, cu.data());
  if (tokens == 0) {
    FB_CUDA("cudaMemsetAsync", cudaMemsetAsync(output, 0, size_t(B) * S * H * es, stream));
    return Status::Ok();
  }
  Call c;
  c.d = &d;
  c.dtype = dtype;
  c.input = input;
  c.output = output;
  c.layers = &layers;
  c.rows = EncoderRows(d, tokens);
  // A bucket of all B * S rows saves nothing: the padded sequence does the same GEMMs without the
  // packing passes (measured +2-6% at B=1 S=32/128 when packing anyway), with the same results.
  if (d.remove_padding && c.rows == int64_t{B} * S) d.remove_padding = false;
  void* base = nullptr;
  uint64_t generation = 0;
  FB_OK(ctx->Scratch(EncoderScratchBytes(d, c.rows, dtype), &base, &generation));
  c.buf = Carve(d, c.rows, dtype, base);
  const Buffers& buf = c.buf;
  const size_t plane = static_cast<size_t>(c.rows) * H * es;
  char* qkv = static_cast<char*>(buf.qkv);

  // The one upload of the call (outside any graph): lengths, offsets, tensor addresses and the
  // QKV pointer tables.
  std::vector<char> staging(buf.staging_bytes);
  auto at = [&](const void* dev) { return staging.data() + (static_cast<const char*>(dev) - static_cast<char*>(base)); };
  std::memcpy(at(buf.seq_len), seq_len, sizeof(int32_t) * B);
  std::memcpy(at(buf.cu_seqlens), cu.data(), sizeof(int32_t) * (B + 1));
  const void* io[2] = {input, output};
  std::memcpy(at(buf.io), io, sizeof(io));
  const void** ptrs = reinterpret_cast<const void**>(at(buf.qkv_ptrs));
  for (int l = 0; l < d.num_layer; ++l) {
    const void* in = !d.remove_padding && l == 0 ? input : buf.x;
    const void* p[9] = {layers[l].q_kernel, layers[l].k_kernel, layers[l].v_kernel, in, in, in,
                        qkv, qkv + plane, qkv + 2 * plane};
    std::copy(p, p + 9, ptrs + 9 * l);
  }
  FB_OK(ctx->Upload(staging.data(), staging.size(), base));

  if (timer == nullptr && EventStageTimer::Enabled()) {
    EventStageTimer stages;
    cudaEvent_t start;
    FB_CUDA("cudaEventCreate", cudaEventCreate(&start));
    FB_CUDA("cudaEventRecord", cudaEventRecord(start, stream));
    const Status st = Enqueue(ctx, c, stream, &stages);
    char key[160];
    std::snprintf(key, sizeof(key), "B=%d S=%d H=%d L=%d dtype=%d int8_mode=%d rows=%lld rp=%d tf32=%d", B, S, H,
                  d.num_layer, static_cast<int>(dtype), d.int8_mode, static_cast<long long>(c.rows), d.remove_padding ? 1 : 0,
                  d.tf32 ? 1 : 0);
    if (st.ok()) stages.Finish(stream, start, key);
    cudaEventDestroy(start);
    return st;
  }
  if (timer != nullptr || !GraphsEnabled()) return Enqueue(ctx, c, stream, timer);
  // The kernels choose their vector widths from the tensors' alignment at capture time.
  const bool aligned = ((reinterpret_cast<uintptr_t>(input) | reinterpret_cast<uintptr_t>(output)) % 16) == 0;
  const GraphCache::Key key = {B, S, d.head_num, d.size_per_head, d.inter_size, d.num_layer, d.remove_padding,
                               static_cast<int>(d.activation), FloatBits(d.layer_norm_eps), FloatBits(d.q_scaling),
                               static_cast<int>(dtype), c.rows, aligned, d.int8_mode, d.tf32};
  GraphCache::Addresses addresses = {reinterpret_cast<const void*>(static_cast<uintptr_t>(generation)), base};
  for (const auto& w : layers) {
    w.ForEach([&](int, const void* p) { addresses.push_back(p); });
    addresses.push_back(w.quant);
  }
  return ctx->graphs()->Run(
      key, addresses, [&](cudaGraph_t* graph) { return Capture(ctx, c, graph); },
      [&] { return Enqueue(ctx, c, stream, nullptr); }, stream);
}

Status TransposeInt8OnStream(GpuContext* ctx, const int8_t* src, int64_t rows, int64_t cols, int8_t* dst) {
  std::lock_guard<std::mutex> lock(ctx->mu);
  FB_CUDA("cudaSetDevice", cudaSetDevice(ctx->device()));
  FB_CUDA("TransposeInt8", TransposeInt8(src, rows, cols, dst, ctx->stream()));
  return Status::Ok();
}

Status DownloadToHost(GpuContext* ctx, const void* dev, size_t bytes, void* host) {
  std::lock_guard<std::mutex> lock(ctx->mu);
  FB_CUDA("cudaSetDevice", cudaSetDevice(ctx->device()));
  FB_CUDA("cudaMemcpyAsync", cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, ctx->stream()));
  FB_CUDA("cudaStreamSynchronize", cudaStreamSynchronize(ctx->stream()));
  return Status::Ok();
}

size_t PaddingWorkspaceBytes(int batch) { return AlignUp(sizeof(int32_t) * (batch + 1)); }

Status RemovePadding(GpuContext* ctx, const void* padded, const int32_t* cu, int batch, int seq_len,
                     int64_t row_bytes, void* packed, Workspace ws) {
  std::lock_guard<std::mutex> lock(ctx->mu);
  FB_CUDA("cudaSetDevice", cudaSetDevice(ctx->device()));
  auto* dev_cu = static_cast<int32_t*>(ws.ptr);
  FB_OK(ctx->Upload(cu, sizeof(int32_t) * (batch + 1), dev_cu));
  FB_CUDA("PackRows", PackRows(DeviceAddress{padded, nullptr}, dev_cu, batch, seq_len, cu[batch], row_bytes, packed,
                               ctx->stream()));
  return Status::Ok();
}

Status RebuildPadding(GpuContext* ctx, const void* packed, const int32_t* cu, int batch, int seq_len,
                      int64_t row_bytes, void* padded, Workspace ws) {
  std::lock_guard<std::mutex> lock(ctx->mu);
  FB_CUDA("cudaSetDevice", cudaSetDevice(ctx->device()));
  auto* dev_cu = static_cast<int32_t*>(ws.ptr);
  FB_OK(ctx->Upload(cu, sizeof(int32_t) * (batch + 1), dev_cu));
  FB_CUDA("UnpackRows", UnpackRows(packed, dev_cu, batch, seq_len, row_bytes, DeviceAddress{padded, nullptr},
                                   ctx->stream()));
  return Status::Ok();
}

}  // namespace cuda
}  // namespace fastbert
