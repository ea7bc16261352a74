// Status and error checks of the CUDA runner (host code; no TensorFlow, no cuBLAS headers).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

namespace fastbert {
namespace cuda {

// Empty message = success.
struct Status {
  std::string message;
  bool ok() const { return message.empty(); }
  static Status Ok() { return Status{}; }
};

inline Status CudaError(const char* what, cudaError_t err) {
  return Status{std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err)};
}
inline Status BlasError(const char* what, int code) {
  return Status{std::string("cuBLAS error in ") + what + ": status " + std::to_string(code)};
}

}  // namespace cuda
}  // namespace fastbert

#define FB_CUDA(what, expr)                                                           \
  do {                                                                                \
    const cudaError_t err_ = (expr);                                                  \
    if (err_ != cudaSuccess) return ::fastbert::cuda::CudaError(what, err_);          \
  } while (0)
// cuBLAS and cuBLASLt calls: CUBLAS_STATUS_SUCCESS is 0.
#define FB_BLAS(what, expr)                                                           \
  do {                                                                                \
    const int st_ = static_cast<int>(expr);                                           \
    if (st_ != 0) return ::fastbert::cuda::BlasError(what, st_);                      \
  } while (0)
#define FB_OK(expr)                    \
  do {                                 \
    ::fastbert::cuda::Status st_ = (expr); \
    if (!st_.ok()) return st_;         \
  } while (0)
