// TensorFlow side of the GPU kernels: stream, device and scratch from the OpKernelContext, then
// the framework-free CUDA runner (tf_ops/cuda/encoder_runner.h).
#pragma once

#include <cstdint>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tf_ops/common/encoder_params.h"

namespace fastbert {

struct GPUDevice {};  // tag for the kernel templates

// Float modes (T = float, Eigen::half, Eigen::bfloat16); int8 modes have no GPU kernels yet.
template <typename T>
::tensorflow::Status RunEncoderOnGpu(::tensorflow::OpKernelContext* ctx, const EncoderDims& dims,
                                     const int32_t* seq_len, const T* input,
                                     const std::vector<LayerWeights<T, T>>& layers, T* output);

// cu_seqlens are host arrays of batch + 1 entries, validated by the caller.
::tensorflow::Status RemovePaddingOnGpu(::tensorflow::OpKernelContext* ctx, const void* padded,
                                        const int32_t* cu_seqlens, int batch, int seq_len, int64_t row_bytes,
                                        void* packed);
::tensorflow::Status RebuildPaddingOnGpu(::tensorflow::OpKernelContext* ctx, const void* packed,
                                         const int32_t* cu_seqlens, int batch, int seq_len, int64_t row_bytes,
                                         void* padded);

}  // namespace fastbert
