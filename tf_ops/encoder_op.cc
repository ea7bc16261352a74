// FastBertEncoder kernels: validate the inputs, collect weight pointers, hand over to the CPU
// implementation or the CUDA runner. No math here.
#define EIGEN_USE_THREADS

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <string>
#include <type_traits>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/tensor.h"
#include "tf_ops/common/encoder_params.h"
#include "tf_ops/common/quant_layout.h"
#include "tf_ops/cpu/encoder_cpu.h"
#include "tf_ops/cpu/sgemm.h"
#include "tf_ops/gpu_glue.h"  // declarations only; defined in CUDA builds
#if FASTBERT_WITH_CUDA
#endif
#include "unsupported/Eigen/CXX11/Tensor"

namespace fastbert {

using ::tensorflow::DataType;
using ::tensorflow::DataTypeString;
using ::tensorflow::DataTypeToEnum;
using ::tensorflow::OpInputList;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;

using CPUDevice = Eigen::ThreadPoolDevice;

constexpr int kNumWeightLists = kNumWeights;  // the lists of layer_weights.def, in op input order

// A weight input: a tensor, or the value of the resource variable it is a handle of (a shallow,
// reference-counted copy that keeps the buffer alive while the call is enqueued). *stable: the
// buffer is a variable's that TF updates copy-on-write while anyone else holds it (see
// FastBertEncoderOp::UsePackedWeights).
::tensorflow::Status ResolveWeight(OpKernelContext* ctx, const Tensor& input, const char* name, int layer,
                                   Tensor* out, bool* stable = nullptr) {
  if (stable != nullptr) *stable = false;
  if (input.dtype() != ::tensorflow::DT_RESOURCE) {
    *out = input;
    return ::tensorflow::Status();
  }
  if (input.NumElements() != 1) {
    return InvalidArgument(name, "[", layer, "] must be a scalar resource handle, got shape ",
                           input.shape().DebugString());
  }
  ::tensorflow::core::RefCountPtr<::tensorflow::Var> var;
  TF_RETURN_IF_ERROR(::tensorflow::LookupResource(ctx, input.flat<::tensorflow::ResourceHandle>()(0), &var));
  ::tensorflow::tf_shared_lock lock(*var->mu());
  if (!var->is_initialized) return InvalidArgument(name, "[", layer, "]: the variable is not initialized");
  *out = *var->tensor();
  // After a sparse update a variable is in copy-on-read mode, and later sparse updates write its
  // buffer in place.
  if (stable != nullptr) *stable = !var->copy_on_read_mode.load();
  return ::tensorflow::Status();
}

// A weight kernel packed for the CPU GEMMs (see FastBertEncoderOp::UsePackedWeights), with a
// reference to the buffer it was packed from.
struct PackedSource {
  Tensor source;               // held: while it is, TF's updates write the variable elsewhere
  const void* data = nullptr;  // the packed kernel's first value inside source
  std::shared_ptr<const cpu::PackedWeight> packed;
};

// One packing per weight buffer in the process, however many op nodes read it (an unrolled or
// retraced graph has one kernel object per node). Entries live while some op kernel holds them.
std::shared_ptr<PackedSource> SharedPacking(const Tensor& source, const void* data, int64_t rows, int64_t cols,
                                            const std::function<std::shared_ptr<const cpu::PackedWeight>()>& pack) {
  static std::mutex mu;
  static std::map<std::tuple<const void*, int64_t, int64_t, DataType>, std::weak_ptr<PackedSource>> registry;
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_tuple(data, rows, cols, source.dtype());
  auto it = registry.find(key);
  if (it != registry.end()) {
    std::shared_ptr<PackedSource> e = it->second.lock();
    if (e != nullptr && e->source.SharesBufferWith(source)) return e;
  }
  for (auto i = registry.begin(); i != registry.end();) i = i->second.expired() ? registry.erase(i) : std::next(i);
  auto e = std::make_shared<PackedSource>();
  e->source = source;
  e->data = data;
  e->packed = pack();
  registry[key] = e;
  return e;
}

// Which implementation runs a call: one functor per device (TensorFlow's custom-op pattern), each
// with the float modes and the int8 modes. This is the only place that chooses.
template <typename Device, typename T>
struct EncoderImpl;

template <typename T>
struct EncoderImpl<CPUDevice, T> {
  static constexpr bool kWeightsOnHost = true;
  static constexpr bool kPrepacksWeights = true;  // the AMX GEMMs take weights packed once
  static ::tensorflow::Status Supports(const EncoderDims&) { return ::tensorflow::Status(); }
  static ::tensorflow::Status Float(OpKernelContext* ctx, const EncoderDims& dims, const int32_t* lengths,
                                    const T* input, const std::vector<LayerWeights<T, T>>& layers,
                                    const std::vector<cpu::PackedLayer>& packed, T* output) {
    cpu::RunEncoder(ctx->eigen_device<CPUDevice>(), dims, lengths, input, layers, packed, output);
    return ::tensorflow::Status();
  }
  static ::tensorflow::Status Int8(OpKernelContext* ctx, const EncoderDims& dims, const int32_t* lengths,
                                   const T* input, const std::vector<LayerWeights<T, int8_t>>& layers,
                                   const std::vector<LayerKernelRefs>&, GpuInt8Weights*, T* output) {
    cpu::RunEncoderInt8(ctx->eigen_device<CPUDevice>(), dims, lengths, input, layers, output);
    return ::tensorflow::Status();
  }
};

#if FASTBERT_WITH_CUDA
template <typename T>
struct EncoderImpl<GPUDevice, T> {
  static constexpr bool kWeightsOnHost = false;  // quant_scales' values are in device memory
  static constexpr bool kPrepacksWeights = false;
  // The int8 modes' needs (a Hopper GPU, shapes) depend on the device: RunEncoderInt8OnGpu says.
  static ::tensorflow::Status Supports(const EncoderDims&) { return ::tensorflow::Status(); }
  static ::tensorflow::Status Float(OpKernelContext* ctx, const EncoderDims& dims, const int32_t* lengths,
                                    const T* input, const std::vector<LayerWeights<T, T>>& layers,
                                    const std::vector<cpu::PackedLayer>&, T* output) {
    return RunEncoderOnGpu(ctx, dims, lengths, input, layers, output);
  }
  static ::tensorflow::Status Int8(OpKernelContext* ctx, const EncoderDims& dims, const int32_t* lengths,
                                   const T* input, const std::vector<LayerWeights<T, int8_t>>& layers,
                                   const std::vector<LayerKernelRefs>& kernels, GpuInt8Weights* cache, T* output) {
    return RunEncoderInt8OnGpu(ctx, dims, lengths, input, layers, kernels, cache, output);
  }
};
#endif

template <typename Device, typename T>
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
    OP_REQUIRES(c, dims_.int8_mode >= 0 && dims_.int8_mode <= 2,
                InvalidArgument("int8_mode must be 0, 1 or 2, got ", dims_.int8_mode));
    DataType tw, tv;
    OP_REQUIRES_OK(c, c->GetAttr("Tw", &tw));
    OP_REQUIRES_OK(c, c->GetAttr("Tv", &tv));
    OP_REQUIRES(c, (tw == ::tensorflow::DT_RESOURCE) == (tv == ::tensorflow::DT_RESOURCE),
                InvalidArgument("kernels and vectors must both be tensors or both be resource variables"));
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
    // Before the weights are collected: a mode the device lacks is the first thing to say.
    OP_REQUIRES_OK(ctx, EncoderImpl<Device, T>::Supports(dims_));
    EncoderDims dims = dims_;
    dims.batch = static_cast<int>(hidden.dim_size(0));
    dims.seq_len = static_cast<int>(hidden.dim_size(1));
    const int32_t* lengths = seq_len.flat<int32_t>().data();
    for (int b = 0; b < dims.batch; ++b) {
      OP_REQUIRES(ctx, lengths[b] >= 0 && lengths[b] <= dims.seq_len,
                  InvalidArgument("sequence_length[", b, "] = ", lengths[b], " is outside [0, ", dims.seq_len,
                                  "] (the padded length of hidden_states)"));
    }
    Weights held;  // every weight tensor of the call, alive until Compute returns
    OP_REQUIRES_OK(ctx, CollectWeights(ctx, dims, &held));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, hidden.shape(), &output));
    if (dims.batch == 0 || dims.seq_len == 0) return;
    using Impl = EncoderImpl<Device, T>;
    if (dims.int8_mode == 0) {
      const std::vector<LayerWeights<T, T>> layers = Pointers<T>(held, dims.num_layer);
      std::vector<cpu::PackedLayer> packed;  // CPU only: kernels prepacked for the AMX GEMMs
      std::vector<std::shared_ptr<const cpu::PackedWeight>> in_use;  // alive until the call returns
      if (Impl::kPrepacksWeights) UsePackedWeights(ctx, dims, held, layers, &packed, &in_use);
      OP_REQUIRES_OK(ctx, Impl::Float(ctx, dims, lengths, hidden.flat<T>().data(), layers, packed,
                                      output->flat<T>().data()));
    } else {
      const std::vector<LayerWeights<T, int8_t>> layers = Pointers<int8_t>(held, dims.num_layer);
      std::vector<LayerKernelRefs> kernels;  // GPU only: what its kernel relayouts are cached by
      if (!Impl::kWeightsOnHost) kernels = KernelRefs(held, layers);
      OP_REQUIRES_OK(ctx, Impl::Int8(ctx, dims, lengths, hidden.flat<T>().data(), layers, kernels,
                                     gpu_int8_.get(), output->flat<T>().data()));
    }
  }

 private:
  // The weight lists, resolved: per list either num_layer tensors or one stacked tensor.
  struct Weights {
    std::vector<Tensor> tensors[kNumWeightLists];
    std::vector<char> stable[kNumWeightLists];  // per tensor, from ResolveWeight
    bool stacked[kNumWeightLists];
    std::vector<Tensor> quant;  // int8 modes: one float vector per layer (quant_layout.h)
    std::vector<char> quant_stable;
  };

  ::tensorflow::Status CollectWeights(OpKernelContext* ctx, const EncoderDims& dims, Weights* w) {
    const int64_t H = dims.hidden, I = dims.inter_size, L = dims.num_layer;
    const DataType t = DataTypeToEnum<T>::value;
    const DataType kernel_type = dims.int8_mode ? ::tensorflow::DT_INT8 : t;
    for (int i = 0; i < kNumWeightLists; ++i) {
      const WeightSpec& spec = kWeightSpecs[i];
      const bool is_kernel = spec.kind == WeightKind::kKernel;
      OpInputList list;
      TF_RETURN_IF_ERROR(ctx->input_list(spec.name, &list));
      if (list.size() != L && list.size() != 1) {
        return InvalidArgument(spec.name, " must have num_layer (", L, ") tensors or one stacked tensor, got ",
                               list.size());
      }
      const int64_t rows = spec.Rows(H, I), cols = spec.Cols(H, I);
      const TensorShape layer_shape = is_kernel ? TensorShape({rows, cols}) : TensorShape({cols});
      TensorShape stacked_shape = layer_shape;
      stacked_shape.InsertDim(0, L);
      auto& tensors = w->tensors[i];
      tensors.resize(list.size());
      w->stable[i].assign(list.size(), 0);
      for (int l = 0; l < list.size(); ++l) {
        bool stable = false;
        TF_RETURN_IF_ERROR(ResolveWeight(ctx, list[l], spec.name, l, &tensors[l], &stable));
        w->stable[i][l] = stable;
        const Tensor& x = tensors[l];
        const DataType want = is_kernel ? kernel_type : t;
        if (x.dtype() != want) {
          return InvalidArgument(spec.name, "[", l, "] is ", DataTypeString(x.dtype()), ", expected ",
                                 DataTypeString(want), " (hidden_states ", DataTypeString(t), ", int8_mode ",
                                 dims.int8_mode, ")");
        }
      }
      // One tensor: stacked [L, ...] (or, with one layer, possibly the layer's own shape).
      w->stacked[i] = list.size() == 1 && tensors[0].dims() == layer_shape.dims() + 1;
      const TensorShape& want = w->stacked[i] ? stacked_shape : layer_shape;
      for (int l = 0; l < list.size(); ++l) {
        if (tensors[l].shape() != want) {
          return InvalidArgument(spec.name, "[", l, "] must have shape ", layer_shape.DebugString(),
                                 list.size() == 1 ? " or " + stacked_shape.DebugString() + " (stacked)" : "",
                                 ", got ", tensors[l].shape().DebugString());
        }
      }
    }
    if (dims.int8_mode != 0) {
      OpInputList quant;
      TF_RETURN_IF_ERROR(ctx->input_list("quant_scales", &quant));
      const int64_t want = QuantLayout(dims.int8_mode, H, I).total;
      w->quant.resize(quant.size());
      w->quant_stable.assign(quant.size(), 0);
      for (int l = 0; l < quant.size(); ++l) {
        bool stable = false;
        TF_RETURN_IF_ERROR(ResolveWeight(ctx, quant[l], "quant_scales", l, &w->quant[l], &stable));
        w->quant_stable[l] = stable;
        const Tensor& q = w->quant[l];
        if (q.dtype() != ::tensorflow::DT_FLOAT || q.shape() != TensorShape({want})) {
          return InvalidArgument("quant_scales[", l, "] must be float32 [", want, "] for int8_mode ", dims.int8_mode,
                                 " (hidden ", H, ", inter_size ", I, "), got ", DataTypeString(q.dtype()), " ",
                                 q.shape().DebugString());
        }
        if (!EncoderImpl<Device, T>::kWeightsOnHost) continue;  // on the device: RunEncoderInt8OnGpu checks
        const float* v = q.template flat<float>().data();
        for (int64_t i = 0; i < want; ++i) {
          if (!(std::isfinite(v[i]) && v[i] > 0.0f)) {
            return InvalidArgument("quant_scales[", l, "][", i, "] = ", v[i], ": scales must be finite and > 0");
          }
        }
      }
    }
    return ::tensorflow::Status();
  }

  template <typename Tw>
  static std::vector<LayerWeights<T, Tw>> Pointers(const Weights& w, int num_layer) {
    std::vector<LayerWeights<T, Tw>> layers(num_layer);
    for (int l = 0; l < num_layer; ++l) {
      layers[l].ForEach([&](int i, auto& field) {
        const Tensor& x = w.tensors[i][w.stacked[i] ? 0 : l];
        const char* p = static_cast<const char*>(x.data());
        if (w.stacked[i]) p += x.NumElements() / num_layer * l * ::tensorflow::DataTypeSize(x.dtype());
        field = reinterpret_cast<std::remove_reference_t<decltype(field)>>(p);
      });
      layers[l].quant = w.quant.empty() ? nullptr : w.quant[l].template flat<float>().data();
    }
    return layers;
  }

  static std::vector<LayerKernelRefs> KernelRefs(const Weights& w, const std::vector<LayerWeights<T, int8_t>>& layers) {
    std::vector<LayerKernelRefs> out(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) {
      const LayerWeights<T, int8_t>& lw = layers[l];
      const std::pair<int, const int8_t*> k[6] = {{kWeight_q_kernel, lw.q_kernel},
                                                  {kWeight_k_kernel, lw.k_kernel},
                                                  {kWeight_v_kernel, lw.v_kernel},
                                                  {kWeight_attn_out_kernel, lw.attn_out_kernel},
                                                  {kWeight_inter_kernel, lw.inter_kernel},
                                                  {kWeight_out_kernel, lw.out_kernel}};
      for (int j = 0; j < 6; ++j) {
        const int list = k[j].first, t = w.stacked[list] ? 0 : static_cast<int>(l);
        out[l].kernels[j] = KernelRef{&w.tensors[list][t], k[j].second, w.stable[list][t] != 0};
      }
      out[l].quant = KernelRef{&w.quant[l], lw.quant, w.quant_stable[l] != 0};
    }
    return out;
  }

  // CPU kernels that take prepacked weights (AMX: each weight split into three bf16 parts) get
  // every weight kernel packed once and reused while its tensor is unchanged. Only variables
  // qualify (ResolveWeight's *stable): TF's updates (assign, assign_add, optimizers, checkpoint
  // restore) write a new buffer whenever the old one is shared, and the cache holds a reference to
  // the one it packed, so the same data pointer means the same values. Other weights (plain
  // tensors) are packed per call. The packings are shared by all op nodes reading the same
  // variables (SharedPacking). FASTBERT_CPU_WEIGHT_CACHE=0 turns this off (it holds 1.5x the
  // float32 weights: 3 bf16 parts per value).
  void UsePackedWeights(OpKernelContext* ctx, const EncoderDims& dims, const Weights& held,
                        const std::vector<LayerWeights<T, T>>& layers, std::vector<cpu::PackedLayer>* packed,
                        std::vector<std::shared_ptr<const cpu::PackedWeight>>* in_use) {
    static const bool enabled = [] {
      const char* env = std::getenv("FASTBERT_CPU_WEIGHT_CACHE");
      return env == nullptr || std::strcmp(env, "0") != 0;
    }();
    if (!enabled || !cpu::GemmPrepacksWeights()) return;
    const int L = dims.num_layer;
    std::lock_guard<std::mutex> lock(cache_mu_);
    cache_.resize(kNumWeights * L);
    packed->assign(L, cpu::PackedLayer());
    for (int l = 0; l < L; ++l) {
      layers[l].ForEach([&](int list, const auto* data) {
        const WeightSpec& spec = kWeightSpecs[list];
        if (spec.kind != WeightKind::kKernel) return;
        const int t = held.stacked[list] ? 0 : l;
        const Tensor& source = held.tensors[list][t];
        std::shared_ptr<PackedSource>& e = cache_[list * L + l];
        if (!held.stable[list][t]) {
          e.reset();
          return;
        }
        if (e == nullptr || e->data != data || !e->source.SharesBufferWith(source)) {
          const int64_t rows = spec.Rows(dims.hidden, dims.inter_size), cols = spec.Cols(dims.hidden, dims.inter_size);
          e = SharedPacking(source, data, rows, cols, [&] {
            return cpu::PackWeight(ctx->eigen_device<CPUDevice>(), rows, cols, data, cols);
          });
        }
        if (e->packed == nullptr) return;
        (*packed)[l].kernel[list] = e->packed.get();
        in_use->push_back(e->packed);
      });
    }
  }

  EncoderDims dims_;
  // UsePackedWeights' cache: [weight list * num_layer + layer] (kernels only).
  std::mutex cache_mu_;
  std::vector<std::shared_ptr<PackedSource>> cache_;
  // GPU int8 modes: the kernels' relayouts (gpu_glue.h).
