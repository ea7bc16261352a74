// cuBLASLt GEMM plans (descriptors, layouts and the heuristic's algorithm) by shape, chosen once
// and kept: a plan costs a heuristic query (tens of microseconds) that no steady call should pay.
#pragma once

#include <cublasLt.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <tuple>

#include "tf_ops/cuda/cuda_status.h"
#include "tf_ops/cuda/kernels.h"

namespace fastbert {
namespace cuda {

// The cuBLAS element type of dtype (the GEMM plans' and the batched QKV GEMM's).
inline cudaDataType_t CudaType(DType t) {
  return t == DType::kFloat32 ? CUDA_R_32F : t == DType::kFloat16 ? CUDA_R_16F : CUDA_R_16BF;
}

// The compute type of a GEMM over dtype: float32 accumulation, float32 inputs as TF32 when tf32.
inline cublasComputeType_t ComputeType(DType t, bool tf32) {
  return t == DType::kFloat32 && tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

enum class Epilogue { kNone = 0, kBias = 1, kGeluTanhBias = 2 };

// C[m, n] = A[m, k] * W[k, n] (+ epilogue), row-major; in cuBLAS's column-major terms
// C^T = W^T A^T, so W is cuBLASLt's "A" operand and the activations its "B".
// Bound: kMaxPlans plans; a new one beyond that evicts the least recently used. With row buckets
// (row_buckets.h) a model needs 3-4 plans per bucket, so this holds ~250 buckets.
class GemmPlans {
 public:
  static constexpr size_t kMaxPlans = 1024;

  explicit GemmPlans(cublasLtHandle_t lt) : lt_(lt) {}
  ~GemmPlans();
  GemmPlans(const GemmPlans&) = delete;
  GemmPlans& operator=(const GemmPlans&) = delete;

  // *supported = false when cuBLASLt offers no algorithm for this epilogue (the caller then runs
  // a plain GEMM and its own epilogue kernel).
  // tf32: float32 GEMMs round their inputs to TF32 (ignored for 16-bit types).
  Status Run(DType dtype, bool tf32, int64_t m, int64_t n, int64_t k, const void* a, const void* w, void* c,
             Epilogue epilogue, const void* bias, void* ws, size_t ws_bytes, cudaStream_t stream,
             bool* supported);

  size_t size() const { return plans_.size(); }
  int64_t created() const { return created_; }
  int64_t evicted() const { return evicted_; }

 private:
  using Key = std::tuple<int64_t, int64_t, int64_t, int, int, size_t>;  // m, n, k, compute, epilogue, ws
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t w = nullptr, a = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo;
    bool has_algo = false;
    std::list<Key>::iterator lru;
  };
  Status Create(DType dtype, bool tf32, int64_t m, int64_t n, int64_t k, Epilogue epilogue, size_t ws_bytes, Plan* plan);
  static void Destroy(Plan& p);

  cublasLtHandle_t lt_;
  std::map<Key, Plan> plans_;
  std::list<Key> lru_;  // most recently used first
  int64_t created_ = 0, evicted_ = 0;
};

}  // namespace cuda
}  // namespace fastbert
