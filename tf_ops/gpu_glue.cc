#include "tf_ops/gpu_glue.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <type_traits>

#include "tensorflow/core/framework/allocator.h"
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
  return Convert(cuda::RunEncoder(gpu, dims, DTypeOf<T>(), seq_len, input, raw, output));
}

#define INSTANTIATE(T)                                                                                    \
  template Status RunEncoderOnGpu<T>(OpKernelContext*, const EncoderDims&, const int32_t*, const T*, \
                                     const std::vector<LayerWeights<T, T>>&, T*);
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
