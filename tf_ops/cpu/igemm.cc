#define EIGEN_USE_THREADS

#include "tf_ops/cpu/igemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tf_ops/cpu/gemm_blocks.h"
#include "unsupported/Eigen/CXX11/Tensor"

#if defined(__AVX2__)
#include <immintrin.h>
#define FASTBERT_AVX2_IGEMM 1
#include "tf_ops/cpu/igemm_avx512.h"
#else
#define FASTBERT_AVX2_IGEMM 0
#endif

namespace fastbert {
namespace cpu {

#if FASTBERT_AVX2_IGEMM
namespace {

constexpr int kMR = 6, kNR = 16;
constexpr int64_t kPairsPerChunk = 256;  // 512 values of k per packed panel
constexpr int64_t kTaskM = 192, kTaskN = 256;

// A rows -> slivers of 6 rows; per pair of k one int32 per row holding (a[k], a[k+1]) as int16.
void PackA(const int8_t* a, int64_t lda, int64_t rows, int64_t k0, int64_t k1, int32_t* out) {
  for (int64_t i = 0; i < rows; i += kMR) {
    for (int64_t kk = k0; kk < k1; kk += 2) {
      for (int r = 0; r < kMR; ++r) {
        const int8_t* row = a + (i + r) * lda;
        const bool valid = i + r < rows;
        const int16_t lo = valid ? row[kk] : 0, hi = valid && kk + 1 < k1 ? row[kk + 1] : 0;
        out[r] = static_cast<int32_t>(static_cast<uint16_t>(lo) | (static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16));
      }
      out += kMR;
    }
  }
}

// B columns -> slivers of 16 columns; per pair of k, 16 (b[k][n], b[k+1][n]) int16 pairs.
void PackB(const int8_t* b, int64_t ldb, int64_t cols, int64_t k0, int64_t k1, int16_t* out) {
  for (int64_t j = 0; j < cols; j += kNR) {
    for (int64_t kk = k0; kk < k1; kk += 2) {
      const int8_t* r0 = b + kk * ldb + j;
      const int8_t* r1 = kk + 1 < k1 ? r0 + ldb : nullptr;
      for (int c = 0; c < kNR; ++c) {
        const bool valid = j + c < cols;
        out[2 * c] = valid ? r0[c] : 0;
        out[2 * c + 1] = valid && r1 ? r1[c] : 0;
      }
      out += 2 * kNR;
    }
  }
}

void MicroKernel(int64_t pairs, const int32_t* a, const int16_t* b, int32_t* c, int64_t ldc, bool accumulate,
                 int rows, int cols) {
  __m256i acc[kMR][2];
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (int64_t p = 0; p < pairs; ++p) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 16));
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      const __m256i av = _mm256_set1_epi32(a[r]);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, b0));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, b1));
    }
    a += kMR;
    b += 2 * kNR;
  }
  alignas(32) int32_t tile[kMR][kNR];
  for (int r = 0; r < kMR; ++r) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile[r]), acc[r][0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile[r] + 8), acc[r][1]);
  }
  for (int r = 0; r < rows; ++r) {
    int32_t* cr = c + r * ldc;
    for (int j = 0; j < cols; ++j) cr[j] = accumulate ? cr[j] + tile[r][j] : tile[r][j];
  }
}

void Avx2Igemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const int8_t* a, const int8_t* b,
               int32_t* c) {
  const int64_t m_padded = (m + kMR - 1) / kMR * kMR, n_padded = (n + kNR - 1) / kNR * kNR;
  const int64_t pairs = (k + 1) / 2;
  const int64_t chunk_k = 2 * kPairsPerChunk, chunks = (k + chunk_k - 1) / chunk_k;
  // Chunk `ch` of A starts at m_padded * pairs_before(ch) int32 words; of B at n_padded * 2 * that.
  auto* apack = static_cast<int32_t*>(ThreadScratch(0, sizeof(int32_t) * m_padded * pairs));
  auto* bpack = static_cast<int16_t*>(ThreadScratch(1, sizeof(int16_t) * 2 * n_padded * pairs));
  ParallelPack(d, chunks, m_padded / kMR, n_padded / kNR, 2.0 * kNR * chunk_k,
               [&](bool is_a, int64_t first, int64_t last, int64_t ch) {
    const int64_t k0 = ch * chunk_k, k1 = std::min(k, k0 + chunk_k), chunk_pairs = (k1 - k0 + 1) / 2;
    const int64_t pair0 = ch * kPairsPerChunk;
    if (is_a) {
      const int64_t i0 = first * kMR, i1 = std::min(m, last * kMR);
      PackA(a + i0 * k, k, i1 - i0, k0, k1, apack + pair0 * m_padded + i0 * chunk_pairs);
    } else {
      const int64_t j0 = first * kNR, j1 = std::min(n, last * kNR);
      PackB(b + j0, n, j1 - j0, k0, k1, bpack + 2 * (pair0 * n_padded + j0 * chunk_pairs));
    }
  });
  ParallelBlocks(d, m, n, k, kMR, kNR, kTaskM, kTaskN, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t k0 = ch * chunk_k, k1 = std::min(k, k0 + chunk_k), chunk_pairs = (k1 - k0 + 1) / 2;
      const int64_t pair0 = ch * kPairsPerChunk;
      const int32_t* a_chunk = apack + pair0 * m_padded;
      const int16_t* b_chunk = bpack + 2 * pair0 * n_padded;
      for (int64_t jr = n0; jr < n1; jr += kNR) {
        const int cols = static_cast<int>(std::min<int64_t>(kNR, n1 - jr));
        for (int64_t ir = m0; ir < m1; ir += kMR) {
          const int rows = static_cast<int>(std::min<int64_t>(kMR, m1 - ir));
          MicroKernel(chunk_pairs, a_chunk + ir * chunk_pairs, b_chunk + 2 * jr * chunk_pairs, c + ir * n + jr, n,
                      ch > 0, rows, cols);
        }
      }
    }
  });
}

}  // namespace

