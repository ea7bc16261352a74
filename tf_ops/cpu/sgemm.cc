#define EIGEN_USE_THREADS

#include "tf_ops/cpu/sgemm.h"

#include "tf_ops/cpu/gemm_blocks.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>

#include "Eigen/Core"
#include "unsupported/Eigen/CXX11/Tensor"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define FASTBERT_AVX2_GEMM 1
#else
#define FASTBERT_AVX2_GEMM 0
#endif

namespace fastbert {
namespace cpu {

#if FASTBERT_AVX2_GEMM
namespace {

constexpr int kMR = 6;     // rows of the register tile
constexpr int kNR = 16;    // columns: two 8-float vectors
#ifndef FB_KC
#define FB_KC 256
#define FB_MC 96
#define FB_TN 256
#define FB_TM 192
#endif
constexpr int64_t kKC = FB_KC;  // depth of one packed panel: a 16-column B sliver stays in L1
constexpr int64_t kMC = FB_MC;  // rows of a packed A block (in L2)
constexpr int64_t kTaskN = FB_TN;  // columns of C per task
constexpr int64_t kTaskM = FB_TM;  // rows of C per task

inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const Eigen::half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 Load8(const Eigen::bfloat16* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

// A[mc, kc] (row stride lda) -> slivers of kMR rows, k-major, zero rows past mc.
void PackA(const float* a, int64_t lda, int64_t mc, int64_t kc, float* out) {
  for (int64_t i = 0; i < mc; i += kMR) {
    const int rows = static_cast<int>(std::min<int64_t>(kMR, mc - i));
    const float* src[kMR];
    for (int r = 0; r < kMR; ++r) src[r] = a + (i + std::min(r, rows - 1)) * lda;
    for (int64_t k = 0; k < kc; ++k) {
      for (int r = 0; r < kMR; ++r) out[r] = r < rows ? src[r][k] : 0.0f;
      out += kMR;
    }
  }
}

// B[kc, nc] (row stride ldb) -> slivers of kNR columns, k-major, widened to float, zero past nc.
// Row by row across the slivers, so reads run along B's rows (going down one sliver instead
// touches one line per row, kc rows apart, all in the same few cache sets).
template <typename Tb>
void PackB(const Tb* b, int64_t ldb, int64_t kc, int64_t nc, float* out) {
  const int64_t full = nc / kNR;
  for (int64_t k = 0; k < kc; ++k) {
    const Tb* row = b + k * ldb;
    float* o = out + k * kNR;
    for (int64_t j = 0; j < full; ++j, o += kc * kNR) {
      _mm256_store_ps(o, Load8(row + j * kNR));
      _mm256_store_ps(o + 8, Load8(row + j * kNR + 8));
    }
  }
  const int cols = static_cast<int>(nc - full * kNR);
  if (cols == 0) return;
  float* o = out + full * kc * kNR;
  for (int64_t k = 0; k < kc; ++k, o += kNR) {
    const Tb* row = b + k * ldb + full * kNR;
    for (int c = 0; c < kNR; ++c) o[c] = c < cols ? static_cast<float>(row[c]) : 0.0f;
  }
}

// Bt[nc, kc] (row stride ldb), the transpose of the B operand -> PackB's layout.
void PackBTransposed(const float* bt, int64_t ldb, int64_t kc, int64_t nc, float* out) {
  for (int64_t j = 0; j < nc; j += kNR, out += kc * kNR) {
    const int cols = static_cast<int>(std::min<int64_t>(kNR, nc - j));
    for (int c = 0; c < kNR; ++c) {
      const float* src = bt + (j + std::min(c, cols - 1)) * ldb;
      for (int64_t k = 0; k < kc; ++k) out[k * kNR + c] = c < cols ? src[k] : 0.0f;
    }
  }
}

// C[6, 16] (+)= A sliver * B sliver; only the top-left rows x cols of C are written.
inline void MicroKernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate,
                        int rows, int cols) {
  // C's rows are a whole row of the output apart (same cache sets): fetch them during the k loop.
  for (int r = 0; r < rows; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + kNR - 1), _MM_HINT_T0);
  }
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
         c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
         c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
         c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40);
    c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50);
    c51 = _mm256_fmadd_ps(av, b1, c51);
    a += kMR;
    b += kNR;
  }
  const __m256 acc[kMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (cols == kNR) {
    for (int r = 0; r < rows; ++r) {
      float* cr = c + r * ldc;
      __m256 v0 = acc[r][0], v1 = acc[r][1];
      if (accumulate) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr + 8));
      }
      _mm256_storeu_ps(cr, v0);
      _mm256_storeu_ps(cr + 8, v1);
    }
    return;
  }
  alignas(32) float tile[kMR][kNR];
  for (int r = 0; r < kMR; ++r) {
    _mm256_store_ps(tile[r], acc[r][0]);
    _mm256_store_ps(tile[r] + 8, acc[r][1]);
  }
  for (int r = 0; r < rows; ++r) {
    float* cr = c + r * ldc;
    for (int j = 0; j < cols; ++j) cr[j] = accumulate ? cr[j] + tile[r][j] : tile[r][j];
  }
}

