// The AVX512-BF16 kernel of the bfloat16 mode on CPUs without AMX: vdpbf16ps on a 12x32 register
// tile, A rounded to bfloat16 (as the AMX kernel's one-part mode), B the bfloat16 weights as they
// are, float32 accumulation. Its driver packs both operands per call, as the FMA kernels' does.
// Part of sgemm.cc (included once, inside its #if FASTBERT_AVX2_GEMM); not a public header.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "tf_ops/cpu/gemm_blocks.h"
#include "tf_ops/cpu/sgemm.h"
#include "tf_ops/cpu/sgemm_avx512.h"

namespace fastbert {
namespace cpu {
namespace sgemm_detail {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
struct Avx512Bf16Kernel {
  static constexpr int kMR = Avx512Kernel::kMR;  // the same 12x32 register tile
  static constexpr int kNR = Avx512Kernel::kNR;
  static constexpr int64_t kPairsKC = 192;   // k pairs per chunk: a B sliver of 24 KB
  static constexpr int64_t kTaskM = 192, kTaskN = 256;

  // Rows [0, rows) of A (row stride lda), k [k0, k1) -> per k pair, 12 words, each a row's two
  // bfloat16 (round to nearest even; zero past k1 and rows).
  static void PackA(const float* a, int64_t lda, int rows, int64_t k0, int64_t k1, uint32_t* out) {
    const int64_t pairs = (k1 - k0 + 1) / 2;
    alignas(64) uint32_t row_pairs[8];
    for (int64_t p0 = 0; p0 < pairs; p0 += 8) {  // 16 values of k at a time
      const int np = static_cast<int>(std::min<int64_t>(8, pairs - p0));
      const int64_t kk = k0 + 2 * p0, valid = std::min<int64_t>(16, k1 - kk);
      const __mmask16 m = static_cast<__mmask16>(valid >= 16 ? 0xFFFF : (1u << valid) - 1);
      for (int r = 0; r < kMR; ++r) {
        const __m512 x = r < rows ? _mm512_maskz_loadu_ps(m, a + r * lda + kk) : _mm512_setzero_ps();
        _mm256_store_si256(reinterpret_cast<__m256i*>(row_pairs), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x)));
        for (int p = 0; p < np; ++p) out[(p0 + p) * kMR + r] = row_pairs[p];
      }
    }
  }

  // Columns [0, cols) (cols <= 32) of B (bfloat16, row stride ldb), k [k0, k1) -> per k pair,
  // 32 columns x (b[2p][c], b[2p+1][c]); zero past k1 and cols.
  static void PackB(const uint16_t* b, int64_t ldb, int cols, int64_t k0, int64_t k1, uint16_t* out) {
    const __mmask32 m = cols >= 32 ? 0xFFFFFFFFu : static_cast<__mmask32>((1ull << cols) - 1);
    alignas(64) static const uint16_t kInterleave[2][32] = {
        {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39, 8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47},
        {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55, 24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61,
         30, 62, 31, 63}};
    const __m512i lo_idx = _mm512_load_si512(kInterleave[0]), hi_idx = _mm512_load_si512(kInterleave[1]);
    for (int64_t kk = k0; kk < k1; kk += 2, out += 2 * kNR) {
      const __m512i even = _mm512_maskz_loadu_epi16(m, b + kk * ldb);
      const __m512i odd = kk + 1 < k1 ? _mm512_maskz_loadu_epi16(m, b + (kk + 1) * ldb) : _mm512_setzero_si512();
      _mm512_store_si512(out, _mm512_permutex2var_epi16(even, lo_idx, odd));
      _mm512_store_si512(out + kNR, _mm512_permutex2var_epi16(even, hi_idx, odd));
    }
  }

  // C[12, 32] (+)= A sliver x B sliver over `pairs` k pairs; only rows x cols of C are written.
  static void MicroKernel(int64_t pairs, const uint32_t* a, const uint16_t* b, float* c, int64_t ldc,
                          bool accumulate, int rows, int cols) {
    __m512 acc[kMR][2];
    for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t p = 0; p < pairs; ++p, a += kMR, b += 2 * kNR) {
      const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_load_si512(b));
      const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_load_si512(b + kNR));
#pragma GCC unroll 12
      for (int r = 0; r < kMR; ++r) {
        const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[r])));
        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
        acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
      }
    }
    Avx512Kernel::Store(acc, c, ldc, accumulate, rows, cols);
  }
};
#pragma GCC diagnostic pop
#pragma GCC pop_options

