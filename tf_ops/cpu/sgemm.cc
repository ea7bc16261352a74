#define EIGEN_USE_THREADS

#include "tf_ops/cpu/sgemm.h"

#include "tf_ops/cpu/gemm_blocks.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "Eigen/Core"
#include "unsupported/Eigen/CXX11/Tensor"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define FASTBERT_AVX2_GEMM 1
#else
#define FASTBERT_AVX2_GEMM 0
#endif

// Block sizes of the AVX-512 and AMX kernels (overridable at build time for tuning runs).
#ifndef FB_KC512
#define FB_KC512 192
#define FB_MC512 96
#define FB_TN512 256
#define FB_TM512 192
#endif
#ifndef FB_AMX_CHUNK
#define FB_AMX_CHUNK 24
#define FB_AMX_TN 256
#define FB_AMX_TM 192
#endif

namespace fastbert {
namespace cpu {

struct PackedWeight {
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  int64_t k = 0, n = 0;
  std::unique_ptr<uint16_t[], Free> data;  // AmxKernel's layout: [n / 32][k / 32][3 parts][32 x 32]
};

#if FASTBERT_AVX2_GEMM
namespace {

// Three kernels, the best the CPU has chosen once per process (GemmIsa): AVX2 (6x16 register
// tile, every x86-64-v3 CPU), AVX-512 (12x32) and AMX (bf16 tiles on split operands, AmxImpl).
// An FMA kernel K supplies the register tile (kMR rows x kNR columns), the block sizes, the
// packing of B and the micro-kernel; their driver (packing A, blocking, threading) is shared.

// A[mc, kc] (row stride lda) -> slivers of MR rows, k-major, zero rows past mc.
template <int MR>
void PackA(const float* a, int64_t lda, int64_t mc, int64_t kc, float* out) {
  for (int64_t i = 0; i < mc; i += MR) {
    const int rows = static_cast<int>(std::min<int64_t>(MR, mc - i));
    const float* src[MR];
    for (int r = 0; r < MR; ++r) src[r] = a + (i + std::min(r, rows - 1)) * lda;
    for (int64_t k = 0; k < kc; ++k) {
      for (int r = 0; r < MR; ++r) out[r] = r < rows ? src[r][k] : 0.0f;
      out += MR;
    }
  }
}

// Bt[nc, kc] (row stride ldb), the transpose of the B operand -> slivers of NR columns, k-major.
template <int NR>
void PackBTransposed(const float* bt, int64_t ldb, int64_t kc, int64_t nc, float* out) {
  for (int64_t j = 0; j < nc; j += NR, out += kc * NR) {
    const int cols = static_cast<int>(std::min<int64_t>(NR, nc - j));
    for (int c = 0; c < NR; ++c) {
      const float* src = bt + (j + std::min(c, cols - 1)) * ldb;
      for (int64_t k = 0; k < kc; ++k) out[k * NR + c] = c < cols ? src[k] : 0.0f;
    }
  }
}

// The last nc % NR columns of B[kc, nc] -> one zero-padded sliver (the vector loops take whole ones).
template <int NR, typename Tb>
void PackBTail(const Tb* b, int64_t ldb, int64_t kc, int64_t nc, float* out) {
  const int64_t full = nc / NR;
  const int cols = static_cast<int>(nc - full * NR);
  if (cols == 0) return;
  float* o = out + full * kc * NR;
  for (int64_t k = 0; k < kc; ++k, o += NR) {
    const Tb* row = b + k * ldb + full * NR;
    for (int c = 0; c < NR; ++c) o[c] = c < cols ? static_cast<float>(row[c]) : 0.0f;
  }
}

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

// AMX: fp32 products from bf16 tile multiplies. Each operand is split into three bf16 parts,
// x = h + m + l (8 significant bits each, 24 in all, as fp32), and C accumulates, in fp32, the six
// products h*h, h*m, m*h, h*l, l*h, m*m; the terms left out are below 2^-23 of the product, so the
// result matches an fp32 GEMM to fp32 rounding while the tile unit does ~14x the work per cycle of
// AVX-512 FMAs. A C block is 32x32 (four 16x16 tiles), a k block 32 deep.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,amx-tile,amx-bf16")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
struct AmxKernel {
  static constexpr int64_t kBlock = 32;     // rows and columns of a C block; depth of a k block
  static constexpr int64_t kPart = 1024;    // bf16 values in one part of one packed 32x32 block
  static constexpr int64_t kChunk = FB_AMX_CHUNK;  // k blocks per pass over C (operands of a pass in L2)
  static constexpr int64_t kTaskN = FB_AMX_TN;
  static constexpr int64_t kTaskM = FB_AMX_TM;

  struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
  };

  static __m512 Widen(__m256i bf) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf), 16)); }

  // x -> three bf16 parts (each rounded to nearest; the residues are exact in fp32).
  static void Split(__m512 x, __m256i parts[3]) {
    for (int p = 0; p < 3; ++p) {
      const __m256i bf = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(x));
      parts[p] = bf;
      x = _mm512_sub_ps(x, Widen(bf));
    }
  }
  static __m512 Load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
  static __m512 Load16(const Eigen::half* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
  static __m512 Load16(const Eigen::bfloat16* p, __mmask16 m) { return Widen(_mm256_maskz_loadu_epi16(m, p)); }
  static __mmask16 Mask(int64_t valid) {
    return valid >= 16 ? 0xFFFF : valid <= 0 ? 0 : static_cast<__mmask16>((1u << valid) - 1);
  }

  // Rows [0, rows) of A[., k] (row stride lda) -> for each k block: three parts of 32 rows x 32 k.
  static void PackA(const float* a, int64_t lda, int rows, int64_t k, uint16_t* out) {
    for (int64_t kb = 0; kb * kBlock < k; ++kb, out += 3 * kPart) {
      const int64_t k0 = kb * kBlock;
      const __mmask16 m0 = Mask(k - k0), m1 = Mask(k - k0 - 16);
      for (int r = 0; r < kBlock; ++r) {
        __m256i lo[3], hi[3];
        if (r < rows) {
          Split(Load16(a + r * lda + k0, m0), lo);
          Split(Load16(a + r * lda + k0 + 16, m1), hi);
        } else {
          for (int p = 0; p < 3; ++p) lo[p] = hi[p] = _mm256_setzero_si256();
        }
        for (int p = 0; p < 3; ++p) {
          _mm256_store_si256(reinterpret_cast<__m256i*>(out + p * kPart + r * kBlock), lo[p]);
          _mm256_store_si256(reinterpret_cast<__m256i*>(out + p * kPart + r * kBlock + 16), hi[p]);
        }
      }
    }
  }

  // Columns [0, cols) of B[k, .] (row stride ldb) -> for each k block: three parts, each two tiles
  // (columns 0-15, 16-31) of 16 k pairs x 16 columns x 2 (the pair interleaved, as the tile unit reads B).
  template <typename Tb>
  static void PackB(const Tb* b, int64_t ldb, int cols, int64_t k, uint16_t* out) {
    for (int64_t kb = 0; kb * kBlock < k; ++kb, out += 3 * kPart) {
      for (int half = 0; half < 2; ++half) {
        const __mmask16 m = Mask(cols - 16 * half);
        for (int pair = 0; pair < 16; ++pair) {
          const int64_t k0 = kb * kBlock + 2 * pair;
          __m256i even[3], odd[3];
          const __m512 zero = _mm512_setzero_ps();
          Split(k0 < k ? Load16(b + k0 * ldb + 16 * half, m) : zero, even);
          Split(k0 + 1 < k ? Load16(b + (k0 + 1) * ldb + 16 * half, m) : zero, odd);
          for (int p = 0; p < 3; ++p) {
            const __m512i v = _mm512_or_si512(_mm512_cvtepu16_epi32(even[p]),
                                              _mm512_slli_epi32(_mm512_cvtepu16_epi32(odd[p]), 16));
            _mm512_store_si512(out + p * kPart + half * 512 + pair * 32, v);
          }
        }
      }
    }
  }

  static void ConfigureTiles() {
    TileConfig cfg;
    for (int t = 0; t < 8; ++t) {
      cfg.rows[t] = 16;
      cfg.colsb[t] = 64;
    }
    // GCC does not see ldtilecfg read the struct and drops the stores above without this.
    asm volatile("" : : "r"(&cfg) : "memory");
    _tile_loadconfig(&cfg);
  }
  // Gives the tile state back, so the pool's threads do not carry it through context switches.
  static void ReleaseTiles() { _tile_release(); }

// Tiles 0-3 hold C, 4-5 A's two row halves, 6-7 B's two column halves. A load into an operand
// tile waits for the multiplies reading its old contents, so each load comes right after the
// last of those and before the multiplies that need the new one.
#define FB_STEP_B(p)           \
  _tile_loadd(6, (p), 64);       \
  _tile_dpbf16ps(0, 4, 6);     \
  _tile_dpbf16ps(2, 5, 6);     \
  _tile_loadd(7, (p) + 512, 64); \
  _tile_dpbf16ps(1, 4, 7);     \
  _tile_dpbf16ps(3, 5, 7)
#define FB_STEP_A(p)           \
  _tile_loadd(4, (p), 64);       \
  _tile_dpbf16ps(0, 4, 6);     \
  _tile_dpbf16ps(1, 4, 7);     \
  _tile_loadd(5, (p) + 512, 64); \
  _tile_dpbf16ps(2, 5, 6);     \
  _tile_dpbf16ps(3, 5, 7)

  // C[32, 32] (row stride ldc) (+)= the packed A rows x packed B columns over nkb k blocks.
  static void Tile32(int64_t nkb, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc, bool accumulate) {
    const int64_t stride = ldc * sizeof(float);
    if (accumulate) {
      _tile_loadd(0, c, stride);
      _tile_loadd(1, c + 16, stride);
      _tile_loadd(2, c + 16 * ldc, stride);
      _tile_loadd(3, c + 16 * ldc + 16, stride);
    } else {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
    }
    for (int64_t kb = 0; kb < nkb; ++kb, a += 3 * kPart, b += 3 * kPart) {
      // The six products in an order where each shares an operand with the one before:
      // h*l, h*m, h*h, l*h, m*h, m*m (14 tile loads for 24 multiplies).
      const uint16_t *ah = a, *am = a + kPart, *al = a + 2 * kPart;
      const uint16_t *bh = b, *bm = b + kPart, *bl = b + 2 * kPart;
      _tile_loadd(4, ah, 64);
      _tile_loadd(6, bl, 64);
      _tile_dpbf16ps(0, 4, 6);
      _tile_loadd(7, bl + 512, 64);
      _tile_dpbf16ps(1, 4, 7);
      _tile_loadd(5, ah + 512, 64);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
      // The next k block's A and B (6 KB each) into L1, a sixth after each step: +3-4% on the
      // K=3072 GEMM with prepacked weights, none elsewhere (L2 hints: -10%).
#define FB_PREFETCH(step)                                                         \
  for (int line = (step) * 16; line < (step) * 16 + 16; ++line) {                 \
    _mm_prefetch(reinterpret_cast<const char*>(a + 3 * kPart) + 64 * line, _MM_HINT_T0); \
    _mm_prefetch(reinterpret_cast<const char*>(b + 3 * kPart) + 64 * line, _MM_HINT_T0); \
  }
      FB_PREFETCH(0);
      FB_STEP_B(bm);
      FB_PREFETCH(1);
      FB_STEP_B(bh);
      FB_PREFETCH(2);
      FB_STEP_A(al);
      FB_PREFETCH(3);
      FB_STEP_A(am);
      FB_PREFETCH(4);
      FB_STEP_B(bm);
      FB_PREFETCH(5);
#undef FB_PREFETCH
    }
    _tile_stored(0, c, stride);
    _tile_stored(1, c + 16, stride);
    _tile_stored(2, c + 16 * ldc, stride);
    _tile_stored(3, c + 16 * ldc + 16, stride);
  }
#undef FB_STEP_A
#undef FB_STEP_B
};
#pragma GCC diagnostic pop
#pragma GCC pop_options

