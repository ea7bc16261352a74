// The element-wise kernels of the int8 modes around the int8 GEMMs (int8_gemm.h): quantizing,
// the weight re-layout, and the dequantizing epilogues fused with what follows each GEMM (bias,
// GELU, residual, LayerNorm, and quantizing for the next GEMM). The arithmetic is the CPU int8
// path's (tf_ops/cpu/encoder_int8.cc, quant_layout.h) step by step: float(acc) * (scale_a *
// scale_w), mode 2's per-channel requantization, + bias, in float32 with the products and sums
// unfused (__fmul_rn / __fadd_rn) where the CPU rounds them separately, so a GEMM result is
// requantized to the same int8 as there. What still differs: the order of LayerNorm's sums and
// the tanh/erf of GELU (a few float32 ulps), and mode 1 keeps Q/K/V and the residuals in the
// activation type (float16/bfloat16) where the CPU keeps float32.
#include <algorithm>
#include <cstdint>

#include "tf_ops/common/quant_layout.h"
#include "tf_ops/cuda/cuda_types.cuh"
#include "tf_ops/cuda/int8_kernels.h"

namespace fastbert {
namespace cuda {
namespace {

__device__ __forceinline__ int8_t Quant(float x, float inv_scale) { return QuantizeInt8Dev(x, inv_scale); }

__device__ __forceinline__ float Gelu(float x, Activation act) {
  if (act == Activation::kGeluTanh) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  }
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

// Four adjacent values of T, as one 8- or 16-byte access (column counts are multiples of 16).
template <typename T>
struct alignas(4 * sizeof(T)) Four {
  T v[4];
};
template <typename T>
__device__ __forceinline__ void Load4(const T* p, float (&out)[4]) {
  const Four<T> f = *reinterpret_cast<const Four<T>*>(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) out[i] = ToFloat(f.v[i]);
}
template <typename T>
__device__ __forceinline__ void Store4(T* p, const float (&in)[4]) {
  Four<T> f;
#pragma unroll
  for (int i = 0; i < 4; ++i) f.v[i] = FromFloat<T>(in[i]);
  *reinterpret_cast<Four<T>*>(p) = f;
}
__device__ __forceinline__ void Store4Int8(int8_t* p, const float (&in)[4], float inv_scale) {
  char4 c;
  c.x = QuantizeInt8Dev(in[0], inv_scale);
  c.y = QuantizeInt8Dev(in[1], inv_scale);
  c.z = QuantizeInt8Dev(in[2], inv_scale);
  c.w = QuantizeInt8Dev(in[3], inv_scale);
  *reinterpret_cast<char4*>(p) = c;
}

// Columns n .. n + 3 of a GEMM result, dequantized, before the bias (CPU: Dequantize()).
__device__ __forceinline__ void Dequant4(const int32_t* acc, float scale_a, const Int8Dequant& q, int n,
                                         float (&v)[4]) {
  const int4 a = *reinterpret_cast<const int4*>(acc);
  const int32_t av[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float s = __fmul_rn(scale_a, q.scale_w[q.w_group == 1 ? n + i : n / q.w_group]);
    v[i] = __fmul_rn(static_cast<float>(av[i]), s);
    if (q.requant != nullptr) {
      const float rq = q.requant[n + i];
      v[i] = __fmul_rn(static_cast<float>(Quant(v[i], 1.0f / rq)), rq);
    }
  }
}

template <typename T>
__global__ void QuantizeKernel(DeviceAddress x_addr, int64_t n, const float* __restrict__ scale,
                               int8_t* __restrict__ out) {
  const T* x = Resolve<const T>(x_addr);
  const float inv = 1.0f / *scale;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = Quant(ToFloat(x[i]), inv);
  }
}

// 32 x 32 tiles through shared memory: dst[c * rows + r] = src[r * cols + c].
__global__ void TransposeInt8Kernel(const int8_t* __restrict__ src, int64_t rows, int64_t cols,
                                    int8_t* __restrict__ dst) {
  __shared__ int8_t tile[32][33];
  const int64_t r0 = int64_t{blockIdx.y} * 32, c0 = int64_t{blockIdx.x} * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = src[r * cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t c = c0 + i, r = r0 + threadIdx.x;
    if (r < rows && c < cols) dst[c * rows + r] = tile[threadIdx.x][i];
  }
}

constexpr int kColThreads = 256;  // the row-wise kernels: blockIdx.x is the row, 4 columns a thread

// acc [rows, 3H] (Q, K, V side by side) -> three planes [3][rows][H] of Tout, + bias; with
// out_scales (mode 2) rounded to int8 first (the planes then hold integers, exact in Tout).
template <typename T, typename Tout>
__global__ void __launch_bounds__(kColThreads)
    DequantQkvKernel(const int32_t* __restrict__ acc, int64_t rows, int hidden, const float* scale_a, Int8Dequant q,
                     QkvBias<T> bias, const float* __restrict__ out_scales, Tout* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const int col = (blockIdx.y * kColThreads + threadIdx.x) * 4;
  if (col >= 3 * hidden) return;
  const int j = col / hidden, c = col - j * hidden;
  float v[4], b[4];
  Dequant4(acc + r * 3 * hidden + col, *scale_a, q, col, v);
  Load4(bias.b[j] + c, b);
#pragma unroll
  for (int i = 0; i < 4; ++i) v[i] = __fadd_rn(v[i], b[i]);
  if (out_scales != nullptr) {
    const float inv = 1.0f / out_scales[j];
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = static_cast<float>(Quant(v[i], inv));
  }
  Store4(out + (j * rows + r) * hidden + c, v);
}

// acc [rows, I] -> int8 of act(dequant + bias) with *out_scale (the output GEMM's input).
template <typename T>
__global__ void __launch_bounds__(kColThreads)
    DequantActQuantKernel(const int32_t* __restrict__ acc, int cols, const float* scale_a, Int8Dequant q,
                          const T* __restrict__ bias, Activation act, const float* out_scale,
                          int8_t* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const int col = (blockIdx.y * kColThreads + threadIdx.x) * 4;
  if (col >= cols) return;
  float v[4], b[4];
  Dequant4(acc + r * cols + col, *scale_a, q, col, v);
  Load4(bias + col, b);
#pragma unroll
  for (int i = 0; i < 4; ++i) v[i] = Gelu(__fadd_rn(v[i], b[i]), act);
  Store4Int8(out + r * cols + col, v, 1.0f / *out_scale);
}

// One block per row, 4 columns a thread: LayerNorm(dequant + bias + residual) * gamma + beta,
// the row kept in shared memory (float32, cols <= kInt8MaxLayerNormCols).
template <typename T>
__global__ void DequantLayerNormKernel(Int8LayerNormParams p) {
  extern __shared__ float row[];
  __shared__ float scratch[33];
  const int64_t r = blockIdx.x;
  const int cols = p.cols;
  T* out = p.out.ptr != nullptr || p.out.slot != nullptr ? Resolve<T>(p.out) + r * cols : nullptr;
  int8_t* out8 = p.out_int8 != nullptr ? p.out_int8 + r * cols : nullptr;
  if (p.zero_lens != nullptr && static_cast<int>(r % p.seq_len) >= p.zero_lens[r / p.seq_len]) {
    const float zero[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = threadIdx.x * 4; c < cols; c += blockDim.x * 4) {
      if (out != nullptr) Store4(out + c, zero);
      if (out8 != nullptr) Store4Int8(out8 + c, zero, 1.0f);
    }
    return;
  }
  const float sa = p.acc != nullptr ? *p.scale_a : 0.0f;
  const T* bias = static_cast<const T*>(p.bias);
  const T* x = static_cast<const T*>(p.x);
  const T* residual = p.residual_int8 == nullptr ? Resolve<const T>(p.residual) + r * cols : nullptr;
  const int8_t* residual8 = p.residual_int8 != nullptr ? p.residual_int8 + r * cols : nullptr;
  const float res_scale = residual8 != nullptr ? *p.residual_scale : 0.0f;
  float sum = 0.0f;
  for (int c = threadIdx.x * 4; c < cols; c += blockDim.x * 4) {
    float v[4], b[4] = {0.0f, 0.0f, 0.0f, 0.0f}, res[4];
    if (x != nullptr) {  // the GEMM's float16 output, dequantized with its bias already
      Load4(x + r * cols + c, v);
    } else {
      Dequant4(p.acc + r * cols + c, sa, p.q, c, v);
      Load4(bias + c, b);
    }
    if (residual != nullptr) {
      Load4(residual + c, res);
    } else {
      const char4 q8 = *reinterpret_cast<const char4*>(residual8 + c);
      res[0] = __fmul_rn(static_cast<float>(q8.x), res_scale);
      res[1] = __fmul_rn(static_cast<float>(q8.y), res_scale);
      res[2] = __fmul_rn(static_cast<float>(q8.z), res_scale);
      res[3] = __fmul_rn(static_cast<float>(q8.w), res_scale);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      row[c + i] = __fadd_rn(__fadd_rn(v[i], b[i]), res[i]);  // each thread reads back only what it wrote
      sum += row[c + i];
    }
  }
  const float mean = BlockSum(sum, scratch) / cols;
  float sq = 0.0f;
  for (int c = threadIdx.x * 4; c < cols; c += blockDim.x * 4) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float d = row[c + i] - mean;
      row[c + i] = d;
      sq += d * d;
    }
  }
  const float inv = 1.0f / sqrtf(BlockSum(sq, scratch) / cols + p.eps);
  const T* gamma = static_cast<const T*>(p.gamma);
  const T* beta = static_cast<const T*>(p.beta);
  const float inv_out = out8 != nullptr ? 1.0f / *p.out_scale : 0.0f;
  for (int c = threadIdx.x * 4; c < cols; c += blockDim.x * 4) {
    float g[4], be[4], v[4];
    Load4(gamma + c, g);
    Load4(beta + c, be);
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = row[c + i] * inv * g[i] + be[i];
    if (out != nullptr) Store4(out + c, v);
    if (out8 != nullptr) Store4Int8(out8 + c, v, inv_out);
  }
}

