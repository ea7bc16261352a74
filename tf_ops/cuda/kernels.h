// CUDA kernels of the encoder (no TensorFlow, no cuBLAS): plain pointers and a cudaStream_t.
// Every launcher returns the launch's cudaError_t. T is float, __half or __nv_bfloat16 (the
// runner passes TF's Eigen::half / Eigen::bfloat16 storage reinterpreted, same bits).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tf_ops/common/encoder_params.h"

namespace fastbert {
namespace cuda {

enum class DType { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// A buffer address known when the work is enqueued (`ptr`), or read by the kernel from device
// memory when it runs (`*slot`, if slot is set; ptr is then its value for this call, used for
// alignment checks). The runner passes the input and output tensors this way, so one captured
// CUDA graph serves calls whose tensors live anywhere.
struct DeviceAddress {
  const void* ptr = nullptr;
  const void* const* slot = nullptr;
};

// Gathers the real rows of padded [B, S, row_bytes] into packed rows [0, cu_seqlens[B]) and writes
// zeros in packed rows [cu_seqlens[B], rows) (any element type). cu_seqlens (device, B + 1) as
// from PrefixSums; rows >= cu_seqlens[B].
cudaError_t PackRows(DeviceAddress padded, const int32_t* cu_seqlens, int batch, int seq_len, int64_t rows,
                     int64_t row_bytes, void* packed, cudaStream_t stream);
// Scatters packed rows back into padded [B, S, row_bytes], with zeros in the padding.
cudaError_t UnpackRows(const void* packed, const int32_t* cu_seqlens, int batch, int seq_len, int64_t row_bytes,
                       DeviceAddress padded, cudaStream_t stream);

// out = LayerNorm(x + bias + residual) * gamma + beta over rows of `cols`, statistics in float.
// out may alias x or residual. If seq_len_zero (device, [rows / S]) is given, row r is written as
// zeros when r % S >= seq_len_zero[r / S] (padded mode's last layer).
cudaError_t AddBiasResidualLayerNorm(DType dtype, const void* x, const void* bias, DeviceAddress residual,
                                     const void* gamma, const void* beta, float eps, int64_t rows, int cols,
                                     DeviceAddress out, const int32_t* seq_len_zero, int seq_len,
                                     cudaStream_t stream);

// x = act(x + bias) in place over rows of `cols` (bias may be null).
cudaError_t AddBiasActivation(DType dtype, void* x, const void* bias, Activation act, int64_t rows, int cols,
                              cudaStream_t stream);

// Fused multi-head attention over real keys only, heads side by side in rows of width ld.
// Sequence b's rows start at cu_seqlens[b] (packed) or b * seq_len (cu_seqlens == nullptr,
// padded; rows at or past the length get zeros in out). The key bias is not needed (it shifts
// every score of a query row equally, which softmax ignores); the value bias is added to the output.
// Null biases are zeros.
//
// The int8 modes (quant_layout.h): with out_int8 the output is rounded to int8 with *out_scale
// and written there instead of `out`. With int8_scales (mode 2; float16, head sizes 32/64/128)
// q, k and v hold int8 values as float16 (exact), the scores are Q.K^T * scale_q * scale_k * scale
// (integer products, exact in the float32 accumulators), the probabilities are rounded to int8 with
// scale_probs after the full softmax (a second pass over the keys), and the output is
// P.V * scale_probs * scale_v (exact integer sums up to 2^24: S <= 1040 at head size 64) -- the CPU
// int8 path's AttentionInt8.
struct AttentionParams {
  DType dtype;
  const void* q;
  const void* k;
  const void* v;
  int64_t ld;  // row stride of q, k, v and out, in elements
  const void* q_bias;
  const void* v_bias;
  void* out;
  const int32_t* cu_seqlens;  // device, B + 1, or nullptr
  const int32_t* seq_len;     // device, B
  int batch;
  int seq_len_max;  // padded length S (padded mode) or the longest sequence (packed)
  int padded_seq_len;  // S in padded mode
  int head_num;
  int size_per_head;
  float scale;  // 1 / (sqrt(size_per_head) * q_scaling)
  int64_t out_ld = 0;  // row stride of out / out_int8; 0: ld
  int8_t* out_int8 = nullptr;
  const float* out_scale = nullptr;    // device
  const float* int8_scales = nullptr;  // device: the layer's quant_scales
};
// Whether the int8 attention (int8_scales set) supports this head size.
inline bool Int8AttentionSupports(int size_per_head) {
  return size_per_head == 32 || size_per_head == 64 || size_per_head == 128;
}
cudaError_t Attention(const AttentionParams& p, cudaStream_t stream);

// Largest size_per_head the GPU attention supports.
constexpr int kMaxGpuHeadSize = 256;

}  // namespace cuda
}  // namespace fastbert