// Runs the register tiles of C rows [m0, m1) x columns [n0, n1) over the packed operands.
// apack: for each KC chunk, M/MR slivers of [kc x MR]; bpack: for each chunk, N/NR slivers of [kc x NR].
template <class K>
void ComputeBlock(int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t m, int64_t n, int64_t k,
                  const float* apack, const float* bpack, float* c, int64_t ldc) {
  const int64_t m_padded = (m + K::kMR - 1) / K::kMR * K::kMR, n_padded = (n + K::kNR - 1) / K::kNR * K::kNR;
  for (int64_t pc = 0; pc < k; pc += K::kKC) {
    const int64_t kc = std::min(K::kKC, k - pc);
    const float* a_chunk = apack + pc * m_padded;
    const float* b_chunk = bpack + pc * n_padded;
    for (int64_t ic = m0; ic < m1; ic += K::kMC) {
      const int64_t mc = std::min(K::kMC, m1 - ic);
      for (int64_t jr = n0; jr < n1; jr += K::kNR) {
        const float* bs = b_chunk + jr * kc;
        const int cols = static_cast<int>(std::min<int64_t>(K::kNR, n1 - jr));
        for (int64_t ir = ic; ir < ic + mc; ir += K::kMR) {
          const int rows = static_cast<int>(std::min<int64_t>(K::kMR, ic + mc - ir));
          K::MicroKernel(kc, a_chunk + ir * kc, bs, c + ir * ldc + jr, ldc, pc > 0, rows, cols);
        }
      }
    }
  }
}

