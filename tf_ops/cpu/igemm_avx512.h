// The int8 GEMM kernels of AVX-512 CPUs: AVX512-VNNI (vpdpbusd) and AMX-INT8 (tdpbssd), with the
// B packing they share. Part of igemm.cc (included once, inside its #if); not a public header.
//
// Packed B, per sliver of 32 columns: for each k block of 64, two halves (columns 0-15, 16-31) of
// 16 groups x 16 columns x 4 bytes, [g][c][q] = b[64 kb + 4 g + q][c] -- one AMX B tile (16 rows
// of 64 bytes) and, row by row, the zmm that vpdpbusd multiplies (16 columns x 4 k) -- then the
// 32 columns' sums over k times 128 (int32), which the VNNI kernel takes back out. Zeros beyond k and n.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "tf_ops/cpu/cpu_features.h"
#include "tf_ops/cpu/gemm_blocks.h"

namespace fastbert {
namespace cpu {
namespace igemm_detail {

constexpr int64_t kKb = 64;                   // k per block
constexpr int64_t kNb = 32;                   // columns per B sliver
constexpr int64_t kBlockBytes = 2 * 16 * 64;  // one k block of one sliver

inline int64_t KBlocks(int64_t k) { return (k + kKb - 1) / kKb; }
inline int64_t SliverBytes(int64_t k) { return KBlocks(k) * kBlockBytes + kNb * sizeof(int32_t); }

// Four rows of 16 int8 (r[q][c]) -> 64 bytes [c][q].
inline void Interleave4x16(const __m128i r[4], int8_t* out) {
  const __m128i t0 = _mm_unpacklo_epi8(r[0], r[1]), t1 = _mm_unpackhi_epi8(r[0], r[1]);
  const __m128i t2 = _mm_unpacklo_epi8(r[2], r[3]), t3 = _mm_unpackhi_epi8(r[2], r[3]);
  __m128i* o = reinterpret_cast<__m128i*>(out);
  _mm_store_si128(o, _mm_unpacklo_epi16(t0, t2));
  _mm_store_si128(o + 1, _mm_unpackhi_epi16(t0, t2));
  _mm_store_si128(o + 2, _mm_unpacklo_epi16(t1, t3));
  _mm_store_si128(o + 3, _mm_unpackhi_epi16(t1, t3));
}

// Columns [0, cols) (cols <= 32) of B[k, .] (row stride ldb) -> one packed sliver.
inline void PackBSliver(const int8_t* b, int64_t ldb, int cols, int64_t k, int8_t* out) {
  const int64_t kbs = KBlocks(k);
  alignas(16) int8_t edge[4][16];
  for (int64_t kb = 0; kb < kbs; ++kb) {
    for (int half = 0; half < 2; ++half) {
      const int c0 = 16 * half, n_valid = std::max(0, std::min(16, cols - c0));
      for (int g = 0; g < 16; ++g) {
        __m128i r[4];
        for (int q = 0; q < 4; ++q) {
          const int64_t kk = kb * kKb + 4 * g + q;
          if (kk < k && n_valid == 16) {
            r[q] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + kk * ldb + c0));
          } else {
            std::memset(edge[q], 0, 16);
            if (kk < k && n_valid > 0) std::memcpy(edge[q], b + kk * ldb + c0, n_valid);
            r[q] = _mm_load_si128(reinterpret_cast<const __m128i*>(edge[q]));
          }
        }
        Interleave4x16(r, out + kb * kBlockBytes + half * 1024 + g * 64);
      }
    }
  }
  int32_t* sums = reinterpret_cast<int32_t*>(out + kbs * kBlockBytes);
  for (int c = 0; c < kNb; ++c) sums[c] = 0;
  for (int64_t kk = 0; kk < k; ++kk) {
    const int8_t* row = b + kk * ldb;
    for (int c = 0; c < cols; ++c) sums[c] += row[c];
  }
  for (int c = 0; c < kNb; ++c) sums[c] *= 128;
}

// Copies C[rows, cols] of a full kernel tile (row stride ld_tile) into C (row stride ldc).
inline void StoreEdge(const int32_t* tile, int64_t ld_tile, int rows, int cols, int32_t* c, int64_t ldc) {
  for (int r = 0; r < rows; ++r) std::memcpy(c + r * ldc, tile + r * ld_tile, cols * sizeof(int32_t));
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")

// ---------------------------------------------------------------- AVX512-VNNI

// vpdpbusd multiplies unsigned by signed bytes: A goes in as a + 128 (a ^ 0x80) and each result
// loses 128 * (the column's sum of B), exactly.
constexpr int kVnniMR = 12;  // 12 rows x 32 columns: 24 zmm accumulators

// Rows [0, rows) (rows <= 12) of A[., k] -> per group of 4 k, 12 int32 (4 bytes of a row, ^ 0x80),
// zero bytes beyond k and rows (B is zero there, so they add nothing).
inline void PackAVnni(const int8_t* a, int64_t lda, int rows, int64_t k, int32_t* out) {
  const int64_t groups = KBlocks(k) * 16;
  for (int r = 0; r < kVnniMR; ++r) {
    const int8_t* row = a + r * lda;
    for (int64_t g = 0; g < groups; ++g) {
      uint32_t v = 0;
      if (r < rows) {
        const int64_t k0 = 4 * g;
        if (k0 + 4 <= k) {
          std::memcpy(&v, row + k0, 4);
          v ^= 0x80808080u;
        } else {
          for (int q = 0; q < 4 && k0 + q < k; ++q) v |= static_cast<uint32_t>(static_cast<uint8_t>(row[k0 + q] ^ 0x80)) << (8 * q);
        }
      }
      out[g * kVnniMR + r] = static_cast<int32_t>(v);
    }
  }
}

// C[rows, cols] = packed A sliver (12 rows) x packed B sliver (32 columns), over all of k.
inline void VnniTile(int64_t kbs, const int32_t* a, const int8_t* b, int32_t* c, int64_t ldc, int rows, int cols) {
  __m512i acc[kVnniMR][2];
  for (int r = 0; r < kVnniMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  for (int64_t kb = 0; kb < kbs; ++kb, b += kBlockBytes) {
#pragma GCC unroll 2
    for (int g = 0; g < 16; ++g, a += kVnniMR) {
      const __m512i b0 = _mm512_load_si512(b + g * 64), b1 = _mm512_load_si512(b + 1024 + g * 64);
#pragma GCC unroll 12
      for (int r = 0; r < kVnniMR; ++r) {
        const __m512i av = _mm512_set1_epi32(a[r]);
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
      }
    }
  }
  const int32_t* sums = reinterpret_cast<const int32_t*>(b);  // 128 * column sums, after the last k block
  const __m512i corr0 = _mm512_load_si512(sums), corr1 = _mm512_load_si512(sums + 16);
  const __mmask16 m0 = cols >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : static_cast<__mmask16>((1u << (cols - 16)) - 1);
  for (int r = 0; r < rows; ++r) {
    _mm512_mask_storeu_epi32(c + r * ldc, m0, _mm512_sub_epi32(acc[r][0], corr0));
    _mm512_mask_storeu_epi32(c + r * ldc + 16, m1, _mm512_sub_epi32(acc[r][1], corr1));
  }
}

#pragma GCC pop_options

// ---------------------------------------------------------------- AMX-INT8

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,amx-tile,amx-int8")

// C[32, 32] (row stride ldc) = A[32 rows, kbs blocks of 64] (row stride lda) x a packed B sliver.
// Tiles 0-3 hold C, 4-5 A's two row halves, 6-7 B's two column halves.
inline void AmxTile(int64_t kbs, const int8_t* a, int64_t lda, const int8_t* b, int32_t* c, int64_t ldc) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t kb = 0; kb < kbs; ++kb, a += kKb, b += kBlockBytes) {
    _tile_loadd(4, a, lda);
    _tile_loadd(6, b, 64);
    _tile_dpbssd(0, 4, 6);
    _tile_loadd(7, b + 1024, 64);
    _tile_dpbssd(1, 4, 7);
    _tile_loadd(5, a + 16 * lda, lda);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  }
  const int64_t stride = ldc * sizeof(int32_t);
  _tile_stored(0, c, stride);
  _tile_stored(1, c + 16, stride);
  _tile_stored(2, c + 16 * ldc, stride);
  _tile_stored(3, c + 16 * ldc + 16, stride);
}

#pragma GCC pop_options

// The GEMM: B packed per call (in parallel), then C in blocks over the pool. The VNNI kernel packs
// A as well (in 12-row slivers); AMX reads A in place when k is a multiple of 64 and copies 32-row
// blocks into a zero-padded buffer otherwise (and at the bottom edge).
template <bool kAmx>
void Igemm512(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const int8_t* a, const int8_t* b,
              int32_t* c) {
  const int64_t kbs = KBlocks(k), sliver = SliverBytes(k), nbs = (n + kNb - 1) / kNb;
  const int64_t mr = kAmx ? 32 : kVnniMR, mbs = (m + mr - 1) / mr;
  auto* bpack = static_cast<int8_t*>(ThreadScratch(1, nbs * sliver));
  const int64_t a_words = kAmx ? 0 : mbs * kbs * 16 * kVnniMR;
  auto* apack = kAmx ? nullptr : static_cast<int32_t*>(ThreadScratch(0, a_words * sizeof(int32_t)));
  ParallelPack(d, 1, kAmx ? 0 : mbs, nbs, 32.0 * k, [&](bool is_a, int64_t first, int64_t last, int64_t) {
    for (int64_t s = first; s < last; ++s) {
      if (is_a) {
        PackAVnni(a + s * mr * k, k, static_cast<int>(std::min(mr, m - s * mr)), k, apack + s * kbs * 16 * kVnniMR);
      } else {
        PackBSliver(b + s * kNb, n, static_cast<int>(std::min(kNb, n - s * kNb)), k, bpack + s * sliver);
      }
    }
  });
  const bool a_in_place = k % kKb == 0;
  ParallelBlocks(d, m, n, k, mr, kNb, kAmx ? 128 : 192, 256, [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    alignas(64) int32_t edge[32 * 32];
    if constexpr (kAmx) {
      ConfigureTiles16x64();
      for (int64_t i0 = m0; i0 < m1; i0 += 32) {
        const int rows = static_cast<int>(std::min<int64_t>(32, m1 - i0));
        const int8_t* ap = a + i0 * k;
        int64_t lda = k;
        if (!a_in_place || rows < 32) {
          int8_t* ablock = static_cast<int8_t*>(ThreadScratch(0, 32 * kbs * kKb));
          lda = kbs * kKb;
          std::memset(ablock, 0, 32 * lda);
          for (int r = 0; r < rows; ++r) std::memcpy(ablock + r * lda, a + (i0 + r) * k, k);
          ap = ablock;
        }
        for (int64_t j0 = n0; j0 < n1; j0 += kNb) {
          const int cols = static_cast<int>(std::min<int64_t>(kNb, n1 - j0));
          const int8_t* bp = bpack + (j0 / kNb) * sliver;
          if (rows == 32 && cols == 32) {
            AmxTile(kbs, ap, lda, bp, c + i0 * n + j0, n);
          } else {
            AmxTile(kbs, ap, lda, bp, edge, 32);
            StoreEdge(edge, 32, rows, cols, c + i0 * n + j0, n);
          }
        }
      }
      ReleaseTiles();
    } else {
      for (int64_t j0 = n0; j0 < n1; j0 += kNb) {
        const int cols = static_cast<int>(std::min<int64_t>(kNb, n1 - j0));
        const int8_t* bp = bpack + (j0 / kNb) * sliver;
        for (int64_t i0 = m0; i0 < m1; i0 += kVnniMR) {
          const int rows = static_cast<int>(std::min<int64_t>(kVnniMR, m1 - i0));
          VnniTile(kbs, apack + (i0 / kVnniMR) * kbs * 16 * kVnniMR, bp, c + i0 * n + j0, n, rows, cols);
        }
      }
    }
  });
}

}  // namespace igemm_detail
}  // namespace cpu
}  // namespace fastbert
