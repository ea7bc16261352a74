// The scratch layout and the per-call state of the GPU encoder, shared by the float layers
// (encoder_runner.cc) and the int8 layers (encoder_int8.cc). Internal to tf_ops/cuda.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tf_ops/common/encoder_params.h"
#include "tf_ops/cuda/cuda_status.h"
#include "tf_ops/cuda/gpu_context.h"
#include "tf_ops/cuda/kernels.h"

namespace fastbert {
namespace cuda {

class StageTimer;

inline size_t ElementSize(DType t) { return t == DType::kFloat32 ? 4 : 2; }

constexpr size_t kAlign = 256;
inline size_t AlignUp(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }
constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;  // what cuBLASLt's Hopper kernels ask for at most
constexpr size_t kBlasWorkspaceBytes = size_t{4} << 20;
constexpr size_t kInt8GemmWorkspaceBytes = size_t{1} << 20;  // the CUTLASS tile scheduler's (a few KB)

// Carves the scratch in a fixed order; on a null base it only adds up the sizes.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  void* Take(size_t bytes) {
    void* p = base_ ? base_ + offset_ : nullptr;
    offset_ += AlignUp(bytes);
    return p;
  }
  size_t used() const { return offset_; }

 private:
  char* base_;
  size_t offset_ = 0;
};

struct Buffers {
  // Uploaded from the host every call (the leading staging_bytes): what differs between calls
  // that replay one graph.
  int32_t* seq_len = nullptr;       // [B]
  int32_t* cu_seqlens = nullptr;    // [B + 1]
  const void** io = nullptr;        // [0] the input tensor, [1] the output tensor
  const void** qkv_ptrs = nullptr;  // per layer: 3 weight, 3 input, 3 output pointers (cublasGemmBatchedEx)
  size_t staging_bytes = 0;
  void* x = nullptr;    // [rows, H]: layer input/output
  void* qkv = nullptr;  // [3][rows][H]
  void* x1 = nullptr;
  // Float modes only:
  void* ctx = nullptr;
  void* tmp = nullptr;
  void* inter = nullptr;
  void* lt_ws = nullptr;
  void* blas_ws = nullptr;  // cuBLAS's own workspace, given explicitly so that captures allocate nothing
  // Int8 modes only: the GEMMs' int8 inputs and int32 results.
  int8_t* x8 = nullptr;      // [rows, H] the layer input (mode 2: also the attention residual)
  int8_t* ctx8 = nullptr;    // [rows, H] attention output
  int8_t* x1_8 = nullptr;    // [rows, H] the feed-forward input (mode 2: also its residual)
  int8_t* inter8 = nullptr;  // [rows, I]
  int32_t* acc = nullptr;    // [rows, max(3H, I)]
  void* gemm_ws = nullptr;   // kInt8GemmWorkspaceBytes
  float* alpha = nullptr;    // mode 1, float16: one layer's Mode1Vectors (int8_kernels.h)
  void* bias_qkv = nullptr;
  size_t total_bytes = 0;
};

Buffers Carve(const EncoderDims& d, int64_t rows, DType dtype, void* base);

// Everything the layers need, fixed before they are enqueued (or captured).
struct Call {
  const EncoderDims* d;
  DType dtype;
  const void* input;  // this call's tensors: kernels read them from buf.io
  void* output;
  const std::vector<LayerWeights<void, void>>* layers;
  Buffers buf;
  int64_t rows;
};

// The int8 modes' whole encoder on `stream` (encoder_int8.cc).
Status EnqueueInt8(GpuContext* ctx, const Call& c, cudaStream_t stream, StageTimer* timer);

}  // namespace cuda
}  // namespace fastbert
