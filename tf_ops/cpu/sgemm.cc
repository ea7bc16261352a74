// The CPU GEMMs: the kernel chosen at run time (GemmIsa), the entry points of sgemm.h, and the
// Eigen fallback for CPUs without AVX2. The kernels are in sgemm_{fma,avx2,avx512,amx}.h.
#define EIGEN_USE_THREADS

#include "tf_ops/cpu/sgemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "Eigen/Core"
#include "unsupported/Eigen/CXX11/Tensor"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define FASTBERT_AVX2_GEMM 1
#else
#define FASTBERT_AVX2_GEMM 0
#endif

namespace fastbert {
namespace cpu {

struct PackedWeight {
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  int64_t k = 0, n = 0;
  std::unique_ptr<uint16_t[], Free> data;  // AmxKernelT's layout: [n / 32][k / 32][parts][32 x 32]
};

}  // namespace cpu
}  // namespace fastbert

#if FASTBERT_AVX2_GEMM
// Three kernels, the best the CPU has chosen once per process (GemmIsa): AVX2 (6x16 register
// tile, every x86-64-v3 CPU), AVX-512 (12x32) and AMX (bf16 tiles on split operands, AmxImpl).
// The two FMA kernels share their driver (sgemm_fma.h).
#include "tf_ops/cpu/sgemm_amx.h"
#include "tf_ops/cpu/sgemm_avx2.h"
#include "tf_ops/cpu/sgemm_avx512.h"
#include "tf_ops/cpu/sgemm_avx512bf16.h"
#include "tf_ops/cpu/sgemm_fma.h"
#endif

namespace fastbert {
namespace cpu {

#if FASTBERT_AVX2_GEMM
using namespace sgemm_detail;  // NOLINT: the kernels of this file's own parts

CpuIsa GemmIsa() {
  // Once per process: the best kernel this CPU (and OS) runs, at most FASTBERT_CPU_ISA
  // (avx2, avx512 or amx; tests compare the kernels on one machine).
  static const CpuIsa isa = [] {
    const char* env = std::getenv("FASTBERT_CPU_ISA");
    const std::string cap = env == nullptr ? "" : env;
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    if (cap == "avx2" || !avx512) return CpuIsa::kAvx2;
    if (cap == "avx512" || !AmxUsable()) return CpuIsa::kAvx512;
    return CpuIsa::kAmx;
  }();
  return isa;
}

bool GemmPrepacksWeights() { return GemmIsa() == CpuIsa::kAmx; }

// The vdpbf16ps kernel for the bfloat16 mode on the avx512 class, only on request
// (FASTBERT_CPU_BF16_DOT=1): measured 1.5x slower than the float32 FMA kernel on a Sapphire Rapids
// Xeon (931 vs 603 ms, BERT-base B=8 S=128); not yet measured on AMD Zen 4/5, whose vdpbf16ps has
// twice the FMA rate on paper.
bool Bf16DotKernel() {
  static const bool on = [] {
    const char* env = std::getenv("FASTBERT_CPU_BF16_DOT");
    return env != nullptr && std::string(env) == "1" && GetCpuFeatures().avx512_bf16;
  }();
  return on && GemmIsa() == CpuIsa::kAvx512;
}

template <typename Tb>
std::shared_ptr<const PackedWeight> PackWeight(const Eigen::ThreadPoolDevice& d, int64_t k, int64_t n, const Tb* b,
                                               int64_t ldb) {
  if (!GemmPrepacksWeights() || k <= 0 || n <= 0) return nullptr;
  return AmxPackWeight(d, k, n, b, ldb);
}

template <typename Tb>
void SgemmShared(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const Tb* const* b, int64_t ldb, float* const* c, int64_t ldc, int count,
                 const BlockEpilogue& epilogue, const PackedWeight* const* packed) {
  if (m <= 0 || n <= 0 || count <= 0) return;
  if (k <= 0) {
    for (int p = 0; p < count; ++p) {
      for (int64_t i = 0; i < m; ++i) std::fill(c[p] + i * ldc, c[p] + i * ldc + n, 0.0f);
      if (epilogue) epilogue(p, 0, m, 0, n);
    }
    return;
  }
  const CpuIsa isa = GemmIsa();
  if (isa == CpuIsa::kAmx) {
    AmxImpl(d, m, n, k, a, lda, b, ldb, c, ldc, count, epilogue, packed);
  } else if (isa == CpuIsa::kAvx512) {
    if constexpr (std::is_same<Tb, Eigen::bfloat16>::value) {
      if (Bf16DotKernel()) {  // the bfloat16 mode on vdpbf16ps
        Avx512Bf16Impl(d, m, n, k, a, lda, b, ldb, c, ldc, count, epilogue);
        return;
      }
    }
    SharedImpl<Avx512Kernel>(d, m, n, k, a, lda, b, ldb, c, ldc, count, epilogue);
  } else {
    SharedImpl<Avx2Kernel>(d, m, n, k, a, lda, b, ldb, c, ldc, count, epilogue);
  }
}

template <typename Tb>
void Sgemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const Tb* b, int64_t ldb, float* c, int64_t ldc, const BlockEpilogue& epilogue,
           const PackedWeight* packed) {
  SgemmShared(d, m, n, k, a, lda, &b, ldb, &c, ldc, 1, epilogue, &packed);
}

void SgemmSerial(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 bool b_transposed, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  if (GemmIsa() != CpuIsa::kAvx2) {  // attention's small products: AVX-512 (AMX's split costs more there)
    SerialImpl<Avx512Kernel>(m, n, k, a, lda, b, ldb, b_transposed, c, ldc);
  } else {
    SerialImpl<Avx2Kernel>(m, n, k, a, lda, b, ldb, b_transposed, c, ldc);
  }
}

#else  // no AVX2: Eigen's contraction

CpuIsa GemmIsa() { return CpuIsa::kEigen; }
bool GemmPrepacksWeights() { return false; }

template <typename Tb>
std::shared_ptr<const PackedWeight> PackWeight(const Eigen::ThreadPoolDevice&, int64_t, int64_t, const Tb*, int64_t) {
  return nullptr;
}

template <typename Tb>
void Sgemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const Tb* b, int64_t ldb, float* c, int64_t ldc, const BlockEpilogue& epilogue, const PackedWeight*) {
  // The encoder only multiplies dense operands (lda = k, ldb = ldc = n).
  (void)lda;
  (void)ldb;
  (void)ldc;
  Eigen::TensorMap<Eigen::Tensor<const float, 2, Eigen::RowMajor>> A(a, m, k);
  Eigen::TensorMap<Eigen::Tensor<const Tb, 2, Eigen::RowMajor>> B(b, k, n);
  Eigen::TensorMap<Eigen::Tensor<float, 2, Eigen::RowMajor>> C(c, m, n);
  const Eigen::array<Eigen::IndexPair<int>, 1> dims = {Eigen::IndexPair<int>(1, 0)};
  if constexpr (std::is_same<Tb, float>::value) {
    C.device(d) = A.contract(B, dims);
  } else {
    C.device(d) = A.contract(B.template cast<float>(), dims);
  }
  if (epilogue) epilogue(0, 0, m, 0, n);
}

