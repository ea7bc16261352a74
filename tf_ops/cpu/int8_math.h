// The CPU int8 encoder's elementwise spans and mode 2's integer attention products, with AVX2
// where the build has it (every x86-64-v3 CPU) and plain loops otherwise. Both give the same values:
// the rounding is quant_layout.h's (round half to even, clamp to +-127) and integer sums are exact
// in any order.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "tf_ops/common/quant_layout.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace fastbert {
namespace cpu {

// out[i] = QuantizeInt8(x[i], inv).
inline void QuantizeSpan(const float* x, int64_t n, float inv, int8_t* out) {
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256 vi = _mm256_set1_ps(inv), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (; i + 32 <= n; i += 32) {
    __m256i q[4];
    for (int u = 0; u < 4; ++u) {
      const __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * u), vi),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q[u] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
    }
    // The packs work per 128-bit lane: dwords come out as q0 q1 q2 q3 (low halves), then the high
    // halves; the permute puts each vector's 8 bytes back in order.
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_permutevar8x32_epi32(b, order));
  }
#endif
  for (; i < n; ++i) out[i] = QuantizeInt8(x[i], inv);
}

// One row of a dequantized GEMM result: v = acc[n] * scale[n]; with requant, rounded to int8 on
// requant[n] (inv_requant[n] = 1 / requant[n]) and back; + bias[n] when given.
inline void DequantizeSpan(const int32_t* acc, int64_t n, const float* scale, const float* requant,
                           const float* inv_requant, const float* bias, float* out) {
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i))),
                             _mm256_loadu_ps(scale + i));
    if (requant != nullptr) {
      const __m256 r = _mm256_round_ps(_mm256_mul_ps(v, _mm256_loadu_ps(inv_requant + i)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm256_mul_ps(_mm256_min_ps(_mm256_max_ps(r, lo), hi), _mm256_loadu_ps(requant + i));
    }
    if (bias != nullptr) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + i));
    _mm256_storeu_ps(out + i, v);
  }
#endif
  for (; i < n; ++i) {
    float v = static_cast<float>(acc[i]) * scale[i];
    if (requant != nullptr) v = static_cast<float>(QuantizeInt8(v, inv_requant[i])) * requant[i];
    out[i] = bias != nullptr ? v + bias[i] : v;
  }
}

// Mode 2's attention products for one (sequence, head), exact int32: scores = Q K^T and
// ctx = P V, on int8 operands laid out as int16 pairs so that pmaddwd multiplies two k at once.
class Int8HeadProducts {
 public:
  static constexpr int64_t kCols = 32;  // columns per block of four 8-wide accumulators

  // k, v: rows [0, len) of the head's keys and values (row stride ld, d columns, d even).
  void Load(const int8_t* k, const int8_t* v, int64_t ld, int64_t len, int d) {
    len_ = len;
    d_ = d;
    len_pad_ = (len + kCols - 1) / kCols * kCols;
    d_pad_ = (d + kCols - 1) / kCols * kCols;
    // kp[c / 2][j][c % 2] = k[j][c];  vp[j / 2][c][j % 2] = v[j][c]; zeros beyond len and d.
    kp_.assign(static_cast<size_t>(d) * len_pad_, 0);
    vp_.assign(static_cast<size_t>((len + 1) / 2 * 2) * d_pad_, 0);
    for (int64_t j = 0; j < len; ++j) {
      for (int c = 0; c < d; ++c) {
        kp_[(c / 2) * len_pad_ * 2 + j * 2 + (c % 2)] = k[j * ld + c];
        vp_[(j / 2) * d_pad_ * 2 + c * 2 + (j % 2)] = v[j * ld + c];
      }
    }
  }

  // scores[j] = sum_c q[c] k[j][c] for j < len (scores holds len_pad() entries).
  void Scores(const int8_t* q, int32_t* scores) const {
    for (int64_t j0 = 0; j0 < len_pad_; j0 += kCols) {
      Block(q, d_ / 2, kp_.data() + j0 * 2, len_pad_ * 2, scores + j0);
    }
  }

  // ctx[c] = sum_j p[j] v[j][c] for c < d (ctx holds d_pad() entries).
  void Context(const int8_t* p, int32_t* ctx) const {
    pair_.assign(static_cast<size_t>((len_ + 1) / 2 * 2), 0);
    std::memcpy(pair_.data(), p, len_);
    for (int64_t c0 = 0; c0 < d_pad_; c0 += kCols) {
      Block(pair_.data(), (len_ + 1) / 2, vp_.data() + c0 * 2, d_pad_ * 2, ctx + c0);
    }
  }

  int64_t len_pad() const { return len_pad_; }
  int64_t d_pad() const { return d_pad_; }

 private:
  // out[0..32) = sum_t (x[2t], x[2t+1]) . (w[t][col][0], w[t][col][1]) over `pairs` pairs; w's pair
  // rows are `stride` int16 apart.
  static void Block(const int8_t* x, int64_t pairs, const int16_t* w, int64_t stride, int32_t* out) {
#if defined(__AVX2__)
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    for (int64_t t = 0; t < pairs; ++t, w += stride) {
      const uint32_t both = static_cast<uint16_t>(int16_t{x[2 * t]}) |
                            (static_cast<uint32_t>(static_cast<uint16_t>(int16_t{x[2 * t + 1]})) << 16);
      const __m256i xv = _mm256_set1_epi32(static_cast<int32_t>(both));
      for (int u = 0; u < 4; ++u) {
        acc[u] = _mm256_add_epi32(
            acc[u], _mm256_madd_epi16(xv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16 * u))));
      }
    }
    for (int u = 0; u < 4; ++u) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * u), acc[u]);
#else
    for (int col = 0; col < kCols; ++col) out[col] = 0;
    for (int64_t t = 0; t < pairs; ++t, w += stride) {
      for (int col = 0; col < kCols; ++col) {
        out[col] += int32_t{x[2 * t]} * w[2 * col] + int32_t{x[2 * t + 1]} * w[2 * col + 1];
      }
    }
#endif
  }

  int64_t len_ = 0, len_pad_ = 0, d_pad_ = 0;
  int d_ = 0;
  std::vector<int16_t> kp_, vp_;
  mutable std::vector<int8_t> pair_;
};

}  // namespace cpu
}  // namespace fastbert
