// Kernels of the int8 modes besides the GEMMs and attention (int8_kernels.cu; no TensorFlow). The
// scales are device pointers into the layer's quant_scales vector (quant_layout.h), read when the
// kernels run, so captured graphs follow new scale values.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tf_ops/common/encoder_params.h"
#include "tf_ops/cuda/kernels.h"

namespace fastbert {
namespace cuda {

// How a GEMM's int32 results become floats: float(acc) * (scale_a * scale_w[n / w_group]), then
// in mode 2 rounded to int8 with requant[n] and scaled back (the CPU's Dequantize()).
struct Int8Dequant {
  const float* scale_w = nullptr;  // device: per output channel (w_group 1) or one per w_group columns
  int w_group = 1;
  const float* requant = nullptr;  // device [cols], or null
};

template <typename T>
struct QkvBias {
  const T* b[3];
};

// out[i] = QuantizeInt8(x[i], 1 / *scale) for n elements of dtype.
cudaError_t QuantizeRows(DType dtype, DeviceAddress x, int64_t n, const float* scale, int8_t* out,
                         cudaStream_t stream);

// dst [cols][rows] = src [rows][cols]^T (a weight kernel [in, out] to the GEMM's [out, in]).
cudaError_t TransposeInt8(const int8_t* src, int64_t rows, int64_t cols, int8_t* dst, cudaStream_t stream);

// acc [rows, 3 * hidden] (the Q, K, V GEMMs side by side) -> planes [3][rows][hidden], + bias[j].
// Mode 1 (out_scales null): planes of dtype. Mode 2: rounded to int8 with out_scales[0..2]
// (kQ, kK, kV) and stored as float16 integers (what the int8 attention reads).
cudaError_t DequantQkv(DType dtype, const int32_t* acc, int64_t rows, int hidden, const float* scale_a,
                       const Int8Dequant& q, const void* const bias[3], const float* out_scales, void* out,
                       cudaStream_t stream);

// out = QuantizeInt8(act(dequant(acc) + bias), 1 / *out_scale), [rows, cols].
cudaError_t DequantActQuant(DType dtype, const int32_t* acc, int64_t rows, int cols, const float* scale_a,
                            const Int8Dequant& q, const void* bias, Activation act, const float* out_scale,
                            int8_t* out, cudaStream_t stream);

// out = QuantizeInt8(act(x), 1 / *out_scale), x [rows, cols] of dtype.
cudaError_t ActQuant(DType dtype, const void* x, int64_t rows, int cols, Activation act, const float* out_scale,
                     int8_t* out, cudaStream_t stream);

// Mode 1 with float16 activations, where the GEMMs dequantize in their epilogue (Int8GemmF16): one
// layer's per-channel alphas scale_a * scale_w (CPU: Dequantize()'s s) of the Q/K/V [3H], attention
// output [H], intermediate [I] and output [H] GEMMs, back to back in alpha, and the Q/K/V biases
// stacked [3H] (float16).
struct Mode1Vectors {
  const float* scale_a[4];  // device scalars
  const float* scale_w[4];  // device, per channel
  const void* bias[3];      // q, k, v biases (float16)
  float* alpha;             // [3H + H + I + H]
  void* bias_qkv;           // [3H] float16
};
cudaError_t ComputeMode1Vectors(const Mode1Vectors& v, int hidden, int inter, cudaStream_t stream);

constexpr int kInt8MaxLayerNormCols = 12288;  // the row is kept in 48 KB of shared memory

// LayerNorm(dequant(acc) + bias + residual) * gamma + beta, row by row, written as dtype to `out`
// (if set) and as int8 with *out_scale to out_int8 (if set). The residual is dtype (mode 1) or
// int8 times *residual_scale (mode 2). zero_lens as in AddBiasResidualLayerNorm.
struct Int8LayerNormParams {
  const int32_t* acc = nullptr;  // or:
  const void* x = nullptr;       // the GEMM result already dequantized, with its bias (dtype)
  int64_t rows = 0;
  int cols = 0;
  const float* scale_a = nullptr;
  Int8Dequant q;
  const void* bias = nullptr;
  DeviceAddress residual;                 // dtype, or:
  const int8_t* residual_int8 = nullptr;  // with residual_scale
  const float* residual_scale = nullptr;
  const void* gamma = nullptr;
  const void* beta = nullptr;
  float eps = 0.0f;
  DeviceAddress out;  // none: ptr and slot null
  int8_t* out_int8 = nullptr;
  const float* out_scale = nullptr;
  const int32_t* zero_lens = nullptr;
  int seq_len = 1;
};
cudaError_t DequantLayerNorm(DType dtype, const Int8LayerNormParams& p, cudaStream_t stream);

}  // namespace cuda
}  // namespace fastbert
