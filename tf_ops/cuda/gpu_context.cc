#include "tf_ops/cuda/gpu_context.h"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "tf_ops/cuda/gemm_plans.h"
#include "tf_ops/cuda/graph_cache.h"

namespace fastbert {
namespace cuda {
namespace {

std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}
// Lives as long as the process (contexts hold library handles that must not be torn down at exit).
std::map<std::pair<int, cudaStream_t>, GpuContext*>& Registry() {
  static auto* registry = new std::map<std::pair<int, cudaStream_t>, GpuContext*>();
  return *registry;
}

size_t MaxGraphExecs() {
  const char* v = std::getenv("FASTBERT_GRAPH_CACHE");
  const long n = v ? std::strtol(v, nullptr, 10) : 0;
  return n > 0 ? static_cast<size_t>(n) : 512;
}

}  // namespace

Status GpuContext::Get(int device, cudaStream_t stream, DeviceMemory* memory, GpuContext** out) {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  auto& slot = Registry()[{device, stream}];
  if (slot == nullptr) {
    std::unique_ptr<GpuContext> ctx(new GpuContext(device, stream, memory));
    FB_CUDA("cudaSetDevice", cudaSetDevice(device));
    cublasHandle_t blas;
    FB_BLAS("cublasCreate", cublasCreate(&blas));
    ctx->blas_ = blas;
    FB_BLAS("cublasSetStream", cublasSetStream(blas, stream));
    // TF32 is chosen per GEMM (its compute type, from EncoderDims::tf32), never by the handle's mode.
    FB_BLAS("cublasSetMathMode", cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
    cublasLtHandle_t lt;
    FB_BLAS("cublasLtCreate", cublasLtCreate(&lt));
    ctx->blas_lt_ = lt;
    ctx->gemms_.reset(new GemmPlans(lt));
    ctx->graphs_.reset(new GraphCache(MaxGraphExecs()));
    FB_CUDA("cudaStreamCreateWithFlags", cudaStreamCreateWithFlags(&ctx->capture_stream_, cudaStreamNonBlocking));
    for (auto& s : ctx->slots_) {
      FB_CUDA("cudaEventCreateWithFlags", cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    }
    slot = ctx.release();
  }
  *out = slot;
  return Status::Ok();
}

GpuContext::GpuContext(int device, cudaStream_t stream, DeviceMemory* memory)
    : device_(device), stream_(stream), memory_(memory) {}

GpuContext::~GpuContext() {
  gemms_.reset();
  graphs_.reset();
  if (scratch_) memory_->Free(scratch_);
  if (capture_stream_) cudaStreamDestroy(capture_stream_);
  if (blas_lt_) cublasLtDestroy(static_cast<cublasLtHandle_t>(blas_lt_));
  if (blas_) cublasDestroy(static_cast<cublasHandle_t>(blas_));
  for (auto& s : slots_) {
    if (s.ptr) cudaFreeHost(s.ptr);
    if (s.done) cudaEventDestroy(s.done);
  }
}

Status GpuContext::Scratch(size_t bytes, void** base, uint64_t* generation) {
  window_max_ = std::max(window_max_, bytes);
  size_t want = 0;
  if (bytes > scratch_bytes_) {
    want = std::max(bytes, scratch_bytes_ + scratch_bytes_ / 4);
  } else if (++scratch_calls_ % kScratchWindow == 0) {
    if (window_max_ < scratch_bytes_ / 2) want = window_max_;
    window_max_ = 0;
  }
  if (want != 0) {
    if (scratch_) memory_->Free(scratch_);
    scratch_ = memory_->Allocate(want);
    if (scratch_ == nullptr && want > bytes) scratch_ = memory_->Allocate(want = bytes);
    scratch_bytes_ = scratch_ ? want : 0;
    ++generation_;
    ++scratch_reallocs_;
    if (scratch_ == nullptr) {
      return Status{"out of GPU memory: the encoder needs " + std::to_string(bytes) + " bytes of scratch"};
    }
  }
  *base = scratch_;
  *generation = generation_;
  return Status::Ok();
}

Status GpuContext::Upload(const void* host, size_t bytes, void* device_dst) {
  if (bytes == 0) return Status::Ok();
  PinnedSlot& s = slots_[next_slot_];
  next_slot_ = (next_slot_ + 1) % kSlots;
  if (s.pending) FB_CUDA("cudaEventSynchronize", cudaEventSynchronize(s.done));
  s.pending = false;
  if (s.capacity < bytes || (s.capacity > (size_t{64} << 10) && s.capacity > 8 * bytes)) {
    if (s.ptr) FB_CUDA("cudaFreeHost", cudaFreeHost(s.ptr));
    s.ptr = nullptr;
    s.capacity = 0;
    const size_t cap = std::max<size_t>(bytes * 2, 4096);
    FB_CUDA("cudaHostAlloc", cudaHostAlloc(&s.ptr, cap, cudaHostAllocDefault));
    s.capacity = cap;
  }
  std::memcpy(s.ptr, host, bytes);
  FB_CUDA("cudaMemcpyAsync(upload)", cudaMemcpyAsync(device_dst, s.ptr, bytes, cudaMemcpyHostToDevice, stream_));
  FB_CUDA("cudaEventRecord", cudaEventRecord(s.done, stream_));
  s.pending = true;
  return Status::Ok();
}

std::string GpuContext::Json() const {
  size_t pinned = 0;
  for (const auto& s : slots_) pinned += s.capacity;
  const GraphCache::Stats g = graphs_->stats();
  auto kv = [](const char* k, long long v) { return std::string("\"") + k + "\": " + std::to_string(v); };
  std::string out = "{";
  out += kv("device", device_) + ", ";
  out += kv("scratch_bytes", static_cast<long long>(scratch_bytes_)) + ", ";
  out += kv("scratch_reallocs", scratch_reallocs_) + ", ";
  out += kv("pinned_bytes", static_cast<long long>(pinned)) + ", ";
  out += kv("pinned_slots", kSlots) + ", ";
  out += kv("gemm_plans", static_cast<long long>(gemms_->size())) + ", ";
  out += kv("gemm_plans_max", static_cast<long long>(GemmPlans::kMaxPlans)) + ", ";
  out += kv("gemm_plans_created", gemms_->created()) + ", ";
  out += kv("gemm_plans_evicted", gemms_->evicted()) + ", ";
  out += kv("graph_keys", static_cast<long long>(g.keys)) + ", ";
  out += kv("graph_keys_max", static_cast<long long>(g.max_keys)) + ", ";
  out += kv("graph_execs", static_cast<long long>(g.execs)) + ", ";
  out += kv("graph_execs_max", static_cast<long long>(g.max_execs)) + ", ";
  out += kv("graph_replays", g.replays) + ", ";
  out += kv("graph_captures", g.captures) + ", ";
  out += kv("direct_calls", g.direct) + ", ";
  out += kv("graph_execs_evicted", g.evicted_execs) + ", ";
  out += kv("graph_keys_evicted", g.evicted_keys);
  return out + "}";
}

std::string GpuContext::StatsJson() {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  std::string out = "[";
  for (auto& kv : Registry()) {
    std::lock_guard<std::mutex> ctx_lock(kv.second->mu);
    out += (out.size() > 1 ? ", " : "") + kv.second->Json();
  }
  return out + "]";
}

}  // namespace cuda
}  // namespace fastbert
