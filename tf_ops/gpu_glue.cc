#include "tf_ops/gpu_glue.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>

#include "tensorflow/core/framework/allocator.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/platform/tensor_float_32_utils.h"
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

// The runner's scratch comes from the device's TensorFlow allocator, as temp tensors do: TF hands
// a freed block out again only to work on (or ordered after) the same compute stream.
class TfDeviceMemory : public cuda::DeviceMemory {
 public:
  explicit TfDeviceMemory(::tensorflow::Allocator* allocator) : allocator_(allocator) {}
  void* Allocate(size_t bytes) override { return allocator_->AllocateRaw(256, bytes); }
  void Free(void* p) override { allocator_->DeallocateRaw(p); }

 private:
  ::tensorflow::Allocator* allocator_;  // TF's GPU allocators live as long as the process
};

// The runner state for this op's device and TF compute stream.
Status GetContext(OpKernelContext* ctx, cuda::GpuContext** out) {
  auto* stream = ctx->op_device_context() ? ctx->op_device_context()->stream() : nullptr;
  if (stream == nullptr) return ::tensorflow::errors::Internal("no GPU stream for this op");
  auto cu_stream = static_cast<cudaStream_t>(stream->platform_specific_handle().stream);
  ::tensorflow::Allocator* allocator = ctx->device()->GetAllocator(::tensorflow::AllocatorAttributes());
  static std::mutex mu;
  static auto* memories = new std::map<::tensorflow::Allocator*, TfDeviceMemory*>();  // kept for the process
  TfDeviceMemory* memory;
  {
    std::lock_guard<std::mutex> lock(mu);
    TfDeviceMemory*& m = (*memories)[allocator];
    if (m == nullptr) m = new TfDeviceMemory(allocator);
    memory = m;
  }
  return Convert(cuda::GpuContext::Get(stream->parent()->device_ordinal(), cu_stream, memory, out));
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

template <typename T>
Status RunEncoderOnGpu(OpKernelContext* ctx, const EncoderDims& dims, const int32_t* seq_len, const T* input,
                       const std::vector<LayerWeights<T, T>>& layers, T* output) {
  if (dims.size_per_head > cuda::kMaxGpuHeadSize) {
    return ::tensorflow::errors::InvalidArgument("size_per_head ", dims.size_per_head,
                                                 " is above the GPU kernels' limit of ", cuda::kMaxGpuHeadSize);
  }
  cuda::GpuContext* gpu = nullptr;
  TF_RETURN_IF_ERROR(GetContext(ctx, &gpu));
  std::vector<LayerWeights<void, void>> raw;
  raw.reserve(layers.size());
  for (const auto& w : layers) raw.push_back(w.Erased());
  EncoderDims call = dims;
  // TensorFlow's own matmuls follow this switch (on by default): so do the op's float32 GEMMs.
  call.tf32 = std::is_same<T, float>::value && tsl::tensor_float_32_execution_enabled();
  return Convert(cuda::RunEncoder(gpu, call, DTypeOf<T>(), seq_len, input, raw, output));
}

// ---------------------------------------------------------------- int8 kernels for the GEMMs

namespace {

// The four GEMM weights of a layer: which kernels (LayerKernelRefs positions) each stacks.
constexpr int kGroups = 4;
constexpr int kGroupFirst[kGroups] = {0, 3, 4, 5};
constexpr int kGroupCount[kGroups] = {3, 1, 1, 1};

// One GEMM weight relaid out: [out, in] int8, the group's kernels stacked along out.
struct Relaid {
  std::vector<Tensor> sources;  // held: while they are, TF's updates write the variables elsewhere
  std::vector<const void*> data;
  Tensor relaid;
  bool Matches(const LayerKernelRefs& k, int g) const {
    for (int j = 0; j < kGroupCount[g]; ++j) {
      const KernelRef& r = k[kGroupFirst[g] + j];
      if (data[j] != r.data || !sources[j].SharesBufferWith(*r.tensor)) return false;
    }
    return true;
  }
};

}  // namespace

class GpuInt8Weights {
 public:
  std::mutex mu;
  std::vector<std::shared_ptr<Relaid>> slots;  // [layer * kGroups + group]
  std::vector<Tensor> checked_quant;           // [layer]: quant_scales buffers already checked
};

std::shared_ptr<GpuInt8Weights> NewGpuInt8Weights() { return std::make_shared<GpuInt8Weights>(); }

namespace {

// Relays group g of layer l out into a new tensor: in x out kernels -> [count * out, in].
Status Relayout(OpKernelContext* ctx, cuda::GpuContext* gpu, const LayerKernelRefs& k, int g, int64_t in,
                int64_t out, Tensor* relaid) {
  TF_RETURN_IF_ERROR(ctx->allocate_temp(::tensorflow::DT_INT8, TensorShape({kGroupCount[g] * out, in}), relaid));
  int8_t* dst = relaid->flat<int8_t>().data();
  for (int j = 0; j < kGroupCount[g]; ++j) {
    TF_RETURN_IF_ERROR(Convert(cuda::TransposeInt8OnStream(gpu, static_cast<const int8_t*>(k[kGroupFirst[g] + j].data),
                                                           in, out, dst + j * out * in)));
  }
  return Status();
}

// The values of layer l's quant_scales (device memory): finite and > 0, as the CPU op checks.
Status CheckScales(cuda::GpuContext* gpu, const Tensor& quant, int l) {
  std::vector<float> v(quant.NumElements());
  TF_RETURN_IF_ERROR(Convert(cuda::DownloadToHost(gpu, quant.data(), v.size() * sizeof(float), v.data())));
  for (size_t i = 0; i < v.size(); ++i) {
    if (!(std::isfinite(v[i]) && v[i] > 0.0f)) {
      return ::tensorflow::errors::InvalidArgument("quant_scales[", l, "][", i, "] = ", v[i],
                                                   ": scales must be finite and > 0");
    }
  }
  return Status();
}

// The registry behind the caches: one relayout per set of weight buffers and device.
std::shared_ptr<Relaid> SharedRelayout(OpKernelContext* ctx, cuda::GpuContext* gpu, const LayerKernelRefs& k, int g,
                                       int64_t in, int64_t out, Status* status) {
  static std::mutex mu;
  static auto* registry = new std::map<std::vector<const void*>, std::weak_ptr<Relaid>>();
  std::vector<const void*> key = {reinterpret_cast<const void*>(static_cast<intptr_t>(gpu->device()))};
  for (int j = 0; j < kGroupCount[g]; ++j) key.push_back(k[kGroupFirst[g] + j].data);
  key.push_back(reinterpret_cast<const void*>(static_cast<intptr_t>(in)));
  key.push_back(reinterpret_cast<const void*>(static_cast<intptr_t>(out)));
  std::lock_guard<std::mutex> lock(mu);
  auto it = registry->find(key);
  if (it != registry->end()) {
    std::shared_ptr<Relaid> e = it->second.lock();
    if (e != nullptr && e->Matches(k, g)) return e;
  }
  for (auto i = registry->begin(); i != registry->end();) i = i->second.expired() ? registry->erase(i) : std::next(i);
  auto e = std::make_shared<Relaid>();
  for (int j = 0; j < kGroupCount[g]; ++j) {
    e->sources.push_back(*k[kGroupFirst[g] + j].tensor);
    e->data.push_back(k[kGroupFirst[g] + j].data);
  }
  *status = Relayout(ctx, gpu, k, g, in, out, &e->relaid);
  if (!status->ok()) return nullptr;
  (*registry)[key] = e;
  return e;
}

}  // namespace

template <typename T>
Status RunEncoderInt8OnGpu(OpKernelContext* ctx, const EncoderDims& dims, const int32_t* seq_len, const T* input,
                           const std::vector<LayerWeights<T, int8_t>>& layers,
                           const std::vector<LayerKernelRefs>& kernels, GpuInt8Weights* cache, T* output) {
  cuda::GpuContext* gpu = nullptr;
  TF_RETURN_IF_ERROR(GetContext(ctx, &gpu));
  const cuda::Status supported = cuda::Int8Supported(gpu->device(), dims, DTypeOf<T>());
  if (!supported.ok()) return ::tensorflow::errors::Unimplemented(supported.message);
  const int64_t H = dims.hidden, I = dims.inter_size;
  const int64_t in[kGroups] = {H, H, H, I}, out[kGroups] = {H, H, I, H};
  const int L = dims.num_layer;
  std::vector<Tensor> per_call;  // relayouts of plain tensors, alive until the call returns
  std::vector<std::shared_ptr<Relaid>> in_use;
  std::vector<LayerWeights<void, void>> raw;
  raw.reserve(L);
  {
    std::lock_guard<std::mutex> lock(cache->mu);
    cache->slots.resize(size_t{kGroups} * L);
    cache->checked_quant.resize(L);
    for (int l = 0; l < L; ++l) {
      const KernelRef& q = kernels[l].quant;
      Tensor& checked = cache->checked_quant[l];
      if (!(q.stable && checked.IsInitialized() && checked.SharesBufferWith(*q.tensor))) {
        checked = Tensor();
        TF_RETURN_IF_ERROR(CheckScales(gpu, *q.tensor, l));
        if (q.stable) checked = *q.tensor;
      }
      const void* relaid[kGroups];
      for (int g = 0; g < kGroups; ++g) {
        bool stable = true;
        for (int j = 0; j < kGroupCount[g]; ++j) stable = stable && kernels[l][kGroupFirst[g] + j].stable;
        std::shared_ptr<Relaid>& slot = cache->slots[size_t{kGroups} * l + g];
        if (!stable) {
          slot.reset();
          per_call.emplace_back();
          TF_RETURN_IF_ERROR(Relayout(ctx, gpu, kernels[l], g, in[g], out[g], &per_call.back()));
          relaid[g] = per_call.back().data();
          continue;
        }
        if (slot == nullptr || !slot->Matches(kernels[l], g)) {
          Status st;
          slot = SharedRelayout(ctx, gpu, kernels[l], g, in[g], out[g], &st);
          TF_RETURN_IF_ERROR(st);
        }
        in_use.push_back(slot);
        relaid[g] = slot->relaid.data();
      }
      LayerWeights<void, void> w = layers[l].Erased();
      w.q_kernel = relaid[0];
      w.k_kernel = nullptr;
      w.v_kernel = nullptr;
      w.attn_out_kernel = relaid[1];
      w.inter_kernel = relaid[2];
      w.out_kernel = relaid[3];
      raw.push_back(w);
    }
  }
  return Convert(cuda::RunEncoder(gpu, dims, DTypeOf<T>(), seq_len, input, raw, output));
}

#define INSTANTIATE(T)                                                                                    \
  template Status RunEncoderOnGpu<T>(OpKernelContext*, const EncoderDims&, const int32_t*, const T*, \
                                     const std::vector<LayerWeights<T, T>>&, T*);                      \
  template Status RunEncoderInt8OnGpu<T>(OpKernelContext*, const EncoderDims&, const int32_t*, const T*, \
                                         const std::vector<LayerWeights<T, int8_t>>&,                   \
                                         const std::vector<LayerKernelRefs>&, GpuInt8Weights*, T*);
INSTANTIATE(float)
INSTANTIATE(Eigen::half)
INSTANTIATE(Eigen::bfloat16)
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

// fastbert_tf.gpu_cache_stats(): every GPU context's caches (JSON). Returns the bytes the whole
// text needs (with its terminating zero); writes as much as fits in buf.
extern "C" __attribute__((visibility("default"))) int fastbert_gpu_cache_stats(char* buf, int len) {
  const std::string json = fastbert::cuda::GpuContext::StatsJson();
  if (len > 0) {
    const size_t n = std::min(json.size(), static_cast<size_t>(len - 1));
    std::memcpy(buf, json.data(), n);
    buf[n] = 0;
  }
  return static_cast<int>(json.size() + 1);
}
