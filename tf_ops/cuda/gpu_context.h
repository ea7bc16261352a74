// Per (device, stream) state of the CUDA runner, made once and kept for the process: cuBLAS and
// cuBLASLt handles bound to the stream, the GEMM plans and CUDA graphs chosen so far, the encoder's
// device scratch, and pinned buffers for the one small upload each call makes. Calls on one
// stream are serialized by mu (the GPU runs them in stream order).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "tf_ops/cuda/cuda_status.h"

namespace fastbert {
namespace cuda {

class GemmPlans;
class GraphCache;

// Where the runner's device scratch comes from: TensorFlow's allocator in the op (memory TF
// hands out again only to work ordered after ours on the same stream), cudaMalloc in the TF-free
// harness.
class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  virtual void* Allocate(size_t bytes) = 0;  // nullptr when there is not enough
  virtual void Free(void* p) = 0;
};

class GpuContext {
 public:
  // The context of (device, stream); the first call for it makes it, with `memory` (which must
  // outlive the process's use of the GPU).
  static Status Get(int device, cudaStream_t stream, DeviceMemory* memory, GpuContext** out);
  // Every context's cache sizes, bounds and counters, as one JSON array (fastbert_gpu_cache_stats).
  static std::string StatsJson();
  ~GpuContext();

  std::mutex mu;
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  void* blas() const { return blas_; }
  void* blas_lt() const { return blas_lt_; }
  GemmPlans* gemms() const { return gemms_.get(); }
  GraphCache* graphs() const { return graphs_.get(); }
  cudaStream_t capture_stream() const { return capture_stream_; }

  // The encoder's scratch, one device buffer reused by every call so that captured graphs see
  // fixed addresses: at least `bytes` at *base. *generation changes whenever the buffer is
  // replaced. Bound: it grows to the largest need (plus a quarter, so that rising sizes do not
  // reallocate every call) and, every kScratchWindow calls, shrinks to the largest need of those
  // calls if that is under half its size.
  Status Scratch(size_t bytes, void** base, uint64_t* generation);

  // Copies host bytes to device memory through a pinned buffer, asynchronously on the stream.
  // A pinned buffer is reused once the GPU has consumed its earlier copy (kSlots calls ago: the
  // host waits only when it runs that far ahead of the GPU). Bound: kSlots buffers, each at most
  // twice the largest recent upload (one over 64 KB and 8 times the request is reallocated).
  Status Upload(const void* host, size_t bytes, void* device_dst);

 private:
  GpuContext(int device, cudaStream_t stream, DeviceMemory* memory);
  std::string Json() const;

  struct PinnedSlot {
    void* ptr = nullptr;
    size_t capacity = 0;
    cudaEvent_t done = nullptr;
    bool pending = false;
  };
  static constexpr int kSlots = 16;
  static constexpr int64_t kScratchWindow = 1000;
  int device_;
  cudaStream_t stream_;
  DeviceMemory* memory_;
  void* blas_ = nullptr;     // cublasHandle_t
  void* blas_lt_ = nullptr;  // cublasLtHandle_t
  std::unique_ptr<GemmPlans> gemms_;
  std::unique_ptr<GraphCache> graphs_;
  cudaStream_t capture_stream_ = nullptr;  // private: captures never see TF's other work
  PinnedSlot slots_[kSlots];
  int next_slot_ = 0;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0, window_max_ = 0;
  int64_t scratch_calls_ = 0, scratch_reallocs_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace cuda
}  // namespace fastbert
