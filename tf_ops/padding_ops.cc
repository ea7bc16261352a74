// RemovePadding / RebuildPadding kernels: validate on the host, copy rows on the device.
#define EIGEN_USE_THREADS

#include <cstdint>
#include <type_traits>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tf_ops/common/encoder_params.h"
#include "tf_ops/cpu/encoder_cpu.h"
#if FASTBERT_WITH_CUDA
#include "tf_ops/gpu_glue.h"
#endif
#include "unsupported/Eigen/CXX11/Tensor"

namespace fastbert {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;
using CPUDevice = Eigen::ThreadPoolDevice;

template <typename Device, typename T>
class RemovePaddingOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& hidden = ctx->input(0);
    const Tensor& seq_len = ctx->input(1);
    OP_REQUIRES(ctx, hidden.dims() == 3,
                InvalidArgument("hidden_states must be [batch, seq_len, hidden], got shape ",
                                hidden.shape().DebugString()));
    OP_REQUIRES(ctx, seq_len.dims() == 1 && seq_len.dim_size(0) == hidden.dim_size(0),
                InvalidArgument("sequence_length must be [batch] = [", hidden.dim_size(0), "], got shape ",
                                seq_len.shape().DebugString()));
    const int64_t B = hidden.dim_size(0), S = hidden.dim_size(1), H = hidden.dim_size(2);
    OP_REQUIRES(ctx, B < (1 << 30) && S < (1 << 30) && B * S < (int64_t{1} << 31),
                InvalidArgument("hidden_states is too large: ", hidden.shape().DebugString()));
    const int32_t* lengths = seq_len.flat<int32_t>().data();
    for (int64_t b = 0; b < B; ++b) {
      OP_REQUIRES(ctx, lengths[b] >= 0 && lengths[b] <= S,
                  InvalidArgument("sequence_length[", b, "] = ", lengths[b], " is outside [0, ", S,
                                  "] (the padded length of hidden_states)"));
    }
    std::vector<int32_t> cu(B + 1);
    const int64_t tokens = PrefixSums(lengths, static_cast<int>(B), cu.data());
    Tensor* packed = nullptr;
    Tensor* cu_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({tokens, H}), &packed));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B + 1}), &cu_out));
    std::copy(cu.begin(), cu.end(), cu_out->flat<int32_t>().data());  // host memory on both devices
    if constexpr (std::is_same<Device, CPUDevice>::value) {
      cpu::RemovePadding(hidden.flat<T>().data(), cu.data(), static_cast<int>(B), static_cast<int>(S), H,
                         packed->flat<T>().data());
    } else {
#if FASTBERT_WITH_CUDA
      OP_REQUIRES_OK(ctx, RemovePaddingOnGpu(ctx, hidden.flat<T>().data(), cu.data(), static_cast<int>(B),
                                             static_cast<int>(S), H * sizeof(T), packed->flat<T>().data()));
#endif
    }
  }
};

template <typename Device, typename T>
class RebuildPaddingOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& packed = ctx->input(0);
    const Tensor& cu_t = ctx->input(1);
    const Tensor& max_len_t = ctx->input(2);
    OP_REQUIRES(ctx, packed.dims() == 2,
                InvalidArgument("packed must be [tokens, hidden], got shape ", packed.shape().DebugString()));
    OP_REQUIRES(ctx, cu_t.dims() == 1 && cu_t.dim_size(0) >= 1,
                InvalidArgument("cu_seqlens must be [batch + 1] with at least one entry, got shape ",
                                cu_t.shape().DebugString()));
    OP_REQUIRES(ctx, max_len_t.dims() == 0,
                InvalidArgument("max_seq_len must be a scalar, got shape ", max_len_t.shape().DebugString()));
    const int64_t tokens = packed.dim_size(0), H = packed.dim_size(1);
    const int64_t B = cu_t.dim_size(0) - 1;
    const int32_t S = max_len_t.scalar<int32_t>()();
    OP_REQUIRES(ctx, S >= 0, InvalidArgument("max_seq_len must be >= 0, got ", S));
    OP_REQUIRES(ctx, B < (1 << 30) && B * S < (int64_t{1} << 31),
                InvalidArgument("output [", B, ", ", S, ", ", H, "] is too large"));
    const int32_t* cu = cu_t.flat<int32_t>().data();
    OP_REQUIRES(ctx, cu[0] == 0, InvalidArgument("cu_seqlens[0] must be 0, got ", cu[0]));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = int64_t{cu[b + 1]} - cu[b];
      OP_REQUIRES(ctx, len >= 0,
                  InvalidArgument("cu_seqlens must be non-decreasing: cu_seqlens[", b + 1, "] = ", cu[b + 1],
                                  " < cu_seqlens[", b, "] = ", cu[b]));
      OP_REQUIRES(ctx, len <= S,
                  InvalidArgument("sequence ", b, " has ", len, " tokens (cu_seqlens[", b + 1, "] - cu_seqlens[",
                                  b, "]), more than max_seq_len = ", S));
    }
    OP_REQUIRES(ctx, cu[B] == tokens,
                InvalidArgument("cu_seqlens[", B, "] = ", cu[B], " must equal the number of packed rows, ",
                                tokens));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, S, H}), &out));
    if constexpr (std::is_same<Device, CPUDevice>::value) {
      cpu::RebuildPadding(packed.flat<T>().data(), cu, static_cast<int>(B), S, H, out->flat<T>().data());
    } else {
#if FASTBERT_WITH_CUDA
      OP_REQUIRES_OK(ctx, RebuildPaddingOnGpu(ctx, packed.flat<T>().data(), cu, static_cast<int>(B), S,
                                              H * static_cast<int64_t>(sizeof(T)), out->flat<T>().data()));
#endif
    }
  }
};

#define REGISTER_CPU(T)                                                                              \
  REGISTER_KERNEL_BUILDER(                                                                           \
      Name("RemovePadding").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),                 \
      RemovePaddingOp<CPUDevice, T>);                                                                \
  REGISTER_KERNEL_BUILDER(                                                                           \
      Name("RebuildPadding").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),                \
      RebuildPaddingOp<CPUDevice, T>);
REGISTER_CPU(float)
REGISTER_CPU(double)
REGISTER_CPU(Eigen::half)
REGISTER_CPU(Eigen::bfloat16)
REGISTER_CPU(int32_t)
REGISTER_CPU(int8_t)
#undef REGISTER_CPU

#if FASTBERT_WITH_CUDA
// Lengths and offsets are validated on the host, so they live in host memory; TF copies them.
#define REGISTER_GPU(T)                                                                              \
  REGISTER_KERNEL_BUILDER(Name("RemovePadding")                                                      \
                              .Device(::tensorflow::DEVICE_GPU)                                      \
                              .HostMemory("sequence_length")                                         \
                              .HostMemory("cu_seqlens")                                              \
                              .TypeConstraint<T>("T"),                                               \
                          RemovePaddingOp<GPUDevice, T>);                                            \
  REGISTER_KERNEL_BUILDER(Name("RebuildPadding")                                                     \
                              .Device(::tensorflow::DEVICE_GPU)                                      \
                              .HostMemory("cu_seqlens")                                              \
                              .HostMemory("max_seq_len")                                             \
                              .TypeConstraint<T>("T"),                                               \
                          RebuildPaddingOp<GPUDevice, T>);
REGISTER_GPU(float)
REGISTER_GPU(double)
REGISTER_GPU(Eigen::half)
REGISTER_GPU(Eigen::bfloat16)
REGISTER_GPU(int8_t)
#undef REGISTER_GPU
#endif  // FASTBERT_WITH_CUDA

}  // namespace fastbert
