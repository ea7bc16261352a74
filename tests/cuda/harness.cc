// C entry points to the CUDA runner without TensorFlow, for tests/cuda/check_runner.py: checks the
// GPU kernels against saved fb.reference outputs and times each stage with CUDA events.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "tf_ops/cuda/encoder_runner.h"

using fastbert::EncoderDims;
using fastbert::LayerWeights;
namespace fc = fastbert::cuda;

namespace {

// Events after every stage; per-stage milliseconds summed over layers and calls.
class EventTimer : public fc::StageTimer {
 public:
  void Mark(const char* stage, cudaStream_t stream) override {
    cudaEvent_t e;
    cudaEventCreate(&e);
    cudaEventRecord(e, stream);
    marks_.push_back({stage, e});
  }
  void Begin(cudaStream_t stream) { Mark("begin", stream); }
  void Collect(std::map<std::string, double>* ms) {
    cudaEventSynchronize(marks_.back().second);
    for (size_t i = 1; i < marks_.size(); ++i) {
      float t = 0;
      cudaEventElapsedTime(&t, marks_[i - 1].second, marks_[i].second);
      (*ms)[marks_[i].first] += t;
    }
    for (auto& m : marks_) cudaEventDestroy(m.second);
    marks_.clear();
  }

 private:
  std::vector<std::pair<std::string, cudaEvent_t>> marks_;
};

// The harness's scratch: plain cudaMalloc (cudaFree waits for the device, so nothing in flight
// loses its memory).
class CudaMallocMemory : public fc::DeviceMemory {
 public:
  void* Allocate(size_t bytes) override {
    void* p = nullptr;
    return cudaMalloc(&p, bytes) == cudaSuccess ? p : nullptr;
  }
  void Free(void* p) override { cudaFree(p); }
};

fc::Status Context(void* stream, fc::GpuContext** ctx) {
  static CudaMallocMemory memory;
  int device = 0;
  cudaGetDevice(&device);
  return fc::GpuContext::Get(device, static_cast<cudaStream_t>(stream), &memory, ctx);
}

int Fail(const std::string& msg, char* err, int err_len) {
  std::snprintf(err, err_len, "%s", msg.c_str());
  return 1;
}

EncoderDims Dims(int b, int s, int nh, int d, int inter, int layers, int rp, int act, float eps, float qs) {
  EncoderDims dims;
  dims.batch = b;
  dims.seq_len = s;
  dims.head_num = nh;
  dims.size_per_head = d;
  dims.hidden = nh * d;
  dims.inter_size = inter;
  dims.num_layer = layers;
  dims.remove_padding = rp != 0;
  dims.activation = act ? fastbert::Activation::kGeluErf : fastbert::Activation::kGeluTanh;
  dims.layer_norm_eps = eps;
  dims.q_scaling = qs;
  return dims;
}

}  // namespace

#define FB_EXPORT __attribute__((visibility("default")))

extern "C" {

// weights: layers * kNumWeights device pointers in the op's input order (layer_weights.def;
// fastbert_tf.weights.LAYER_WEIGHTS).
// stage_names/stage_ms (may be null): filled with up to max_stages per-stage times of this call.
FB_EXPORT int fb_run_encoder(int dtype, int b, int s, int nh, int d, int inter, int layers, int rp, int act, float eps,
                   float q_scaling, const int32_t* lens, const void* input, const void* const* weights,
                   void* output, void* stream, int iterations, int sync, char* stage_names, double* stage_ms,
                   int max_stages, char* err, int err_len) {
  EncoderDims dims = Dims(b, s, nh, d, inter, layers, rp, act, eps, q_scaling);
  fc::GpuContext* ctx = nullptr;
  fc::Status st = Context(stream, &ctx);
  if (!st.ok()) return Fail(st.message, err, err_len);
  std::vector<LayerWeights<void, void>> lw(layers);
  for (int l = 0; l < layers; ++l) {
    lw[l].ForEach([&](int i, const void*& field) { field = weights[fastbert::kNumWeights * l + i]; });
  }
  EventTimer timer;
  std::map<std::string, double> ms;
  for (int it = 0; it < iterations; ++it) {
    if (stage_ms) timer.Begin(static_cast<cudaStream_t>(stream));
    st = fc::RunEncoder(ctx, dims, static_cast<fc::DType>(dtype), lens, input, lw, output,
                        stage_ms ? &timer : nullptr);
    if (!st.ok()) return Fail(st.message, err, err_len);
    if (stage_ms) timer.Collect(&ms);
  }
  if (!sync) return 0;  // back-to-back calls (serving-loop timing): the caller synchronizes
  const cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) return Fail(std::string("after the encoder: ") + cudaGetErrorString(e), err, err_len);
  if (stage_ms) {
    int i = 0;
    for (auto& kv : ms) {
      if (i >= max_stages) break;
      std::snprintf(stage_names + 32 * i, 32, "%s", kv.first.c_str());
      stage_ms[i++] = kv.second / iterations;
    }
    if (i < max_stages) stage_names[32 * i] = 0;
  }
  return 0;
}

FB_EXPORT int fb_padding(int pack, const void* src, const int32_t* cu, int b, int s, int64_t row_bytes, void* dst,
               void* workspace, void* stream, char* err, int err_len) {
  fc::GpuContext* ctx = nullptr;
  fc::Status st = Context(stream, &ctx);
  if (!st.ok()) return Fail(st.message, err, err_len);
  fc::Workspace ws{workspace, fc::PaddingWorkspaceBytes(b)};
  st = pack ? fc::RemovePadding(ctx, src, cu, b, s, row_bytes, dst, ws)
            : fc::RebuildPadding(ctx, src, cu, b, s, row_bytes, dst, ws);
  if (!st.ok()) return Fail(st.message, err, err_len);
  const cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? 0 : Fail(cudaGetErrorString(e), err, err_len);
}

// The runner's caches (GpuContext::StatsJson); returns the bytes the whole text needs.
FB_EXPORT int fb_cache_stats(char* buf, int len) {
  const std::string json = fc::GpuContext::StatsJson();
  std::snprintf(buf, len, "%s", json.c_str());
  return static_cast<int>(json.size() + 1);
}

}  // extern "C"
