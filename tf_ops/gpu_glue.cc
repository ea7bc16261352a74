#include "tf_ops/gpu_glue.h"

#include <type_traits>

#include "tensorflow/core/framework/tensor.h"
#include "tf_ops/cuda/encoder_runner.h"
#include "xla/stream_executor/stream.h"
#include "xla/stream_executor/stream_executor.h"

namespace fastbert {
namespace {

using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

::tensorflow::Status Convert(const cuda::Status& st) {
  return st.ok() ? Status() : ::tensorflow::errors::Internal(st.message);
}

// The runner state for this op's device and TF compute stream.
Status GetContext(OpKernelContext* ctx, cuda::GpuContext** out) {
  auto* stream = ctx->op_device_context() ? ctx->op_device_context()->stream() : nullptr;
  if (stream == nullptr) return ::tensorflow::errors::Internal("no GPU stream for this op");
  auto cu_stream = static_cast<cudaStream_t>(stream->platform_specific_handle().stream);
  return Convert(cuda::GpuContext::Get(stream->parent()->device_ordinal(), cu_stream, out));
}

Status AllocateWorkspace(OpKernelContext* ctx, size_t bytes, Tensor* tensor, cuda::Workspace* ws) {
  TF_RETURN_IF_ERROR(ctx->allocate_temp(::tensorflow::DT_INT8, TensorShape({static_cast<int64_t>(bytes)}), tensor));
  ws->ptr = tensor->flat<int8_t>().data();
  ws->bytes = bytes;
  return Status();
}

template <typename T>
constexpr cuda::DType DTypeOf() {
  if constexpr (std::is_same<T, float>::value) return cuda::DType::kFloat32;
  if constexpr (std::is_same<T, Eigen::half>::value) return cuda::DType::kFloat16;
  return cuda::DType::kBFloat16;
}

}  // namespace

template <typename T, typename Tw>
Status RunEncoderOnGpu(OpKernelContext* ctx, const EncoderDims& dims, const int32_t* seq_len, const T* input,
                       const std::vector<LayerWeights<T, Tw>>& layers, T* output) {
  if constexpr (!std::is_same<T, Tw>::value) {
    // FastBertEncoderOp::Compute answers Unimplemented for int8 on the GPU before getting here.
    return ::tensorflow::errors::Internal("int8 weights reached the GPU runner");
  } else {
    if (dims.size_per_head > cuda::kMaxGpuHeadSize) {
      return ::tensorflow::errors::InvalidArgument("size_per_head ", dims.size_per_head,
                                                   " is above the GPU kernels' limit of ", cuda::kMaxGpuHeadSize);
    }
    cuda::GpuContext* gpu = nullptr;
    TF_RETURN_IF_ERROR(GetContext(ctx, &gpu));
    int64_t rows = int64_t{dims.batch} * dims.seq_len;
    if (dims.remove_padding) {
      rows = 0;
      for (int b = 0; b < dims.batch; ++b) rows += seq_len[b];
    }
    Tensor scratch;
    cuda::Workspace ws;
    TF_RETURN_IF_ERROR(AllocateWorkspace(ctx, cuda::EncoderWorkspaceBytes(dims, rows, DTypeOf<T>()), &scratch, &ws));
    std::vector<LayerWeights<void, void>> raw(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) {
      const auto& w = layers[l];
      raw[l] = LayerWeights<void, void>{w.q_kernel,       w.q_bias,        w.k_kernel,       w.k_bias,
                                        w.v_kernel,       w.v_bias,        w.attn_out_kernel, w.attn_out_bias,
                                        w.attn_ln_gamma,  w.attn_ln_beta,  w.inter_kernel,   w.inter_bias,
                                        w.out_kernel,     w.out_bias,      w.out_ln_gamma,   w.out_ln_beta,
                                        nullptr};
    }
    return Convert(cuda::RunEncoder(gpu, dims, DTypeOf<T>(), seq_len, input, raw, output, ws));
  }
}

#define INSTANTIATE(T, Tw)                                                                                   \
  template Status RunEncoderOnGpu<T, Tw>(OpKernelContext*, const EncoderDims&, const int32_t*, const T*,     \
                                         const std::vector<LayerWeights<T, Tw>>&, T*);
INSTANTIATE(float, float)
INSTANTIATE(Eigen::half, Eigen::half)
INSTANTIATE(Eigen::bfloat16, Eigen::bfloat16)
INSTANTIATE(float, int8_t)
INSTANTIATE(Eigen::half, int8_t)
INSTANTIATE(Eigen::bfloat16, int8_t)
#undef INSTANTIATE

Status RemovePaddingOnGpu(OpKernelContext* ctx, const void* padded, const int32_t* cu_seqlens, int batch,
                          int seq_len, int64_t row_bytes, void* packed) {
  if (cu_seqlens[batch] == 0 || row_bytes == 0) return Status();
  cuda::GpuContext* gpu = nullptr;
  TF_RETURN_IF_ERROR(GetContext(ctx, &gpu));
  Tensor scratch;
  cuda::Workspace ws;
  TF_RETURN_IF_ERROR(AllocateWorkspace(ctx, cuda::PaddingWorkspaceBytes(batch), &scratch, &ws));
  return Convert(cuda::RemovePadding(gpu, padded, cu_seqlens, batch, seq_len, row_bytes, packed, ws));
}

Status RebuildPaddingOnGpu(OpKernelContext* ctx, const void* packed, const int32_t* cu_seqlens, int batch,
                           int seq_len, int64_t row_bytes, void* padded) {
  if (int64_t{batch} * seq_len == 0 || row_bytes == 0) return Status();
  cuda::GpuContext* gpu = nullptr;
  TF_RETURN_IF_ERROR(GetContext(ctx, &gpu));
  Tensor scratch;
  cuda::Workspace ws;
  TF_RETURN_IF_ERROR(AllocateWorkspace(ctx, cuda::PaddingWorkspaceBytes(batch), &scratch, &ws));
  return Convert(cuda::RebuildPadding(gpu, packed, cu_seqlens, batch, seq_len, row_bytes, padded, ws));
}

}  // namespace fastbert
