// Single-precision GEMM for the CPU encoder: C[M, N] = A[M, K] * B[K, N], all row-major.
// B may be float, Eigen::half or Eigen::bfloat16 (widened while packed). With AVX2+FMA this is a
// packed GEMM spread over the pool, on the best kernel the CPU has (GemmIsa): AMX tiles on operands
// split into three bf16 parts (fp32-level results), or BLIS-style FMA micro-kernels (12x32 with
// AVX-512, 6x16 with AVX2); otherwise an Eigen contraction.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace Eigen {
class ThreadPoolDevice;
}

namespace fastbert {
namespace cpu {

// Which micro-kernel the GEMMs use on this CPU.
enum class CpuIsa { kEigen, kAvx2, kAvx512, kAmx };
CpuIsa GemmIsa();

// A weight matrix B[k, n] split and packed once for the kernel in use, for GEMMs of later calls
// (the AMX kernel's packing is ~11% of a BERT-base pass when done per call).
struct PackedWeight;
// Whether the kernel in use takes PackedWeights (the FMA kernels pack B per call: a plain copy).
bool GemmPrepacksWeights();
template <typename Tb>
std::shared_ptr<const PackedWeight> PackWeight(const Eigen::ThreadPoolDevice& d, int64_t k, int64_t n, const Tb* b,
                                               int64_t ldb);

// Called once per finished block of C (product, rows [m0, m1), columns [n0, n1)), on the thread
// that computed it, to fuse an elementwise pass while the block is in cache.
using BlockEpilogue = std::function<void(int product, int64_t m0, int64_t m1, int64_t n0, int64_t n1)>;

// packed, when given, is B as PackWeight(k, n, b) made it; b is then not read.
template <typename Tb>
void Sgemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const Tb* b, int64_t ldb, float* c, int64_t ldc, const BlockEpilogue& epilogue = {},
           const PackedWeight* packed = nullptr);

// count products sharing A, which is packed once: C[p][m, n] = A[m, k] * B[p][k, n]. packed, when
// given, has count entries, each null or B[p] packed by PackWeight.
template <typename Tb>
void SgemmShared(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const Tb* const* b, int64_t ldb, float* const* c, int64_t ldc, int count,
                 const BlockEpilogue& epilogue = {}, const PackedWeight* const* packed = nullptr);

// The same on the calling thread alone, for the small products of a task inside a parallel loop
// (attention): C[m, n] = A[m, k] * B[k, n], or * Bt[n, k]^T when b_transposed (row stride ldb).
void SgemmSerial(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 bool b_transposed, float* c, int64_t ldc);

}  // namespace cpu
}  // namespace fastbert