template <class K, typename Tb>
void SharedImpl(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                const Tb* const* b, int64_t ldb, float* const* c, int64_t ldc, int count,
                const BlockEpilogue& epilogue) {
  constexpr int64_t kMR = K::kMR, kNR = K::kNR, kKC = K::kKC;
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
      PackA<K::kMR>(a + i0 * lda + pc, lda, i1 - i0, kc, apack + pc * m_padded + i0 * kc);
      return;
    }
    // B slivers are numbered across the products; a unit may span two of them.
    for (int64_t g = first; g < last;) {
      const int p = static_cast<int>(g / b_slivers);
      const int64_t s0 = g % b_slivers, s1 = std::min(b_slivers, s0 + (last - g));
      const int64_t j0 = s0 * kNR, j1 = std::min(n, s1 * kNR);
      K::PackB(b[p] + pc * ldb + j0, ldb, kc, j1 - j0, bpack + (p * k + pc) * n_padded + j0 * kc);
      g += s1 - s0;
    }
  });
  for (int p = 0; p < count; ++p) {
    const float* bp = bpack + p * k * n_padded;
    ParallelBlocks(d, m, n, k, kMR, kNR, K::kTaskM, K::kTaskN, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
      ComputeBlock<K>(m0, m1, n0, n1, m, n, k, apack, bp, c[p], ldc);
      if (epilogue) epilogue(p, m0, m1, n0, n1);  // while the block is still in this core's cache
    });
  }
}

template <class K>
void SerialImpl(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                bool b_transposed, float* c, int64_t ldc) {
  const int64_t m_padded = (m + K::kMR - 1) / K::kMR * K::kMR, n_padded = (n + K::kNR - 1) / K::kNR * K::kNR;
  float* apack = static_cast<float*>(ThreadScratch(0, sizeof(float) * m_padded * k));
  float* bpack = static_cast<float*>(ThreadScratch(1, sizeof(float) * n_padded * k));
  for (int64_t pc = 0; pc < k; pc += K::kKC) {
    const int64_t kc = std::min(K::kKC, k - pc);
    PackA<K::kMR>(a + pc, lda, m, kc, apack + pc * m_padded);
    if (b_transposed) {
      PackBTransposed<K::kNR>(b + pc, ldb, kc, n, bpack + pc * n_padded);
    } else {
      K::PackB(b + pc * ldb, ldb, kc, n, bpack + pc * n_padded);
    }
  }
  ComputeBlock<K>(0, m, 0, n, m, n, k, apack, bpack, c, ldc);
}

