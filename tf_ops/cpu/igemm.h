// Exact integer GEMM for the CPU INT8 encoder: C[M, N] (int32) = A[M, K] (int8) * B[K, N] (int8),
// row-major. |C| stays below 2^31 for K < 133,000. With AVX2, pairs of k are multiplied and added
// by pmaddwd into a 6x16 tile of int32 accumulators (both operands packed once per call, blocks of C
// spread over the pool); otherwise plain loops.
#pragma once

#include <cstdint>

namespace Eigen {
class ThreadPoolDevice;
}

namespace fastbert {
namespace cpu {

void Igemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const int8_t* a, const int8_t* b,
           int32_t* c);

}  // namespace cpu
}  // namespace fastbert
