// The row counts the GPU encoder runs a remove_padding call over: its token count rounded up to a
// bucket, so that calls with new lengths but a token count in the same bucket share one captured
// CUDA graph and one set of GEMM plans (a new length vector every call is what serving sees).
// The extra rows are zeros; no result depends on them.
//
// Granule: 64 rows up to 2048 tokens, then 1/32 of the next power of two (128 rows up to 4096,
// 256 up to 8192, ...): at most 63 extra rows below 2048 tokens, above it at most 1/16 of the
// tokens and 2.3% on average; 72 buckets between 1 and 12288 tokens (B=32, S=384). Below ~2800
// rows the BERT GEMMs fill fewer 128x128 tiles than the H200 has SMs, so rounding up to 64 rows
// there adds no wave.
#pragma once

#include <algorithm>
#include <cstdint>

namespace fastbert {

constexpr int64_t kRowGranuleMin = 64;
constexpr int64_t kRowGranuleShift = 5;  // granule = next power of two / 32

// The bucket of `tokens` rows, at most `capacity` (B * S); 0 for no tokens.
inline int64_t RowBucket(int64_t tokens, int64_t capacity) {
  if (tokens <= 0) return 0;
  int64_t pow2 = 1;
  while (pow2 < tokens) pow2 <<= 1;
  const int64_t granule = std::max(kRowGranuleMin, pow2 >> kRowGranuleShift);
  return std::min(capacity, (tokens + granule - 1) / granule * granule);
}

}  // namespace fastbert
