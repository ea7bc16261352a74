// FastBertEncoder kernels: validate the inputs, collect weight pointers, hand over to the CPU
// implementation or the CUDA runner. No math here.
#define EIGEN_USE_THREADS

#include <string>
#include <type_traits>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tf_ops/common/encoder_params.h"
#include "tf_ops/cpu/encoder_cpu.h"
#if FASTBERT_WITH_CUDA
#include "tf_ops/gpu_glue.h"
#endif
#include "unsupported/Eigen/CXX11/Tensor"

namespace fastbert {

using ::tensorflow::DataTypeToEnum;
using ::tensorflow::OpInputList;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;

using CPUDevice = Eigen::ThreadPoolDevice;

// The 16 weight lists, in op input order, with the shape each entry must have.
struct WeightSpec {
  const char* name;
  bool is_kernel;
  enum Dim { kH, kI } rows, cols;  // rows unused for vectors
};
constexpr WeightSpec kWeightSpecs[] = {
    {"query_kernel", true, WeightSpec::kH, WeightSpec::kH},
    {"query_bias", false, WeightSpec::kH, WeightSpec::kH},
    {"key_kernel", true, WeightSpec::kH, WeightSpec::kH},
    {"key_bias", false, WeightSpec::kH, WeightSpec::kH},
    {"value_kernel", true, WeightSpec::kH, WeightSpec::kH},
    {"value_bias", false, WeightSpec::kH, WeightSpec::kH},
    {"attention_output_kernel", true, WeightSpec::kH, WeightSpec::kH},
    {"attention_output_bias", false, WeightSpec::kH, WeightSpec::kH},
    {"attention_layernorm_gamma", false, WeightSpec::kH, WeightSpec::kH},
    {"attention_layernorm_beta", false, WeightSpec::kH, WeightSpec::kH},
    {"intermediate_kernel", true, WeightSpec::kH, WeightSpec::kI},
    {"intermediate_bias", false, WeightSpec::kH, WeightSpec::kI},
    {"output_kernel", true, WeightSpec::kI, WeightSpec::kH},
    {"output_bias", false, WeightSpec::kH, WeightSpec::kH},
    {"output_layernorm_gamma", false, WeightSpec::kH, WeightSpec::kH},
    {"output_layernorm_beta", false, WeightSpec::kH, WeightSpec::kH},
};
constexpr int kNumWeightLists = sizeof(kWeightSpecs) / sizeof(kWeightSpecs[0]);

template <typename Device, typename T, typename Tw>
class FastBertEncoderOp : public OpKernel {
 public:
  explicit FastBertEncoderOp(OpKernelConstruction* c) : OpKernel(c) {
    std::string activation;
    int num_quant;
    OP_REQUIRES_OK(c, c->GetAttr("num_layer", &dims_.num_layer));
    OP_REQUIRES_OK(c, c->GetAttr("num_quant", &num_quant));
    OP_REQUIRES_OK(c, c->GetAttr("head_num", &dims_.head_num));
    OP_REQUIRES_OK(c, c->GetAttr("size_per_head", &dims_.size_per_head));
    OP_REQUIRES_OK(c, c->GetAttr("inter_size", &dims_.inter_size));
    OP_REQUIRES_OK(c, c->GetAttr("remove_padding", &dims_.remove_padding));
    OP_REQUIRES_OK(c, c->GetAttr("activation", &activation));
    OP_REQUIRES_OK(c, c->GetAttr("layer_norm_eps", &dims_.layer_norm_eps));
    OP_REQUIRES_OK(c, c->GetAttr("q_scaling", &dims_.q_scaling));
    OP_REQUIRES_OK(c, c->GetAttr("int8_mode", &dims_.int8_mode));
    dims_.activation = activation == "gelu" ? Activation::kGeluErf : Activation::kGeluTanh;
    OP_REQUIRES(c, dims_.size_per_head % 2 == 0,
                InvalidArgument("size_per_head must be even, got ", dims_.size_per_head));
    OP_REQUIRES(c, int64_t{dims_.head_num} * dims_.size_per_head <= (1 << 20),
                InvalidArgument("head_num * size_per_head is too large: ", dims_.head_num, " * ",
                                dims_.size_per_head));
    dims_.hidden = dims_.head_num * dims_.size_per_head;
    OP_REQUIRES(c, dims_.q_scaling > 0.0f, InvalidArgument("q_scaling must be > 0, got ", dims_.q_scaling));
    OP_REQUIRES(c, dims_.layer_norm_eps >= 0.0f,
                InvalidArgument("layer_norm_eps must be >= 0, got ", dims_.layer_norm_eps));
    OP_REQUIRES(c, dims_.int8_mode == 0,
                InvalidArgument("int8_mode must be 0 (INT8 execution is not built yet), got ", dims_.int8_mode));
    const bool int8_weights = DataTypeToEnum<Tw>::value == ::tensorflow::DT_INT8;
    OP_REQUIRES(c, int8_weights == (dims_.int8_mode != 0),
                InvalidArgument(dims_.int8_mode != 0
                                    ? "int8_mode 1 and 2 take int8 kernels (Tw = int8)"
                                    : "int8_mode 0 takes kernels of the same type as hidden_states (Tw = T)"));
    OP_REQUIRES(c, (num_quant == 0) == (dims_.int8_mode == 0),
                InvalidArgument("quant_scales must have one tensor per layer in int8 modes and none otherwise; "
                                "got ", num_quant, " with int8_mode ", dims_.int8_mode));
    OP_REQUIRES(c, num_quant == 0 || num_quant == dims_.num_layer,
                InvalidArgument("quant_scales must have num_layer (", dims_.num_layer, ") tensors, got ",
                                num_quant));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& hidden = ctx->input(0);
    const Tensor& seq_len = ctx->input(1);
    OP_REQUIRES(ctx, hidden.dims() == 3,
                InvalidArgument("hidden_states must be [batch, seq_len, hidden], got shape ",
                                hidden.shape().DebugString()));
    OP_REQUIRES(ctx, hidden.dim_size(2) == dims_.hidden,
                InvalidArgument("hidden_states' last dimension (", hidden.dim_size(2),
                                ") must equal head_num * size_per_head = ", dims_.head_num, " * ",
                                dims_.size_per_head, " = ", dims_.hidden));
    OP_REQUIRES(ctx, hidden.dim_size(0) <= (1 << 30) && hidden.dim_size(1) <= (1 << 30),
                InvalidArgument("hidden_states is too large: ", hidden.shape().DebugString()));
    OP_REQUIRES(ctx, seq_len.dims() == 1 && seq_len.dim_size(0) == hidden.dim_size(0),
                InvalidArgument("sequence_length must be [batch] = [", hidden.dim_size(0), "], got shape ",
                                seq_len.shape().DebugString()));
    EncoderDims dims = dims_;
    dims.batch = static_cast<int>(hidden.dim_size(0));
    dims.seq_len = static_cast<int>(hidden.dim_size(1));
    const int32_t* lengths = seq_len.flat<int32_t>().data();
    for (int b = 0; b < dims.batch; ++b) {
      OP_REQUIRES(ctx, lengths[b] >= 0 && lengths[b] <= dims.seq_len,
                  InvalidArgument("sequence_length[", b, "] = ", lengths[b], " is outside [0, ", dims.seq_len,
                                  "] (the padded length of hidden_states)"));
    }
    std::vector<LayerWeights<T, Tw>> layers;
    OP_REQUIRES_OK(ctx, CollectWeights(ctx, dims, &layers));

    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, hidden.shape(), &output));
    if (dims.batch == 0 || dims.seq_len == 0) return;
    Run(ctx, dims, lengths, hidden.flat<T>().data(), layers, output->flat<T>().data());
  }

 private:
  ::tensorflow::Status CollectWeights(OpKernelContext* ctx, const EncoderDims& dims,
                                      std::vector<LayerWeights<T, Tw>>* layers) {
    const int64_t H = dims.hidden, I = dims.inter_size;
    OpInputList lists[kNumWeightLists];
    for (int i = 0; i < kNumWeightLists; ++i) {
      TF_RETURN_IF_ERROR(ctx->input_list(kWeightSpecs[i].name, &lists[i]));
    }
    layers->resize(dims.num_layer);
    for (int l = 0; l < dims.num_layer; ++l) {
      const void* ptrs[kNumWeightLists];
      for (int i = 0; i < kNumWeightLists; ++i) {
        const WeightSpec& spec = kWeightSpecs[i];
        const Tensor& t = lists[i][l];
        const int64_t rows = spec.rows == WeightSpec::kH ? H : I;
        const int64_t cols = spec.cols == WeightSpec::kH ? H : I;
        const TensorShape want = spec.is_kernel ? TensorShape({rows, cols}) : TensorShape({cols});
        if (t.shape() != want) {
          return InvalidArgument(spec.name, "[", l, "] must have shape ", want.DebugString(), ", got ",
                                 t.shape().DebugString());
        }
        ptrs[i] = t.data();
      }
      LayerWeights<T, Tw>& w = (*layers)[l];
      w.q_kernel = static_cast<const Tw*>(ptrs[0]);
      w.q_bias = static_cast<const T*>(ptrs[1]);
      w.k_kernel = static_cast<const Tw*>(ptrs[2]);
      w.k_bias = static_cast<const T*>(ptrs[3]);
      w.v_kernel = static_cast<const Tw*>(ptrs[4]);
      w.v_bias = static_cast<const T*>(ptrs[5]);
      w.attn_out_kernel = static_cast<const Tw*>(ptrs[6]);
      w.attn_out_bias = static_cast<const T*>(ptrs[7]);
      w.attn_ln_gamma = static_cast<const T*>(ptrs[8]);
      w.attn_ln_beta = static_cast<const T*>(ptrs[9]);
      w.inter_kernel = static_cast<const Tw*>(ptrs[10]);
      w.inter_bias = static_cast<const T*>(ptrs[11]);
      w.out_kernel = static_cast<const Tw*>(ptrs[12]);
      w.out_bias = static_cast<const T*>(ptrs[13]);
      w.out_ln_gamma = static_cast<const T*>(ptrs[14]);
      w.out_ln_beta = static_cast<const T*>(ptrs[15]);
    }
    return ::tensorflow::Status();
  }

  void Run(OpKernelContext* ctx, const EncoderDims& dims, const int32_t* lengths, const T* input,
           const std::vector<LayerWeights<T, Tw>>& layers, T* output) {
    if constexpr (std::is_same<Device, CPUDevice>::value) {
      cpu::RunEncoder(ctx->eigen_device<CPUDevice>(), dims, lengths, input, layers, output);
    } else {
#if FASTBERT_WITH_CUDA
      OP_REQUIRES_OK(ctx, RunEncoderOnGpu(ctx, dims, lengths, input, layers, output));
#endif
    }
  }

  EncoderDims dims_;
};

