// The GPU encoder: cuBLAS(Lt) GEMMs and the kernels of kernels.h, enqueued on one stream.
// No TensorFlow here: the op glue hands in device pointers and the stream's GpuContext.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tf_ops/common/encoder_params.h"
#include "tf_ops/cuda/cuda_status.h"
#include "tf_ops/cuda/gpu_context.h"
#include "tf_ops/cuda/kernels.h"

namespace fastbert {
namespace cuda {

struct Workspace {
  void* ptr = nullptr;
  size_t bytes = 0;
};

// Optional per-stage hook (the kernel-time breakdown): Mark(name) is called after each stage is
// enqueued, on the runner's stream.
class StageTimer {
 public:
  virtual ~StageTimer() = default;
  virtual void Mark(const char* stage, cudaStream_t stream) = 0;
};

// Rows a call runs its GEMMs over: B * S, or with remove_padding the token count's bucket
// (common/row_buckets.h).
int64_t EncoderRows(const EncoderDims& dims, int64_t tokens);

// Bytes of device scratch a call over `rows` rows needs (the context's Scratch holds it).
size_t EncoderScratchBytes(const EncoderDims& dims, int64_t rows, DType dtype);

// Whether this device and these dims can run the int8 modes (Hopper: the GEMMs are sm_90a
// kernels; hidden and inter_size multiples of 16; mode 2: head size 32, 64 or 128); the error
// says what is missing.
Status Int8Supported(int device, const EncoderDims& dims, DType dtype);

// One FastBertEncoder call. seq_len is on the host (validated by the caller); input, output and
// the weights (LayerWeights<void, void>: device pointers of dtype) on the device.
//
// The call runs in the context's scratch, reads its lengths, offsets, input and output addresses
// from a small block it uploads there, and runs its GEMMs over EncoderRows() rows; so calls with
// the same dims and row bucket are the same GPU work whatever their lengths and tensors, and from
// the second such call on they replay one CUDA graph (GraphCache has the policy). Padded rows of
// the output are zeros. FASTBERT_CUDA_GRAPHS=0 launches every call directly.
//
// Int8 modes (dims.int8_mode 1, 2): the kernels are int8 and already relaid out for the GEMMs, each
// [out, in] (TransposeInt8 of the checkpoint's [in, out]): q_kernel holds Q, K and V stacked,
// [3H, H] (k_kernel and v_kernel are not read); attn_out_kernel [H, H], inter_kernel [I, H],
// out_kernel [H, I]. quant: the layer's quant_scales, on the device.
Status RunEncoder(GpuContext* ctx, const EncoderDims& dims, DType dtype, const int32_t* seq_len, const void* input,
                  const std::vector<LayerWeights<void, void>>& layers, void* output, StageTimer* timer = nullptr);

// dst [cols, rows] = src [rows, cols]^T (int8), on the context's stream (the int8 weight relayout).
Status TransposeInt8OnStream(GpuContext* ctx, const int8_t* src, int64_t rows, int64_t cols, int8_t* dst);

// Copies `bytes` of device memory to the host after the stream's earlier work, and waits.
Status DownloadToHost(GpuContext* ctx, const void* dev, size_t bytes, void* host);

// RemovePadding / RebuildPadding with host cu_seqlens (validated by the caller); ws holds
// at least PaddingWorkspaceBytes(batch) bytes.
size_t PaddingWorkspaceBytes(int batch);
Status RemovePadding(GpuContext* ctx, const void* padded, const int32_t* cu_seqlens, int batch, int seq_len,
                     int64_t row_bytes, void* packed, Workspace ws);
Status RebuildPadding(GpuContext* ctx, const void* packed, const int32_t* cu_seqlens, int batch, int seq_len,
                      int64_t row_bytes, void* padded, Workspace ws);

}  // namespace cuda
}  // namespace fastbert