template <typename Tb>
void SgemmShared(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const Tb* const* b, int64_t ldb, float* const* c, int64_t ldc, int count,
                 const BlockEpilogue& epilogue, const PackedWeight* const*) {
  for (int p = 0; p < count; ++p) {
    Sgemm(d, m, n, k, a, lda, b[p], ldb, c[p], ldc,
          epilogue ? BlockEpilogue([&](int, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
            epilogue(p, m0, m1, n0, n1);
          })
                   : BlockEpilogue());
  }
}

void SgemmSerial(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 bool b_transposed, float* c, int64_t ldc) {
  using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ConstMap = Eigen::Map<const MatrixRM, 0, Eigen::OuterStride<>>;
  Eigen::Map<MatrixRM, 0, Eigen::OuterStride<>> C(c, m, n, Eigen::OuterStride<>(ldc));
  ConstMap A(a, m, k, Eigen::OuterStride<>(lda));
  if (b_transposed) {
    C.noalias() = A * ConstMap(b, n, k, Eigen::OuterStride<>(ldb)).transpose();
  } else {
    C.noalias() = A * ConstMap(b, k, n, Eigen::OuterStride<>(ldb));
  }
}

#endif  // FASTBERT_AVX2_GEMM

// For fastbert_tf.cpu_gemm_kernel(dtype="bfloat16"): the bfloat16 mode's GEMMs compute in bfloat16
// on AMX (one part) and, on request, AVX512-BF16; elsewhere they widen the weights to the float32
// kernel's.
extern "C" __attribute__((visibility("default"))) const char* fastbert_cpu_bf16_gemm_kernel() {
#if FASTBERT_AVX2_GEMM
  if (GemmIsa() == CpuIsa::kAmx) return "amx_bf16";
  if (Bf16DotKernel()) return "avx512_bf16";
#endif
  return nullptr;  // the float32 kernel's name
}

// For fastbert_tf.cpu_gemm_kernel() (through ctypes): which kernel this process's GEMMs use.
extern "C" __attribute__((visibility("default"))) const char* fastbert_cpu_gemm_kernel() {
  switch (GemmIsa()) {
    case CpuIsa::kAmx:
      return "amx";
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx2:
      return "avx2";
    default:
      return "eigen";
  }
}

#define INSTANTIATE(Tb)                                                                                    \
  template void Sgemm<Tb>(const Eigen::ThreadPoolDevice&, int64_t, int64_t, int64_t, const float*, int64_t,   \
                          const Tb*, int64_t, float*, int64_t, const BlockEpilogue&, const PackedWeight*);    \
  template void SgemmShared<Tb>(const Eigen::ThreadPoolDevice&, int64_t, int64_t, int64_t, const float*,      \
                                int64_t, const Tb* const*, int64_t, float* const*, int64_t, int,              \
                                const BlockEpilogue&, const PackedWeight* const*);                            \
  template std::shared_ptr<const PackedWeight> PackWeight<Tb>(const Eigen::ThreadPoolDevice&, int64_t, int64_t, \
                                                              const Tb*, int64_t);
INSTANTIATE(float)
INSTANTIATE(Eigen::half)
INSTANTIATE(Eigen::bfloat16)
#undef INSTANTIATE

}  // namespace cpu
}  // namespace fastbert