// x [rows, cols] of T (the intermediate GEMM's dequantized output with its bias) -> int8 of act(x).
template <typename T>
__global__ void __launch_bounds__(kColThreads)
    ActQuantKernel(const T* __restrict__ x, int cols, Activation act, const float* out_scale, int8_t* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const int col = (blockIdx.y * kColThreads + threadIdx.x) * 4;
  if (col >= cols) return;
  float v[4];
  Load4(x + r * cols + col, v);
#pragma unroll
  for (int i = 0; i < 4; ++i) v[i] = Gelu(v[i], act);
  Store4Int8(out + r * cols + col, v, 1.0f / *out_scale);
}

// alpha[i] = scale_a * scale_w[i] for the spans of Mode1Vectors; bias_qkv = the three biases.
__global__ void Mode1VectorsKernel(Mode1Vectors v, int hidden, int inter) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int spans[4] = {3 * hidden, hidden, inter, hidden};
  float* out = v.alpha;
  for (int s = 0; s < 4; ++s) {
    if (i < spans[s]) out[i] = __fmul_rn(*v.scale_a[s], v.scale_w[s][i]);
    out += spans[s];
  }
  if (i < 3 * hidden) {
    const int j = i / hidden;
    static_cast<__half*>(v.bias_qkv)[i] = static_cast<const __half*>(v.bias[j])[i - j * hidden];
  }
}