#if FASTBERT_WITH_CUDA
  std::shared_ptr<GpuInt8Weights> gpu_int8_ = EncoderImpl<Device, T>::kWeightsOnHost ? nullptr : NewGpuInt8Weights();
#else
  std::shared_ptr<GpuInt8Weights> gpu_int8_;
#endif
};

// Kernels and vectors: tensors of T (float modes), int8 kernels (int8 modes), or resource
// variables (either); the weight dtype is checked when the call runs.
#define REGISTER_WEIGHTS(DEVICE, DEV, T, TW, TV)                                                      \
  REGISTER_KERNEL_BUILDER(                                                                            \
      Name("FastBertEncoder").Device(DEVICE).HostMemory("sequence_length").TypeConstraint<T>("T").TW.TV, \
      FastBertEncoderOp<DEV, T>);
#define REGISTER(DEVICE, DEV, T)                                                                       \
  REGISTER_WEIGHTS(DEVICE, DEV, T, TypeConstraint<T>("Tw"), TypeConstraint<T>("Tv"))                 \
  REGISTER_WEIGHTS(DEVICE, DEV, T, TypeConstraint<int8_t>("Tw"), TypeConstraint<T>("Tv"))            \
  REGISTER_WEIGHTS(DEVICE, DEV, T, TypeConstraint("Tw", ::tensorflow::DT_RESOURCE),                  \
                   TypeConstraint("Tv", ::tensorflow::DT_RESOURCE))
REGISTER(::tensorflow::DEVICE_CPU, CPUDevice, float)
REGISTER(::tensorflow::DEVICE_CPU, CPUDevice, Eigen::half)
REGISTER(::tensorflow::DEVICE_CPU, CPUDevice, Eigen::bfloat16)
#if FASTBERT_WITH_CUDA
REGISTER(::tensorflow::DEVICE_GPU, GPUDevice, float)
REGISTER(::tensorflow::DEVICE_GPU, GPUDevice, Eigen::half)
REGISTER(::tensorflow::DEVICE_GPU, GPUDevice, Eigen::bfloat16)
#endif
#undef REGISTER
#undef REGISTER_WEIGHTS

}  // namespace fastbert
