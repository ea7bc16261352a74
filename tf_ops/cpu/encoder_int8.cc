// CPU INT8 encoder (int8_mode 1 and 2): int8 x int8 -> int32 GEMMs, float everywhere else, with
// the rounding of quant_layout.h. This is the numerical definition the GPU kernels follow.
//  mode 1: activations quantized per tensor at each GEMM input, weights per output channel;
//          residuals, LayerNorm, softmax and attention in float.
//  mode 2: weights per tensor; Q, K, V and the softmax output are int8 (Q.K^T and P.V are integer
//          GEMMs), the attention-output, intermediate and output GEMM results are rounded to int8
//          (one range per output channel), and the residuals are the int8 inputs of the sublayers.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cmath>
#include <vector>

#include "tf_ops/common/quant_layout.h"
#include "tf_ops/cpu/cpu_math.h"
#include "tf_ops/cpu/encoder_cpu.h"
#include "tf_ops/cpu/igemm.h"
#include "tf_ops/cpu/int8_math.h"

namespace fastbert {
namespace cpu {
namespace {

template <typename T>
using Vec = std::vector<T, Eigen::aligned_allocator<T>>;

void Quantize(const Eigen::ThreadPoolDevice& d, const float* x, Index rows, Index cols, float scale, int8_t* out) {
  const float inv = 1.0f / scale;
  ParallelRows(d, rows, cols, [&](Index r) { QuantizeSpan(x + r * cols, cols, inv, out + r * cols); });
}

// out = acc * (scale_a * scale_w[n]) (rounded to int8 with requant[n] when given) + bias.
template <typename T>
void Dequantize(const Eigen::ThreadPoolDevice& d, const int32_t* acc, Index rows, Index cols, float scale_a,
                const float* scale_w, bool per_channel, const float* requant, const T* bias, float* out) {
  std::vector<float> scale(cols), inv_requant, bias_f;
  for (Index n = 0; n < cols; ++n) scale[n] = scale_a * scale_w[per_channel ? n : 0];
  if (requant != nullptr) {
    inv_requant.resize(cols);
    for (Index n = 0; n < cols; ++n) inv_requant[n] = 1.0f / requant[n];
  }
  if (bias != nullptr) {
    bias_f.resize(cols);
    for (Index n = 0; n < cols; ++n) bias_f[n] = static_cast<float>(bias[n]);
  }
  ParallelRows(d, rows, cols, [&](Index r) {
    DequantizeSpan(acc + r * cols, cols, scale.data(), requant, requant ? inv_requant.data() : nullptr,
                   bias ? bias_f.data() : nullptr, out + r * cols);
  });
}

struct Int8Scratch {
  Vec<float> x, x1, tmp, ctx, inter, q, k, v, residual;
  Vec<int8_t> aq, qi, ki, vi;
  Vec<int32_t> acc;
};

// Mode 2 attention: int8 Q, K, V (already rounded with their scales), integer Q.K^T and P.V.
void AttentionInt8(const Eigen::ThreadPoolDevice& d, const EncoderDims& dims, const int32_t* seq_len,
                   const int32_t* cu, const int8_t* q, const int8_t* k, const int8_t* v, const float* sc,
                   float* ctx) {
  const int B = dims.batch, S = dims.seq_len, NH = dims.head_num, D = dims.size_per_head;
  const Index H = dims.hidden;
  const float scale = 1.0f / (std::sqrt(static_cast<float>(D)) * dims.q_scaling);
  const float qk = sc[kQ] * sc[kK], pv = sc[kProbs] * sc[kV], inv_p = 1.0f / sc[kProbs];
  d.parallelFor(Index{B} * NH, Eigen::TensorOpCost(4.0 * S * D, 4.0 * S * D, 4.0 * S * S * D),
                [&](Index first, Index last) {
    Int8HeadProducts products;
    std::vector<int32_t> scores, acc;
    std::vector<float> probs;
    std::vector<int8_t> pq;
    for (Index task = first; task < last; ++task) {
      const int b = static_cast<int>(task / NH), h = static_cast<int>(task % NH);
      const Index len = seq_len[b];
      const Index row0 = dims.remove_padding ? Index{cu[b]} : Index{b} * S;
      const Index col0 = Index{h} * D;
      if (!dims.remove_padding) {
        for (Index t = len; t < S; ++t) std::fill(ctx + (row0 + t) * H + col0, ctx + (row0 + t) * H + col0 + D, 0.0f);
      }
      if (len == 0) continue;
      products.Load(k + row0 * H + col0, v + row0 * H + col0, H, len, D);
      scores.resize(products.len_pad());
      acc.resize(products.d_pad());
      probs.resize(len);
      pq.resize(len);
      for (Index i = 0; i < len; ++i) {
        products.Scores(q + (row0 + i) * H + col0, scores.data());
        Eigen::Map<Eigen::ArrayXf> row(probs.data(), len);
        for (Index j = 0; j < len; ++j) probs[j] = static_cast<float>(scores[j]) * qk * scale;
        row = (row - row.maxCoeff()).exp();  // vectorized exp, as the float attention's softmax
        const float sum = row.sum();
        for (Index j = 0; j < len; ++j) pq[j] = QuantizeInt8(probs[j] / sum, inv_p);
        products.Context(pq.data(), acc.data());
        float* out = ctx + (row0 + i) * H + col0;
        for (int c = 0; c < D; ++c) out[c] = static_cast<float>(acc[c]) * pv;
      }
    }
  });
}

}  // namespace

template <typename T>
void RunEncoderInt8(const Eigen::ThreadPoolDevice& d, const EncoderDims& dims, const int32_t* seq_len,
                    const T* input, const std::vector<LayerWeights<T, int8_t>>& layers, T* output) {
  const int mode = dims.int8_mode;
  const Index H = dims.hidden, I = dims.inter_size;
  std::vector<int32_t> cu;
  const Index rows = LayerRows(dims, seq_len, &cu, output);
  if (rows == 0) return;
  const QuantLayout layout(mode, H, I);
  const bool per_channel = mode == 1;
  Int8Scratch s;
  for (auto* buf : {&s.x, &s.x1, &s.tmp, &s.ctx, &s.q, &s.k, &s.v}) buf->resize(rows * H);
  s.inter.resize(rows * I);
  s.aq.resize(rows * std::max(H, I));
  s.acc.resize(rows * std::max(H, I));
  if (mode == 2) {
    for (auto* buf : {&s.qi, &s.ki, &s.vi}) buf->resize(rows * H);
    s.residual.resize(rows * H);
  }
  const Vec<T> zeros(H, T(0.0f));

  WidenInput(d, dims, seq_len, cu.data(), input, s.x.data());

  // GEMM of already quantized s.aq (scale a_scale) with an int8 kernel, dequantized into out.
  auto gemm = [&](Index k, Index n, const int8_t* w, float a_scale, const float* w_scale, const float* requant,
                  const T* bias, float* out) {
    Igemm(d, rows, n, k, s.aq.data(), w, s.acc.data());
    Dequantize(d, s.acc.data(), rows, n, a_scale, w_scale, per_channel, requant, bias, out);
  };
  const bool m2 = mode == 2;
  for (const auto& w : layers) {
    const float* sc = w.quant;
    Quantize(d, s.x.data(), rows, H, sc[kQkvInput], s.aq.data());
    if (mode == 1) {
      gemm(H, H, w.q_kernel, sc[kQkvInput], sc + layout.q, nullptr, w.q_bias, s.q.data());
      gemm(H, H, w.k_kernel, sc[kQkvInput], sc + layout.k, nullptr, w.k_bias, s.k.data());
      gemm(H, H, w.v_kernel, sc[kQkvInput], sc + layout.v, nullptr, w.v_bias, s.v.data());
      Attention(d, dims, seq_len, cu.data(), s.q.data(), zeros.data(), s.k.data(), zeros.data(), s.v.data(),
                zeros.data(), s.ctx.data());
    } else {
      // The residual of mode 2 is the int8 layer input.
      for (Index i = 0; i < rows * H; ++i) s.residual[i] = static_cast<float>(s.aq[i]) * sc[kQkvInput];
      const std::pair<const int8_t*, const T*> qkv[3] = {{w.q_kernel, w.q_bias}, {w.k_kernel, w.k_bias},
                                                         {w.v_kernel, w.v_bias}};
      const int64_t offsets[3] = {layout.q, layout.k, layout.v};
      const int index[3] = {kQ, kK, kV};
      int8_t* dst[3] = {s.qi.data(), s.ki.data(), s.vi.data()};
      for (int j = 0; j < 3; ++j) {
        gemm(H, H, qkv[j].first, sc[kQkvInput], sc + offsets[j], nullptr, qkv[j].second, s.tmp.data());
        Quantize(d, s.tmp.data(), rows, H, sc[index[j]], dst[j]);
      }
      AttentionInt8(d, dims, seq_len, cu.data(), s.qi.data(), s.ki.data(), s.vi.data(), sc, s.ctx.data());
    }
    Quantize(d, s.ctx.data(), rows, H, sc[kAttentionOutputInput], s.aq.data());
    gemm(H, H, w.attn_out_kernel, sc[kAttentionOutputInput], sc + layout.attention_output,
         m2 ? sc + layout.attention_output_gemm : nullptr, nullptr, s.tmp.data());
    AddBiasResidualLayerNorm(d, s.tmp.data(), w.attn_out_bias, m2 ? s.residual.data() : s.x.data(), w.attn_ln_gamma,
                             w.attn_ln_beta, dims.layer_norm_eps, rows, H, s.x1.data());
    Quantize(d, s.x1.data(), rows, H, sc[kIntermediateInput], s.aq.data());
    if (m2) {  // the next residual: the int8 input of the feed-forward block
      for (Index i = 0; i < rows * H; ++i) s.residual[i] = static_cast<float>(s.aq[i]) * sc[kIntermediateInput];
    }
    gemm(H, I, w.inter_kernel, sc[kIntermediateInput], sc + layout.intermediate,
         m2 ? sc + layout.intermediate_gemm : nullptr, nullptr, s.inter.data());
    AddBiasActivation(d, s.inter.data(), w.inter_bias, dims.activation, rows, I);
    Quantize(d, s.inter.data(), rows, I, sc[kOutputInput], s.aq.data());
    gemm(I, H, w.out_kernel, sc[kOutputInput], sc + layout.output, m2 ? sc + layout.output_gemm : nullptr, nullptr,
         s.tmp.data());
    AddBiasResidualLayerNorm(d, s.tmp.data(), w.out_bias, m2 ? s.residual.data() : s.x1.data(), w.out_ln_gamma,
                             w.out_ln_beta, dims.layer_norm_eps, rows, H, s.x.data());
  }

  NarrowOutput(d, dims, seq_len, cu.data(), s.x.data(), output);
}

#define INSTANTIATE(T)                                                                                 \
  template void RunEncoderInt8<T>(const Eigen::ThreadPoolDevice&, const EncoderDims&, const int32_t*, const T*, \
                                  const std::vector<LayerWeights<T, int8_t>>&, T*);
INSTANTIATE(float)
INSTANTIATE(Eigen::half)
INSTANTIATE(Eigen::bfloat16)
#undef INSTANTIATE

}  // namespace cpu
}  // namespace fastbert