#define REGISTER_CPU(T, Tw)                                                              \
  REGISTER_KERNEL_BUILDER(Name("FastBertEncoder")                                        \
                              .Device(::tensorflow::DEVICE_CPU)                          \
                              .TypeConstraint<T>("T")                                    \
                              .TypeConstraint<Tw>("Tw"),                                 \
                          FastBertEncoderOp<CPUDevice, T, Tw>);
REGISTER_CPU(float, float)
REGISTER_CPU(Eigen::half, Eigen::half)
REGISTER_CPU(Eigen::bfloat16, Eigen::bfloat16)
#undef REGISTER_CPU

#if FASTBERT_WITH_CUDA
#define REGISTER_GPU(T, Tw)                                                              \
  REGISTER_KERNEL_BUILDER(Name("FastBertEncoder")                                        \
                              .Device(::tensorflow::DEVICE_GPU)                          \
                              .HostMemory("sequence_length")                             \
                              .TypeConstraint<T>("T")                                    \
                              .TypeConstraint<Tw>("Tw"),                                 \
                          FastBertEncoderOp<GPUDevice, T, Tw>);
REGISTER_GPU(float, float)
REGISTER_GPU(Eigen::half, Eigen::half)
REGISTER_GPU(Eigen::bfloat16, Eigen::bfloat16)
#undef REGISTER_GPU
#endif  // FASTBERT_WITH_CUDA

}  // namespace fastbert
