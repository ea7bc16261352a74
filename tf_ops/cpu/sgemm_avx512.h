// The AVX-512 micro-kernel: a 12x32 register tile.
// Part of sgemm.cc (included once, inside its #if FASTBERT_AVX2_GEMM); not a public header.
#pragma once

#include <immintrin.h>

#include "tf_ops/cpu/sgemm_fma.h"

namespace fastbert {
namespace cpu {
namespace sgemm_detail {

// Block sizes (overridable at build time for tuning runs).
#ifndef FB_KC512
#define FB_KC512 192
#define FB_MC512 96
#define FB_TN512 256
#define FB_TM512 192
#endif

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq")
#pragma GCC diagnostic push
// GCC 12's AVX-512 conversion intrinsics start from _mm512_undefined_*, which it flags falsely.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
struct Avx512Kernel {
  static constexpr int kMR = 12;         // rows of the register tile (24 of the 32 zmm accumulate)
  static constexpr int kNR = 32;         // columns: two 16-float vectors
  static constexpr int64_t kKC = FB_KC512;  // a 32-column B sliver of this depth fills half of L1
  static constexpr int64_t kMC = FB_MC512;
  static constexpr int64_t kTaskN = FB_TN512;
  static constexpr int64_t kTaskM = FB_TM512;

  static __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 Load16(const Eigen::half* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512 Load16(const Eigen::bfloat16* p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  }

  // As Avx2Kernel::PackB, for 32-column slivers.
  template <typename Tb>
  static void PackB(const Tb* b, int64_t ldb, int64_t kc, int64_t nc, float* out) {
    const int64_t full = nc / kNR;
    for (int64_t k = 0; k < kc; ++k) {
      const Tb* row = b + k * ldb;
      float* o = out + k * kNR;
      for (int64_t j = 0; j < full; ++j, o += kc * kNR) {
        _mm512_store_ps(o, Load16(row + j * kNR));
        _mm512_store_ps(o + 16, Load16(row + j * kNR + 16));
      }
    }
    PackBTail<kNR>(b, ldb, kc, nc, out);
  }

  // C[12, 32] (+)= A sliver * B sliver; only the top-left rows x cols of C are written.
  static void MicroKernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate,
                          int rows, int cols) {
    for (int r = 0; r < rows; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + kNR - 1), _MM_HINT_T0);
    }
    __m512 acc[kMR][2];
#pragma GCC unroll 12
    for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; ++k) {
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
      for (int r = 0; r < kMR; ++r) {
        const __m512 av = _mm512_set1_ps(a[r]);
        acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
      }
      a += kMR;
      b += kNR;
    }
    Store(acc, c, ldc, accumulate, rows, cols);
  }

  // C[rows, cols] (+)= the 12x32 accumulators (also the vdpbf16ps kernel's).
  static void Store(const __m512 (*acc)[2], float* c, int64_t ldc, bool accumulate, int rows, int cols) {
    const __mmask16 m0 = cols >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : static_cast<__mmask16>((1u << (cols - 16)) - 1);
#pragma GCC unroll 12
    for (int r = 0; r < kMR; ++r) {
      if (r >= rows) break;
      float* cr = c + r * ldc;
      __m512 v0 = acc[r][0], v1 = acc[r][1];
      if (accumulate) {
        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
      }
      _mm512_mask_storeu_ps(cr, m0, v0);
      _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
  }
};
#pragma GCC diagnostic pop
#pragma GCC pop_options

}  // namespace sgemm_detail
}  // namespace cpu
}  // namespace fastbert