// Runs the register tiles of C rows [m0, m1) x columns [n0, n1) over the packed operands.
// apack: for each KC chunk, M/6 slivers of [kc x 6]; bpack: for each chunk, N/16 slivers of [kc x 16].
void ComputeBlock(int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t m, int64_t n, int64_t k,
                  const float* apack, const float* bpack, float* c, int64_t ldc) {
  const int64_t m_padded = (m + kMR - 1) / kMR * kMR, n_padded = (n + kNR - 1) / kNR * kNR;
  for (int64_t pc = 0; pc < k; pc += kKC) {
    const int64_t kc = std::min(kKC, k - pc);
    const float* a_chunk = apack + pc * m_padded;
    const float* b_chunk = bpack + pc * n_padded;
    for (int64_t ic = m0; ic < m1; ic += kMC) {
      const int64_t mc = std::min(kMC, m1 - ic);
      for (int64_t jr = n0; jr < n1; jr += kNR) {
        const float* bs = b_chunk + jr * kc;
        const int cols = static_cast<int>(std::min<int64_t>(kNR, n1 - jr));
        for (int64_t ir = ic; ir < ic + mc; ir += kMR) {
          const int rows = static_cast<int>(std::min<int64_t>(kMR, ic + mc - ir));
          MicroKernel(kc, a_chunk + ir * kc, bs, c + ir * ldc + jr, ldc, pc > 0, rows, cols);
        }
      }
    }
  }
}

}  // namespace

template <typename Tb>
void SgemmShared(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const Tb* const* b, int64_t ldb, float* const* c, int64_t ldc, int count,
                 const BlockEpilogue& epilogue) {
  if (m <= 0 || n <= 0 || count <= 0) return;
  if (k <= 0) {
    for (int p = 0; p < count; ++p) {
      for (int64_t i = 0; i < m; ++i) std::fill(c[p] + i * ldc, c[p] + i * ldc + n, 0.0f);
      if (epilogue) epilogue(p, 0, m, 0, n);
    }
    return;
  }
  // All operands are packed once per call (in parallel), so no block re-reads the unpacked
  // matrices; the buffers belong to the calling thread and are kept for its next call.
  const int64_t m_padded = (m + kMR - 1) / kMR * kMR, n_padded = (n + kNR - 1) / kNR * kNR;
  const int64_t b_slivers = n_padded / kNR;
  float* apack = static_cast<float*>(ThreadScratch(0, sizeof(float) * m_padded * k));
  float* bpack = static_cast<float*>(ThreadScratch(1, sizeof(float) * n_padded * k * count));
  const int64_t chunks = (k + kKC - 1) / kKC;
  ParallelPack(d, chunks, m_padded / kMR, b_slivers * count, 4.0 * kNR * kKC,
               [&](bool is_a, int64_t first, int64_t last, int64_t chunk) {
    const int64_t pc = chunk * kKC, kc = std::min(kKC, k - pc);
    if (is_a) {
      const int64_t i0 = first * kMR, i1 = std::min(m, last * kMR);
      PackA(a + i0 * lda + pc, lda, i1 - i0, kc, apack + pc * m_padded + i0 * kc);
      return;
    }
    // B slivers are numbered across the products; a unit may span two of them.
    for (int64_t g = first; g < last;) {
      const int p = static_cast<int>(g / b_slivers);
      const int64_t s0 = g % b_slivers, s1 = std::min(b_slivers, s0 + (last - g));
      const int64_t j0 = s0 * kNR, j1 = std::min(n, s1 * kNR);
      PackB(b[p] + pc * ldb + j0, ldb, kc, j1 - j0, bpack + (p * k + pc) * n_padded + j0 * kc);
      g += s1 - s0;
    }
  });
  for (int p = 0; p < count; ++p) {
    const float* bp = bpack + p * k * n_padded;
    ParallelBlocks(d, m, n, k, kMR, kNR, kTaskM, kTaskN, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
      ComputeBlock(m0, m1, n0, n1, m, n, k, apack, bp, c[p], ldc);
      if (epilogue) epilogue(p, m0, m1, n0, n1);  // while the block is still in this core's cache
    });
  }
}

template <typename Tb>
void Sgemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const Tb* b, int64_t ldb, float* c, int64_t ldc, const BlockEpilogue& epilogue) {
  SgemmShared(d, m, n, k, a, lda, &b, ldb, &c, ldc, 1, epilogue);
}

void SgemmSerial(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 bool b_transposed, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  const int64_t m_padded = (m + kMR - 1) / kMR * kMR, n_padded = (n + kNR - 1) / kNR * kNR;
  float* apack = static_cast<float*>(ThreadScratch(0, sizeof(float) * m_padded * k));
  float* bpack = static_cast<float*>(ThreadScratch(1, sizeof(float) * n_padded * k));
  for (int64_t pc = 0; pc < k; pc += kKC) {
    const int64_t kc = std::min(kKC, k - pc);
    PackA(a + pc, lda, m, kc, apack + pc * m_padded);
    if (b_transposed) {
      PackBTransposed(b + pc, ldb, kc, n, bpack + pc * n_padded);
    } else {
      PackB(b + pc * ldb, ldb, kc, n, bpack + pc * n_padded);
    }
  }
  ComputeBlock(0, m, 0, n, m, n, k, apack, bpack, c, ldc);
}

#else  // no AVX2: Eigen's contraction

template <typename Tb>
void Sgemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const Tb* b, int64_t ldb, float* c, int64_t ldc, const BlockEpilogue& epilogue) {
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
                 const BlockEpilogue& epilogue) {
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

#define INSTANTIATE(Tb)                                                                                    \
  template void Sgemm<Tb>(const Eigen::ThreadPoolDevice&, int64_t, int64_t, int64_t, const float*, int64_t,   \
                          const Tb*, int64_t, float*, int64_t, const BlockEpilogue&);                         \
  template void SgemmShared<Tb>(const Eigen::ThreadPoolDevice&, int64_t, int64_t, int64_t, const float*,      \
                                int64_t, const Tb* const*, int64_t, float* const*, int64_t, int,              \
                                const BlockEpilogue&);
INSTANTIATE(float)
INSTANTIATE(Eigen::half)
INSTANTIATE(Eigen::bfloat16)
#undef INSTANTIATE

}  // namespace cpu
}  // namespace fastbert