// The AMX GEMM: A split and packed per call, B too unless prepacked (in parallel), then 32x32 C
// blocks, each over up to kChunk k blocks before C is stored.
template <typename Tb>
void AmxImpl(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
             const Tb* const* b, int64_t ldb, float* const* c, int64_t ldc, int count,
             const BlockEpilogue& epilogue, const PackedWeight* const* packed) {
  using K = AmxKernel;
  constexpr int64_t kB = K::kBlock, kPanel = 3 * K::kPart;  // bf16 values of one packed 32x32 block
  const int64_t mb = (m + kB - 1) / kB, nb = (n + kB - 1) / kB, kbs = (k + kB - 1) / kB;
  uint16_t* apack = static_cast<uint16_t*>(ThreadScratch(0, sizeof(uint16_t) * mb * kbs * kPanel));
  // B of product p: its PackedWeight, or packed here into this call's buffer.
  std::vector<const uint16_t*> bp_of(count);
  std::vector<int> to_pack;
  for (int p = 0; p < count; ++p) {
    const PackedWeight* w = packed != nullptr ? packed[p] : nullptr;
    bp_of[p] = w != nullptr && w->k == k && w->n == n ? w->data.get() : nullptr;
    if (bp_of[p] == nullptr) to_pack.push_back(p);
  }
  uint16_t* bpack = to_pack.empty() ? nullptr : static_cast<uint16_t*>(ThreadScratch(
                                                    1, sizeof(uint16_t) * nb * kbs * kPanel * to_pack.size()));
  for (size_t i = 0; i < to_pack.size(); ++i) bp_of[to_pack[i]] = bpack + i * nb * kbs * kPanel;
  const double bytes = 4.0 * kB * k;
  d.parallelFor(mb + nb * to_pack.size(), Eigen::TensorOpCost(bytes, 1.5 * bytes, bytes),
                [&](Eigen::Index first, Eigen::Index last) {
    for (Eigen::Index u = first; u < last; ++u) {
      if (u < mb) {
        K::PackA(a + u * kB * lda, lda, static_cast<int>(std::min(kB, m - u * kB)), k, apack + u * kbs * kPanel);
      } else {
        const int64_t i = (u - mb) / nb, j = (u - mb) % nb;
        K::PackB(b[to_pack[i]] + j * kB, ldb, static_cast<int>(std::min(kB, n - j * kB)), k,
                 bpack + (i * nb + j) * kbs * kPanel);
      }
    }
  });
  for (int p = 0; p < count; ++p) {
    ParallelBlocks(d, m, n, k, kB, kB, K::kTaskM, K::kTaskN, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
      alignas(64) float edge[kB * kB] = {};  // partial blocks at the bottom/right edge of C go through here
      K::ConfigureTiles();
      for (int64_t kb0 = 0; kb0 < kbs; kb0 += K::kChunk) {
        const int64_t nkb = std::min(K::kChunk, kbs - kb0);
        for (int64_t j0 = n0; j0 < n1; j0 += kB) {
          const uint16_t* bp = bp_of[p] + ((j0 / kB) * kbs + kb0) * kPanel;
          const int64_t cols = std::min(kB, n1 - j0);
          for (int64_t i0 = m0; i0 < m1; i0 += kB) {
            const uint16_t* ap = apack + ((i0 / kB) * kbs + kb0) * kPanel;
            const int64_t rows = std::min(kB, m1 - i0);
            float* cb = c[p] + i0 * ldc + j0;
            if (rows == kB && cols == kB) {
              K::Tile32(nkb, ap, bp, cb, ldc, kb0 > 0);
              continue;
            }
            for (int64_t r = 0; r < rows && kb0 > 0; ++r) std::copy(cb + r * ldc, cb + r * ldc + cols, edge + r * kB);
            K::Tile32(nkb, ap, bp, edge, kB, kb0 > 0);
            for (int64_t r = 0; r < rows; ++r) std::copy(edge + r * kB, edge + r * kB + cols, cb + r * ldc);
          }
        }
      }
      K::ReleaseTiles();
      if (epilogue) epilogue(p, m0, m1, n0, n1);
    });
  }
}

// AMX-BF16 and AVX512-BF16 on the CPU, and Linux's permission for the tile state (which it gives
// only on request, per process).
bool AmxUsable() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool amx = ((edx >> 22) & 1) && ((edx >> 24) & 1);  // AMX-BF16, AMX-TILE
  if (!amx || !__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
  if (!((eax >> 5) & 1)) return false;  // AVX512-BF16 (the split uses its conversion)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

template <typename Tb>
std::shared_ptr<const PackedWeight> AmxPackWeight(const Eigen::ThreadPoolDevice& d, int64_t k, int64_t n,
                                                  const Tb* b, int64_t ldb) {
  using K = AmxKernel;
  constexpr int64_t kB = K::kBlock, kPanel = 3 * K::kPart;
  const int64_t nb = (n + kB - 1) / kB, kbs = (k + kB - 1) / kB;
  auto w = std::make_shared<PackedWeight>();
  w->k = k;
  w->n = n;
  w->data.reset(static_cast<uint16_t*>(std::aligned_alloc(64, (sizeof(uint16_t) * nb * kbs * kPanel + 63) / 64 * 64)));
  if (w->data == nullptr) return nullptr;  // no memory: the GEMMs pack per call instead
  const double bytes = 4.0 * kB * k;
  d.parallelFor(nb, Eigen::TensorOpCost(bytes, 1.5 * bytes, bytes), [&](Eigen::Index first, Eigen::Index last) {
    for (Eigen::Index j = first; j < last; ++j) {
      K::PackB(b + j * kB, ldb, static_cast<int>(std::min(kB, n - j * kB)), k, w->data.get() + j * kbs * kPanel);
    }
  });
  return w;
}

}  // namespace

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