unsigned GridFor(int64_t n) { return static_cast<unsigned>(std::min<int64_t>(CeilDiv(n, 256), 132 * 16)); }

}  // namespace

cudaError_t QuantizeRows(DType dtype, DeviceAddress x, int64_t n, const float* scale, int8_t* out,
                         cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  return DispatchDType(dtype, [&](auto t) {
    QuantizeKernel<decltype(t)><<<GridFor(n), 256, 0, stream>>>(x, n, scale, out);
    return cudaGetLastError();
  });
}

cudaError_t TransposeInt8(const int8_t* src, int64_t rows, int64_t cols, int8_t* dst, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (CeilDiv(rows, 32) > 65535) return cudaErrorInvalidValue;
  TransposeInt8Kernel<<<dim3(CeilDiv(cols, 32), CeilDiv(rows, 32)), dim3(32, 8), 0, stream>>>(src, rows, cols, dst);
  return cudaGetLastError();
}

cudaError_t DequantQkv(DType dtype, const int32_t* acc, int64_t rows, int hidden, const float* scale_a,
                       const Int8Dequant& q, const void* const bias[3], const float* out_scales, void* out,
                       cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (hidden % 4 != 0 || rows > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(rows), CeilDiv(3 * hidden / 4, kColThreads));
  return DispatchDType(dtype, [&](auto t) {
    using T = decltype(t);
    QkvBias<T> b;
    for (int j = 0; j < 3; ++j) b.b[j] = static_cast<const T*>(bias[j]);
    if (out_scales != nullptr) {  // integer planes: float16 whatever T (exact up to 2048)
      DequantQkvKernel<T, __half><<<grid, kColThreads, 0, stream>>>(acc, rows, hidden, scale_a, q, b, out_scales,
                                                                    static_cast<__half*>(out));
    } else {
      DequantQkvKernel<T, T><<<grid, kColThreads, 0, stream>>>(acc, rows, hidden, scale_a, q, b, nullptr,
                                                               static_cast<T*>(out));
    }
    return cudaGetLastError();
  });
}

