// The AMX kernel: bf16 tile products on operands split into three bf16 parts, its driver, and its
// weight packing.
// Part of sgemm.cc (included once, inside its #if FASTBERT_AVX2_GEMM); not a public header.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "tf_ops/cpu/cpu_features.h"
#include "tf_ops/cpu/gemm_blocks.h"
#include "tf_ops/cpu/sgemm.h"

namespace fastbert {
namespace cpu {
namespace sgemm_detail {

// Block sizes (overridable at build time for tuning runs).
#ifndef FB_AMX_CHUNK
#define FB_AMX_CHUNK 24
#define FB_AMX_TN 256
#define FB_AMX_TM 192
#endif

// AMX: fp32 products from bf16 tile multiplies. Each operand is split into three bf16 parts,
// x = h + m + l (8 significant bits each, 24 in all, as fp32), and C accumulates, in fp32, the six
// products h*h, h*m, m*h, h*l, l*h, m*m; the terms left out are below 2^-23 of the product, so the
// result matches an fp32 GEMM to fp32 rounding while the tile unit does ~14x the work per cycle of
// AVX-512 FMAs. A C block is 32x32 (four 16x16 tiles), a k block 32 deep.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,amx-tile,amx-bf16")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
//
// kParts = 1 is the bfloat16 mode's kernel (weights bfloat16 already): A rounded to bfloat16 too,
// one product per tile, float32 accumulation -- bfloat16 compute, as TensorFlow's bfloat16 matmuls.
template <int kParts>
struct AmxKernelT {
  static_assert(kParts == 1 || kParts == 3, "three parts (float32-level) or one (bfloat16)");
  static constexpr int64_t kBlock = 32;     // rows and columns of a C block; depth of a k block
  static constexpr int64_t kPart = 1024;    // bf16 values in one part of one packed 32x32 block
  static constexpr int64_t kPanel = kParts * kPart;  // one packed 32x32 block, all its parts
  static constexpr int64_t kChunk = FB_AMX_CHUNK;  // k blocks per pass over C (operands of a pass in L2)
  static constexpr int64_t kTaskN = FB_AMX_TN;
  static constexpr int64_t kTaskM = FB_AMX_TM;

  static __m512 Widen(__m256i bf) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf), 16)); }

  // x -> kParts bf16 parts (each rounded to nearest; the residues are exact in fp32).
  static void Split(__m512 x, __m256i parts[kParts]) {
    for (int p = 0; p < kParts; ++p) {
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
    for (int64_t kb = 0; kb * kBlock < k; ++kb, out += kPanel) {
      const int64_t k0 = kb * kBlock;
      const __mmask16 m0 = Mask(k - k0), m1 = Mask(k - k0 - 16);
      for (int r = 0; r < kBlock; ++r) {
        __m256i lo[kParts], hi[kParts];
        if (r < rows) {
          Split(Load16(a + r * lda + k0, m0), lo);
          Split(Load16(a + r * lda + k0 + 16, m1), hi);
        } else {
          for (int p = 0; p < kParts; ++p) lo[p] = hi[p] = _mm256_setzero_si256();
        }
        for (int p = 0; p < kParts; ++p) {
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
    for (int64_t kb = 0; kb * kBlock < k; ++kb, out += kPanel) {
      for (int half = 0; half < 2; ++half) {
        const __mmask16 m = Mask(cols - 16 * half);
        for (int pair = 0; pair < 16; ++pair) {
          const int64_t k0 = kb * kBlock + 2 * pair;
          __m256i even[kParts], odd[kParts];
          const __m512 zero = _mm512_setzero_ps();
          Split(k0 < k ? Load16(b + k0 * ldb + 16 * half, m) : zero, even);
          Split(k0 + 1 < k ? Load16(b + (k0 + 1) * ldb + 16 * half, m) : zero, odd);
          for (int p = 0; p < kParts; ++p) {
            const __m512i v = _mm512_or_si512(_mm512_cvtepu16_epi32(even[p]),
                                              _mm512_slli_epi32(_mm512_cvtepu16_epi32(odd[p]), 16));
            _mm512_store_si512(out + p * kPart + half * 512 + pair * 32, v);
          }
        }
      }
    }
  }

  static void ConfigureTiles() { ConfigureTiles16x64(); }
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
    if constexpr (kParts == 1) {
      for (int64_t kb = 0; kb < nkb; ++kb, a += kPanel, b += kPanel) {
        _tile_loadd(4, a, 64);
        _tile_loadd(6, b, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, b + 512, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a + 512, 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    } else {
    for (int64_t kb = 0; kb < nkb; ++kb, a += kPanel, b += kPanel) {
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
    _mm_prefetch(reinterpret_cast<const char*>(a + kPanel) + 64 * line, _MM_HINT_T0); \
    _mm_prefetch(reinterpret_cast<const char*>(b + kPanel) + 64 * line, _MM_HINT_T0); \
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
    }  // kParts == 3
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

// Parts per operand: bfloat16 weights mean the bfloat16 mode (one part); float32 and float16 weights
// get float32-level products (three).
template <typename Tb>
constexpr int AmxParts() {
  return std::is_same<Tb, Eigen::bfloat16>::value ? 1 : 3;
}

// The AMX GEMM: A split and packed per call, B too unless prepacked (in parallel), then 32x32 C
// blocks, each over up to kChunk k blocks before C is stored.
template <typename Tb>
void AmxImpl(const Eigen::ThreadPoolDevice& d, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
             const Tb* const* b, int64_t ldb, float* const* c, int64_t ldc, int count,
             const BlockEpilogue& epilogue, const PackedWeight* const* packed) {
  using K = AmxKernelT<AmxParts<Tb>()>;
  constexpr int64_t kB = K::kBlock, kPanel = K::kPanel;  // bf16 values of one packed 32x32 block
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

// AMX-BF16 and AVX512-BF16 on the CPU (the split uses its conversion), and Linux's permission for
// the tile state (which it gives only on request, per process).
inline bool AmxUsable() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.amx_tile && f.amx_bf16 && f.avx512_bf16 && f.amx_permitted;
}

template <typename Tb>
std::shared_ptr<const PackedWeight> AmxPackWeight(const Eigen::ThreadPoolDevice& d, int64_t k, int64_t n,
                                                  const Tb* b, int64_t ldb) {
  using K = AmxKernelT<AmxParts<Tb>()>;
  constexpr int64_t kB = K::kBlock, kPanel = K::kPanel;
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

}  // namespace sgemm_detail
}  // namespace cpu
}  // namespace fastbert
