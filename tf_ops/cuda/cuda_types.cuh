// Device-side type helpers shared by the .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "tf_ops/cuda/kernels.h"

namespace fastbert {
namespace cuda {

template <typename T>
__device__ __forceinline__ float ToFloat(T x);
template <>
__device__ __forceinline__ float ToFloat<float>(float x) { return x; }
template <>
__device__ __forceinline__ float ToFloat<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float ToFloat<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Calls fn(T{}) with the CUDA element type of dtype.
template <typename Fn>
cudaError_t DispatchDType(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      return fn(float{});
    case DType::kFloat16:
      return fn(__half{});
    case DType::kBFloat16:
      return fn(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float BlockSum(float v, float* scratch /* 33 floats */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < warps ? scratch[lane] : 0.0f;
    s = WarpSum(s);
    if (lane == 0) scratch[32] = s;
  }
  __syncthreads();
  return scratch[32];
}

// The address a DeviceAddress stands for, in device code.
template <typename T>
__device__ __forceinline__ T* Resolve(DeviceAddress a) {
  return static_cast<T*>(const_cast<void*>(a.slot != nullptr ? *a.slot : a.ptr));
}

// quant_layout.h's QuantizeInt8 on the device: round half to even of x * inv_scale (one float32
// product, never fused into a neighbouring add), clamped to [-127, 127].
__device__ __forceinline__ int8_t QuantizeInt8Dev(float x, float inv_scale) {
  const float r = rintf(__fmul_rn(x, inv_scale));
  return static_cast<int8_t>(fminf(fmaxf(r, -127.0f), 127.0f));
}

inline unsigned CeilDiv(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace cuda
}  // namespace fastbert
