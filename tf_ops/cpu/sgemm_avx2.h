// The AVX2 micro-kernel: a 6x16 register tile (every x86-64-v3 CPU).
// Part of sgemm.cc (included once, inside its #if FASTBERT_AVX2_GEMM); not a public header.
#pragma once

#include <immintrin.h>

#include "tf_ops/cpu/sgemm_fma.h"

namespace fastbert {
namespace cpu {
namespace sgemm_detail {

struct Avx2Kernel {
  static constexpr int kMR = 6;          // rows of the register tile
  static constexpr int kNR = 16;         // columns: two 8-float vectors
  static constexpr int64_t kKC = 256;    // depth of one packed panel: a B sliver stays in L1
  static constexpr int64_t kMC = 96;     // rows of A run against one B sliver (in L2)
  static constexpr int64_t kTaskN = 256;  // columns of C per task
  static constexpr int64_t kTaskM = 192;  // rows of C per task

  static __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 Load8(const Eigen::half* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static __m256 Load8(const Eigen::bfloat16* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }

  // B[kc, nc] (row stride ldb) -> slivers of kNR columns, k-major, widened to float, zero past nc.
  // Row by row across the slivers, so reads run along B's rows (going down one sliver instead
  // touches one line per row, kc rows apart, all in the same few cache sets).
  template <typename Tb>
  static void PackB(const Tb* b, int64_t ldb, int64_t kc, int64_t nc, float* out) {
    const int64_t full = nc / kNR;
    for (int64_t k = 0; k < kc; ++k) {
      const Tb* row = b + k * ldb;
      float* o = out + k * kNR;
      for (int64_t j = 0; j < full; ++j, o += kc * kNR) {
        _mm256_store_ps(o, Load8(row + j * kNR));
        _mm256_store_ps(o + 8, Load8(row + j * kNR + 8));
      }
    }
    PackBTail<kNR>(b, ldb, kc, nc, out);
  }

  // C[6, 16] (+)= A sliver * B sliver; only the top-left rows x cols of C are written.
  static void MicroKernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate,
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
};

}  // namespace sgemm_detail
}  // namespace cpu
}  // namespace fastbert
