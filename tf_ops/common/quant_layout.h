// INT8: the per-layer quant_scales vector, and the rounding every implementation uses.
// Mirrored in Python by fastbert_tf/int8.py (QUANT_ACTIVATIONS, quant_layout).
#pragma once

#include <cmath>
#include <cstdint>

namespace fastbert {

// Activation scales (real value = int8 * scale), in this order, then the weight scales.
enum QuantIndex {
  kQkvInput = 0,            // layer input, shared by the Q/K/V GEMMs
  kQ = 1,                   // Q after its bias (mode 2: int8 into Q.K^T)
  kK = 2,                   // K after its bias (mode 2)
  kV = 3,                   // V after its bias (mode 2: int8 into P.V)
  kProbs = 4,               // softmax output (mode 2; 1/127 unless calibrated otherwise)
  kAttentionOutputInput = 5,
  kAttentionOutputGemm = 6,  // unused: mode 2 keeps per-channel scales (below)
  kIntermediateInput = 7,
  kIntermediateGemm = 8,     // unused, as kAttentionOutputGemm
  kOutputInput = 9,
  kOutputGemm = 10,          // unused, as kAttentionOutputGemm
  kNumActivationScales = 11,
};

// After the activation scales: mode 2's per-output-channel scales of the three GEMM results
// that are rounded to int8 (attention output, intermediate, output; BERT's FFN outputs have a few
// channels 10-100x larger than the rest, which one range per tensor cannot serve), then the
// weight scales: per output channel in mode 1, one per kernel in mode 2.
struct QuantLayout {
  int64_t attention_output_gemm, intermediate_gemm, output_gemm;  // mode 2
  int64_t q, k, v, attention_output, intermediate, output, total;
  QuantLayout(int int8_mode, int64_t hidden, int64_t inter) {
    const bool m2 = int8_mode == 2;
    attention_output_gemm = kNumActivationScales;
    intermediate_gemm = attention_output_gemm + (m2 ? hidden : 0);
    output_gemm = intermediate_gemm + (m2 ? inter : 0);
    const int64_t h = int8_mode == 1 ? hidden : 1, i = int8_mode == 1 ? inter : 1;
    q = output_gemm + (m2 ? hidden : 0);
    k = q + h;
    v = k + h;
    attention_output = v + h;
    intermediate = attention_output + h;
    output = intermediate + i;
    total = output + h;
  }
};

// Symmetric int8 in [-127, 127]: round half to even of x / scale, computed as x * (1 / scale)
// in float32, then clamped. Dequantization is q * scale; an int32 GEMM result is scaled by
// (scale_a * scale_w) computed in float32 first.
inline int8_t QuantizeInt8(float x, float inv_scale) {
  // rint, not nearbyint: the same value (both round in the current mode, to nearest even), but rint
  // compiles to one vroundps and lets the quantizing loops vectorize (nearbyint is a libm call).
  float r = std::rint(x * inv_scale);
  r = r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
  return static_cast<int8_t>(r);
}

}  // namespace fastbert