IgemmKernel IgemmIsa() {
  // Once per process: the best kernel this CPU (and OS) has, at most FASTBERT_CPU_ISA (avx2,
  // avx512 or amx: the same cap as the float GEMMs').
  static const IgemmKernel kernel = [] {
    const char* env = std::getenv("FASTBERT_CPU_ISA");
    const std::string cap = env == nullptr ? "" : env;
    const CpuFeatures& f = GetCpuFeatures();
    const bool amx = f.amx_tile && f.amx_int8 && f.amx_permitted && f.avx512;
    if (cap != "avx2" && cap != "avx512" && amx) return IgemmKernel::kAmxInt8;
    if (cap != "avx2" && f.avx512_vnni) return IgemmKernel::kAvx512Vnni;
    return IgemmKernel::kAvx2;
  }();
  return kernel;
}

void Igemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const int8_t* a, const int8_t* b,
           int32_t* c) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    std::fill(c, c + m * n, 0);
    return;
  }
  switch (IgemmIsa()) {
    case IgemmKernel::kAmxInt8:
      igemm_detail::Igemm512<true>(d, m, n, k, a, b, c);
      break;
    case IgemmKernel::kAvx512Vnni:
      igemm_detail::Igemm512<false>(d, m, n, k, a, b, c);
      break;
    default:
      Avx2Igemm(d, m, n, k, a, b, c);
  }
}

#else  // no AVX2: plain loops, still exact

IgemmKernel IgemmIsa() { return IgemmKernel::kScalar; }

void Igemm(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const int8_t* a, const int8_t* b,
           int32_t* c) {
  d.parallelFor(m, Eigen::TensorOpCost(k, 4.0 * n, 2.0 * n * k), [&](Eigen::Index first, Eigen::Index last) {
    for (Eigen::Index i = first; i < last; ++i) {
      int32_t* ci = c + i * n;
      std::fill(ci, ci + n, 0);
      for (int64_t kk = 0; kk < k; ++kk) {
        const int32_t av = a[i * k + kk];
        const int8_t* bk = b + kk * n;
        for (int64_t j = 0; j < n; ++j) ci[j] += av * bk[j];
      }
    }
  });
}

#endif

// For fastbert_tf.cpu_int8_gemm_kernel() (through ctypes).
extern "C" __attribute__((visibility("default"))) const char* fastbert_cpu_int8_gemm_kernel() {
  switch (IgemmIsa()) {
    case IgemmKernel::kAmxInt8:
      return "amx_int8";
    case IgemmKernel::kAvx512Vnni:
      return "avx512_vnni";
    case IgemmKernel::kAvx2:
      return "avx2";
    default:
      return "scalar";
  }
}

// For the tests (through ctypes): C[m, n] = A[m, k] * B[k, n] on a pool of `threads` threads, the
// kernel the op uses. Returns 0, or -1 for negative sizes.
extern "C" __attribute__((visibility("default"))) int fastbert_cpu_igemm(int64_t m, int64_t n, int64_t k,
                                                                       const int8_t* a, const int8_t* b, int32_t* c,
                                                                       int threads) {
  if (m < 0 || n < 0 || k < 0 || threads < 1) return -1;
  Eigen::ThreadPool pool(threads);
  Eigen::ThreadPoolDevice device(&pool, threads);
  Igemm(device, m, n, k, a, b, c);
  return 0;
}

}  // namespace cpu
}  // namespace fastbert
