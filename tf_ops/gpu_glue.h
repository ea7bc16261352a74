// TensorFlow side of the GPU kernels: stream, device and scratch from the OpKernelContext, then
// the framework-free CUDA runner (tf_ops/cuda/encoder_runner.h).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tf_ops/common/encoder_params.h"

namespace fastbert {

struct GPUDevice {};  // tag for the kernel templates

// Float modes (T = float, Eigen::half, Eigen::bfloat16).
template <typename T>
::tensorflow::Status RunEncoderOnGpu(::tensorflow::OpKernelContext* ctx, const EncoderDims& dims,
                                     const int32_t* seq_len, const T* input,
                                     const std::vector<LayerWeights<T, T>>& layers, T* output);

// One int8 weight kernel of a call: its tensor (held by the op until the call returns), the
// layer's values inside it, and whether TF updates it copy-on-write (a variable's; see
// ResolveWeight in encoder_op.cc), which is what lets its relayout be cached.
struct KernelRef {
  const ::tensorflow::Tensor* tensor = nullptr;
  const void* data = nullptr;
  bool stable = false;
};
// Per layer: q, k, v, attention output, intermediate, output kernels, and quant_scales.
struct LayerKernelRefs {
  std::array<KernelRef, 6> kernels;
  KernelRef quant;
  const KernelRef& operator[](int i) const { return kernels[i]; }
};

// An op node's cache of its int8 kernels relaid out for the GPU GEMMs (int8 modes).
class GpuInt8Weights;
std::shared_ptr<GpuInt8Weights> NewGpuInt8Weights();

// Int8 modes. The kernels are relaid out ([in, out] -> [out, in], Q/K/V stacked) on the op's
// stream: once per variable buffer (kept in *cache and shared by every op node of the process
// reading the same buffers; an entry lives while some node's cache holds it, so the cache holds
// at most one relayout per layer and GEMM of each node), or every call for plain tensors. The
// quant_scales are read back and checked (finite, > 0) the same way: once per variable buffer, or
// every call (one small device-to-host copy per layer) for plain tensors.
template <typename T>
::tensorflow::Status RunEncoderInt8OnGpu(::tensorflow::OpKernelContext* ctx, const EncoderDims& dims,
                                         const int32_t* seq_len, const T* input,
                                         const std::vector<LayerWeights<T, int8_t>>& layers,
                                         const std::vector<LayerKernelRefs>& kernels, GpuInt8Weights* cache,
                                         T* output);

// cu_seqlens are host arrays of batch + 1 entries, validated by the caller.
::tensorflow::Status RemovePaddingOnGpu(::tensorflow::OpKernelContext* ctx, const void* padded,
                                        const int32_t* cu_seqlens, int batch, int seq_len, int64_t row_bytes,
                                        void* packed);
::tensorflow::Status RebuildPaddingOnGpu(::tensorflow::OpKernelContext* ctx, const void* packed,
                                         const int32_t* cu_seqlens, int batch, int seq_len, int64_t row_bytes,
                                         void* padded);

}  // namespace fastbert
