// The GPU encoder's int8 modes: the CPU int8 path's numerics (tf_ops/cpu/encoder_int8.cc,
// quant_layout.h) with the CUTLASS int8 GEMMs (int8_gemm.h) and the fused kernels of
// int8_kernels.h. Per layer (mode 1 | mode 2):
//   x8 = int8(x)                         (the previous layer's LayerNorm writes it)
//   acc = x8 . Wqkv                      one GEMM, N = 3H
//   q,k,v = dequant(acc) + bias          | rounded to int8 (float16 integers)
//   ctx8 = int8(attention(q, k, v))      | integer Q.K^T and P.V, int8 probabilities
//   acc = ctx8 . Wo;  x1 = LN(dequant(acc) + bias + x), x1_8 = int8(x1)   | residual: x8 (int8)
//   acc = x1_8 . Wi;  inter8 = int8(gelu(dequant(acc) + bias))
//   acc = inter8 . Wout;  x = LN(dequant(acc) + bias + x1), x8 = int8(x)  | residual: x1_8
// (mode 2's dequant of the last three GEMMs includes the per-channel requantization).
// Mode 1 with float16 activations dequantizes in the GEMMs' epilogues instead (Int8GemmF16: float16
// out, per-channel scale + bias): Q/K/V come out side by side for the attention (row stride 3H),
// and the LayerNorms and the GELU read float16. Measured faster than int32 out + a separate pass
// (benchmarks/NOTES.md); the price is one float16 rounding of each GEMM result before LayerNorm and
// GELU, which the CPU keeps in float32.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "tf_ops/common/quant_layout.h"
#include "tf_ops/cuda/encoder_runner.h"
#include "tf_ops/cuda/int8_gemm.h"
#include "tf_ops/cuda/int8_kernels.h"
#include "tf_ops/cuda/runner_state.h"

