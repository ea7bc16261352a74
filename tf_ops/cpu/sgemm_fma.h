// The FMA kernels' shared parts: packing of A and B slivers, and the driver (blocking, threading)
// that runs a kernel K's register tiles. K supplies the tile (kMR rows x kNR columns), the block
// sizes, the packing of B and the micro-kernel (sgemm_avx2.h, sgemm_avx512.h).
// Part of sgemm.cc (included once, inside its #if FASTBERT_AVX2_GEMM); not a public header.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tf_ops/cpu/gemm_blocks.h"
#include "tf_ops/cpu/sgemm.h"

namespace fastbert {
namespace cpu {
namespace sgemm_detail {

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


}  // namespace sgemm_detail
}  // namespace cpu
}  // namespace fastbert