// Row-wise kernels' grid: a block row per row, kColThreads threads of 4 columns each.
static bool RowGrid(int64_t rows, int cols, dim3* grid) {
  if (cols % 4 != 0 || rows > 0x7fffffff) return false;
  *grid = dim3(static_cast<unsigned>(rows), CeilDiv(cols / 4, kColThreads));
  return true;
}

cudaError_t DequantActQuant(DType dtype, const int32_t* acc, int64_t rows, int cols, const float* scale_a,
                            const Int8Dequant& q, const void* bias, Activation act, const float* out_scale,
                            int8_t* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  dim3 grid;
  if (!RowGrid(rows, cols, &grid)) return cudaErrorInvalidValue;
  return DispatchDType(dtype, [&](auto t) {
    using T = decltype(t);
    DequantActQuantKernel<T><<<grid, kColThreads, 0, stream>>>(acc, cols, scale_a, q, static_cast<const T*>(bias), act,
                                                               out_scale, out);
    return cudaGetLastError();
  });
}

cudaError_t ActQuant(DType dtype, const void* x, int64_t rows, int cols, Activation act, const float* out_scale,
                     int8_t* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  dim3 grid;
  if (!RowGrid(rows, cols, &grid)) return cudaErrorInvalidValue;
  return DispatchDType(dtype, [&](auto t) {
    using T = decltype(t);
    ActQuantKernel<T><<<grid, kColThreads, 0, stream>>>(static_cast<const T*>(x), cols, act, out_scale, out);
    return cudaGetLastError();
  });
}

cudaError_t ComputeMode1Vectors(const Mode1Vectors& v, int hidden, int inter, cudaStream_t stream) {
  const int n = std::max(3 * hidden, inter);
  Mode1VectorsKernel<<<CeilDiv(n, 256), 256, 0, stream>>>(v, hidden, inter);
  return cudaGetLastError();
}

cudaError_t DequantLayerNorm(DType dtype, const Int8LayerNormParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.cols > kInt8MaxLayerNormCols || p.cols % 4 != 0 || p.rows > 0x7fffffff) return cudaErrorInvalidValue;
  const int threads = std::min(256, std::max(32, (p.cols / 4 + 31) / 32 * 32));
  return DispatchDType(dtype, [&](auto t) {
    DequantLayerNormKernel<decltype(t)><<<static_cast<unsigned>(p.rows), threads, p.cols * sizeof(float), stream>>>(p);
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace fastbert