namespace fastbert {
namespace cuda {

Status Int8Supported(int device, const EncoderDims& d, DType dtype) {
  int major = 0, minor = 0;
  FB_CUDA("cudaDeviceGetAttribute", cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  FB_CUDA("cudaDeviceGetAttribute", cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  auto no = [&](const std::string& why) {
    return Status{"int8_mode " + std::to_string(d.int8_mode) + " on the GPU " + why};
  };
  if (major != 9 || minor != 0) {
    return no("needs compute capability 9.0 (Hopper: the int8 GEMMs are sm_90a kernels); this GPU is " +
              std::to_string(major) + "." + std::to_string(minor) + " (place the op on /CPU:0)");
  }
  if (!Int8GemmShapeSupported(d.hidden, d.hidden) || !Int8GemmShapeSupported(d.inter_size, d.hidden)) {
    return no("needs hidden (" + std::to_string(d.hidden) + ") and inter_size (" + std::to_string(d.inter_size) +
              ") to be multiples of 16");
  }
  if (d.hidden > kInt8MaxLayerNormCols) {
    return no("supports hidden sizes up to " + std::to_string(kInt8MaxLayerNormCols) + ", got " +
              std::to_string(d.hidden));
  }
  if (d.int8_mode == 2 && !Int8AttentionSupports(d.size_per_head)) {
    return no("needs size_per_head 32, 64 or 128 (int8 attention), got " + std::to_string(d.size_per_head));
  }
  (void)dtype;
  return Status::Ok();
}

Status EnqueueInt8(GpuContext* ctx, const Call& c, cudaStream_t stream, StageTimer* timer) {
  const EncoderDims& d = *c.d;
  const Buffers& buf = c.buf;
  const DType dtype = c.dtype;
  const int64_t rows = c.rows;
  const int B = d.batch, S = d.seq_len, H = d.hidden, I = d.inter_size;
  const bool m2 = d.int8_mode == 2;
  const QuantLayout layout(d.int8_mode, H, I);
  const DeviceAddress input{c.input, buf.io}, output{c.output, buf.io + 1}, x{buf.x, nullptr};
  auto mark = [&](const char* stage) {
    if (timer) timer->Mark(stage, stream);
  };
  int sm_count = 0;
  FB_CUDA("cudaDeviceGetAttribute", cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, ctx->device()));
  const bool f16 = !m2 && dtype == DType::kFloat16;
  // Into buf.acc (int32, or float16 with alpha: scale + bias in the epilogue), or `out`.
  auto gemm = [&](const int8_t* a, const void* w, int64_t n, int64_t k, const float* alpha = nullptr,
                  const void* bias = nullptr, void* out = nullptr) {
    Int8GemmArgs g;
    g.m = rows;
    g.n = n;
    g.k = k;
    g.a = a;
    g.b = static_cast<const int8_t*>(w);
    g.c = out != nullptr ? out : buf.acc;
    g.workspace = buf.gemm_ws;
    g.workspace_bytes = kInt8GemmWorkspaceBytes;
    g.device = ctx->device();
    g.sm_count = sm_count;
    g.alpha = alpha;
    g.bias = bias;
    return alpha != nullptr ? Int8GemmF16(g, stream) : Int8Gemm(g, stream);
  };
  // Weight scales: per output channel in mode 1, one per kernel in mode 2.
  auto dequant = [&](int64_t w_offset, int cols, int64_t requant_offset, const float* sc) {
    Int8Dequant q;
    q.scale_w = sc + w_offset;
    q.w_group = m2 ? cols : 1;
    q.requant = m2 && requant_offset >= 0 ? sc + requant_offset : nullptr;
    return q;
  };

  if (d.remove_padding) {
    FB_CUDA("PackRows", PackRows(input, buf.cu_seqlens, B, S, rows, int64_t{H} * ElementSize(dtype), buf.x, stream));
    mark("pack");
  }
  const DeviceAddress first_in = d.remove_padding ? x : input;
  FB_CUDA("QuantizeRows", QuantizeRows(dtype, first_in, rows * H, (*c.layers)[0].quant + kQkvInput, buf.x8, stream));
  mark("quantize");
  const size_t plane_bytes = static_cast<size_t>(rows) * H * (m2 ? 2 : ElementSize(dtype));
  char* qkv = static_cast<char*>(buf.qkv);
  const float scale = 1.0f / (std::sqrt(static_cast<float>(d.size_per_head)) * d.q_scaling);

  for (int l = 0; l < d.num_layer; ++l) {
    const LayerWeights<void, void>& w = (*c.layers)[l];
    const float* sc = w.quant;
    const bool first = l == 0, last = l + 1 == d.num_layer;
    const DeviceAddress layer_in = first ? first_in : x;

    // Q, K, V: one GEMM over the stacked [3H, H] kernel (the weight scales of q, k, v are adjacent).
    const void* biases[3] = {w.q_bias, w.k_bias, w.v_bias};
    const float* alpha_qkv = buf.alpha;
    const float* alpha_ao = alpha_qkv + 3 * H;
    const float* alpha_i = alpha_ao + H;
    const float* alpha_o = alpha_i + I;
    if (f16) {
      Mode1Vectors v;
      const int64_t w_off[4] = {layout.q, layout.attention_output, layout.intermediate, layout.output};
      const int a_idx[4] = {kQkvInput, kAttentionOutputInput, kIntermediateInput, kOutputInput};
      for (int j = 0; j < 4; ++j) {
        v.scale_a[j] = sc + a_idx[j];
        v.scale_w[j] = sc + w_off[j];
      }
      for (int j = 0; j < 3; ++j) v.bias[j] = biases[j];
      v.alpha = buf.alpha;
      v.bias_qkv = buf.bias_qkv;
      FB_CUDA("ComputeMode1Vectors", ComputeMode1Vectors(v, H, I, stream));
      FB_CUDA("Int8GemmF16(qkv)", gemm(buf.x8, w.q_kernel, 3 * H, H, alpha_qkv, buf.bias_qkv, buf.qkv));
      mark("qkv_gemm");
    } else {
      FB_CUDA("Int8Gemm(qkv)", gemm(buf.x8, w.q_kernel, 3 * H, H));
      mark("qkv_gemm");
      Int8Dequant qkv_q = dequant(layout.q, H, -1, sc);
      FB_CUDA("DequantQkv", DequantQkv(dtype, buf.acc, rows, H, sc + kQkvInput, qkv_q, biases,
                                       m2 ? sc + kQ : nullptr, buf.qkv, stream));
      mark("qkv_dequant");
    }

    AttentionParams ap;
    ap.dtype = m2 ? DType::kFloat16 : dtype;
    ap.q = qkv;
    ap.k = f16 ? qkv + 2 * H : qkv + plane_bytes;  // f16: [rows][Q | K | V] float16
    ap.v = f16 ? qkv + 4 * H : qkv + 2 * plane_bytes;
    ap.ld = f16 ? 3 * H : H;
    ap.out_ld = H;
    ap.q_bias = nullptr;  // added by DequantQkv
    ap.v_bias = nullptr;
    ap.out = nullptr;
    ap.out_int8 = buf.ctx8;
    ap.out_scale = sc + kAttentionOutputInput;
    ap.int8_scales = m2 ? sc : nullptr;
    ap.cu_seqlens = d.remove_padding ? buf.cu_seqlens : nullptr;
    ap.seq_len = buf.seq_len;
    ap.batch = B;
    ap.seq_len_max = S;
    ap.padded_seq_len = S;
    ap.head_num = d.head_num;
    ap.size_per_head = d.size_per_head;
    ap.scale = scale;
    FB_CUDA("Attention", Attention(ap, stream));
    mark("attention");

    FB_CUDA("Int8Gemm(attention output)",
            f16 ? gemm(buf.ctx8, w.attn_out_kernel, H, H, alpha_ao, w.attn_out_bias)
                : gemm(buf.ctx8, w.attn_out_kernel, H, H));
    mark("attn_out_gemm");
    Int8LayerNormParams ln;
    if (f16) {
      ln.x = buf.acc;  // float16 [rows, H]
    } else {
      ln.acc = buf.acc;
    }
    ln.rows = rows;
    ln.cols = H;
    ln.scale_a = sc + kAttentionOutputInput;
    ln.q = dequant(layout.attention_output, H, layout.attention_output_gemm, sc);
    ln.bias = w.attn_out_bias;
    if (m2) {  // the residual is the int8 layer input
      ln.residual_int8 = buf.x8;
      ln.residual_scale = sc + kQkvInput;
    } else {
      ln.residual = layer_in;
    }
    ln.gamma = w.attn_ln_gamma;
    ln.beta = w.attn_ln_beta;
    ln.eps = d.layer_norm_eps;
    ln.out = m2 ? DeviceAddress{} : DeviceAddress{buf.x1, nullptr};
    ln.out_int8 = buf.x1_8;
    ln.out_scale = sc + kIntermediateInput;
    FB_CUDA("DequantLayerNorm", DequantLayerNorm(dtype, ln, stream));
    mark("layernorm");

    if (f16) {
      FB_CUDA("Int8GemmF16(intermediate)", gemm(buf.x1_8, w.inter_kernel, I, H, alpha_i, w.inter_bias));
      mark("inter_gemm");
      FB_CUDA("ActQuant", ActQuant(dtype, buf.acc, rows, I, d.activation, sc + kOutputInput, buf.inter8, stream));
    } else {
      FB_CUDA("Int8Gemm(intermediate)", gemm(buf.x1_8, w.inter_kernel, I, H));
      mark("inter_gemm");
      FB_CUDA("DequantActQuant",
              DequantActQuant(dtype, buf.acc, rows, I, sc + kIntermediateInput,
                              dequant(layout.intermediate, I, layout.intermediate_gemm, sc), w.inter_bias,
                              d.activation, sc + kOutputInput, buf.inter8, stream));
    }
    mark("activation");

    FB_CUDA("Int8Gemm(output)", f16 ? gemm(buf.inter8, w.out_kernel, H, I, alpha_o, w.out_bias)
                                    : gemm(buf.inter8, w.out_kernel, H, I));
    mark("out_gemm");
    ln.scale_a = sc + kOutputInput;
    ln.q = dequant(layout.output, H, layout.output_gemm, sc);
    ln.bias = w.out_bias;
    ln.residual = {};
    ln.residual_int8 = nullptr;
    if (m2) {
      ln.residual_int8 = buf.x1_8;
      ln.residual_scale = sc + kIntermediateInput;
    } else {
      ln.residual = DeviceAddress{buf.x1, nullptr};
    }
    ln.gamma = w.out_ln_gamma;
    ln.beta = w.out_ln_beta;
    if (last) {  // padded mode: the output tensor, zeros in the padding
      ln.out = d.remove_padding ? x : output;
      ln.zero_lens = d.remove_padding ? nullptr : buf.seq_len;
      ln.seq_len = S;
      ln.out_int8 = nullptr;
      ln.out_scale = nullptr;
    } else {
      ln.out = m2 ? DeviceAddress{} : x;
      ln.out_int8 = buf.x8;
      ln.out_scale = (*c.layers)[l + 1].quant + kQkvInput;
    }
    FB_CUDA("DequantLayerNorm", DequantLayerNorm(dtype, ln, stream));
    mark("layernorm");
  }
  if (d.remove_padding) {
    FB_CUDA("UnpackRows", UnpackRows(buf.x, buf.cu_seqlens, B, S, int64_t{H} * ElementSize(dtype), output, stream));
    mark("unpack");
  }
  return Status::Ok();
}

}  // namespace cuda
}  // namespace fastbert
