// Exact integer GEMM for the CPU INT8 encoder: C[M, N] (int32) = A[M, K] (int8) * B[K, N] (int8),
// row-major. |C| (and VNNI's a + 128 sums) stay below 2^31 for K < 65,000. The kernel is the best the CPU has (IgemmIsa):
// AMX-INT8 tiles (tdpbssd, 32x32 blocks of C), AVX512-VNNI (vpdpbusd on a + 128 with the column
// sums of B taken back out, 12x32), AVX2 (pmaddwd on pairs of k, 6x16); both operands packed per
// call, blocks of C spread over the pool. Without AVX2, plain loops.
#pragma once

#include <cstdint>

namespace Eigen {
class ThreadPoolDevice;
}

namespace fastbert {
namespace cpu {

enum class IgemmKernel { kScalar, kAvx2, kAvx512Vnni, kAmxInt8 };
IgemmKernel IgemmIsa();

void Igemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const int8_t* a, const int8_t* b,
           int32_t* c);

}  // namespace cpu
}  // namespace fastbert
