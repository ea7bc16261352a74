// The GPU encoder: cuBLAS(Lt) GEMMs and the kernels of kernels.h, enqueued on one stream.
// No TensorFlow here: the op glue hands in device pointers, a workspace and the stream.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tf_ops/common/encoder_params.h"
#include "tf_ops/cuda/kernels.h"

namespace fastbert {
namespace cuda {

// Empty message = success.
struct Status {
  std::string message;
  bool ok() const { return message.empty(); }
  static Status Ok() { return Status{}; }
};

struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
};

// Optional per-stage hook (the kernel-time breakdown): Mark(name) is called after each stage is
// enqueued, on the runner's stream.
class StageTimer {
 public:
  virtual ~StageTimer() = default;
  virtual void Mark(const char* stage, cudaStream_t stream) = 0;
};

class GemmCache;
class GraphCache;

// Per (device, stream) state, made once and kept for the process: cuBLAS and cuBLASLt handles
// bound to the stream, the GEMM plans chosen so far, and pinned buffers for the one small upload
// each call makes. Calls on one stream are serialized by mu.
class GpuContext {
 public:
  static Status Get(int device, cudaStream_t stream, GpuContext** out);
  ~GpuContext();

  std::mutex mu;
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  void* blas() const { return blas_; }
  void* blas_lt() const { return blas_lt_; }
  GemmCache* gemms() const { return gemms_.get(); }
  GraphCache* graphs() const { return graphs_.get(); }
  cudaStream_t capture_stream() const { return capture_stream_; }

  // Copies host bytes to device memory through a pinned buffer, asynchronously on the stream.
  // A pinned buffer is reused only once the GPU has consumed its earlier copy.
  Status Upload(const void* host, size_t bytes, void* device_dst);

 private:
  GpuContext(int device, cudaStream_t stream);
  struct PinnedSlot {
    void* ptr = nullptr;
    size_t capacity = 0;
    cudaEvent_t done = nullptr;
    bool pending = false;
  };
  static constexpr int kSlots = 8;
  int device_;
  cudaStream_t stream_;
  void* blas_ = nullptr;     // cublasHandle_t
  void* blas_lt_ = nullptr;  // cublasLtHandle_t
  std::unique_ptr<GemmCache> gemms_;
  std::unique_ptr<GraphCache> graphs_;
  cudaStream_t capture_stream_ = nullptr;  // private: captures never see TF's other work
  PinnedSlot slots_[kSlots];
  int next_slot_ = 0;
};

// Bytes of device scratch RunEncoder needs for `tokens` packed rows (B*S when not packing).
size_t EncoderWorkspaceBytes(const EncoderDims& dims, int64_t tokens, DType dtype);

// One FastBertEncoder call. seq_len is on the host (validated by the caller); input, output and
// the weights (LayerWeights<void, void>: device pointers of dtype) on the device.
// From the second call of the same shape on, the layers are replayed as one CUDA graph (captured
// on a private stream, re-pointed with cudaGraphExecUpdate when buffers move), which removes the
// host cost of ~8 launches per layer; FASTBERT_CUDA_GRAPHS=0 turns this off.
Status RunEncoder(GpuContext* ctx, const EncoderDims& dims, DType dtype, const int32_t* seq_len, const void* input,
                  const std::vector<LayerWeights<void, void>>& layers, void* output, Workspace ws,
                  StageTimer* timer = nullptr);

// RemovePadding / RebuildPadding with host cu_seqlens (validated by the caller); ws holds
// at least PaddingWorkspaceBytes(batch) bytes.
size_t PaddingWorkspaceBytes(int batch);
Status RemovePadding(GpuContext* ctx, const void* padded, const int32_t* cu_seqlens, int batch, int seq_len,
                     int64_t row_bytes, void* packed, Workspace ws);
Status RebuildPadding(GpuContext* ctx, const void* packed, const int32_t* cu_seqlens, int batch, int seq_len,
                      int64_t row_bytes, void* padded, Workspace ws);

}  // namespace cuda
}  // namespace fastbert
