// Single-precision GEMM for the CPU encoder: C[M, N] = A[M, K] * B[K, N], all row-major.
// B may be float, Eigen::half or Eigen::bfloat16 (widened while packed). With AVX2+FMA this is a
// BLIS-style packed GEMM (6x16 register tile) spread over the pool; otherwise an Eigen contraction.
#pragma once

#include <cstdint>

namespace Eigen {
class ThreadPoolDevice;
}

namespace fastbert {
namespace cpu {

template <typename Tb>
void Sgemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const Tb* b, int64_t ldb, float* c, int64_t ldc);

}  // namespace cpu
}  // namespace fastbert