// count products sharing A: A and every B packed once per call (in parallel), then register tiles
// over blocks of C, each block's epilogue run on the thread that finished it.
inline void Avx512Bf16Impl(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a,
                           int64_t lda, const Eigen::bfloat16* const* b, int64_t ldb, float* const* c, int64_t ldc,
                           int count, const BlockEpilogue& epilogue) {
  using K = Avx512Bf16Kernel;
  constexpr int64_t kMR = K::kMR, kNR = K::kNR, kKC = 2 * K::kPairsKC;
  const int64_t m_slivers = (m + kMR - 1) / kMR, n_slivers = (n + kNR - 1) / kNR;
  const int64_t pairs = (k + 1) / 2, chunks = (k + kKC - 1) / kKC;
  // Chunk ch of A starts at m_slivers * kMR * (pairs before ch) words; of B at n_slivers * 2 * kNR * that.
  auto* apack = static_cast<uint32_t*>(ThreadScratch(0, sizeof(uint32_t) * m_slivers * kMR * pairs));
  auto* bpack = static_cast<uint16_t*>(ThreadScratch(1, sizeof(uint16_t) * n_slivers * 2 * kNR * pairs * count));
  ParallelPack(d, chunks, m_slivers, n_slivers * count, 2.0 * kNR * kKC,
               [&](bool is_a, int64_t first, int64_t last, int64_t ch) {
    const int64_t k0 = ch * kKC, k1 = std::min(k, k0 + kKC), chunk_pairs = (k1 - k0 + 1) / 2;
    const int64_t pair0 = ch * K::kPairsKC;
    for (int64_t s = first; s < last; ++s) {
      if (is_a) {
        K::PackA(a + s * kMR * lda, lda, static_cast<int>(std::min(kMR, m - s * kMR)), k0, k1,
                 apack + pair0 * m_slivers * kMR + s * kMR * chunk_pairs);
      } else {
        const int64_t p = s / n_slivers, j = s % n_slivers;
        K::PackB(reinterpret_cast<const uint16_t*>(b[p]) + j * kNR, ldb, static_cast<int>(std::min(kNR, n - j * kNR)),
                 k0, k1, bpack + p * n_slivers * 2 * kNR * pairs + pair0 * n_slivers * 2 * kNR + j * 2 * kNR * chunk_pairs);
      }
    }
  });
  for (int p = 0; p < count; ++p) {
    const uint16_t* bp = bpack + p * n_slivers * 2 * kNR * pairs;
    ParallelBlocks(d, m, n, k, kMR, kNR, K::kTaskM, K::kTaskN, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
      for (int64_t ch = 0; ch < chunks; ++ch) {
        const int64_t k0 = ch * kKC, k1 = std::min(k, k0 + kKC), chunk_pairs = (k1 - k0 + 1) / 2;
        const int64_t pair0 = ch * K::kPairsKC;
        for (int64_t j0 = n0; j0 < n1; j0 += kNR) {
          const int cols = static_cast<int>(std::min(kNR, n1 - j0));
          const uint16_t* bs = bp + pair0 * n_slivers * 2 * kNR + (j0 / kNR) * 2 * kNR * chunk_pairs;
          for (int64_t i0 = m0; i0 < m1; i0 += kMR) {
            const int rows = static_cast<int>(std::min(kMR, m1 - i0));
            K::MicroKernel(chunk_pairs, apack + pair0 * m_slivers * kMR + (i0 / kMR) * kMR * chunk_pairs, bs,
                           c[p] + i0 * ldc + j0, ldc, ch > 0, rows, cols);
          }
        }
      }
      if (epilogue) epilogue(p, m0, m1, n0, n1);
    });
  }
}

}  // namespace sgemm_detail
}  // namespace cpu
}  // namespace fastbert
