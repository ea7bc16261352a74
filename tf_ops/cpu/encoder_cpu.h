// CPU implementation of FastBertEncoder. Uses Eigen (its thread pool device is TF's intra-op pool)
// but no TensorFlow headers, like the CUDA side.
#pragma once

#include <cstdint>
#include <vector>

#include "tf_ops/common/encoder_params.h"

namespace Eigen {
class ThreadPoolDevice;
}

namespace fastbert {
namespace cpu {

struct PackedWeight;  // sgemm.h

// The weight kernels of one layer prepacked for the CPU GEMMs (sgemm.h's PackWeight), by
// WeightIndex; null entries (vectors, or kernels not packed) are packed per call.
struct PackedLayer {
  const PackedWeight* kernel[kNumWeights] = {};
};

// Float modes (T = float, Eigen::half or Eigen::bfloat16). Output rows at or past a sequence's
// length are zeros; seq_len has dims.batch entries in [0, S]. packed: empty, or one per layer.
template <typename T>
void RunEncoder(const Eigen::ThreadPoolDevice& device, const EncoderDims& dims, const int32_t* seq_len,
                const T* input, const std::vector<LayerWeights<T, T>>& layers,
                const std::vector<PackedLayer>& packed, T* output);

// int8_mode 1 and 2 (encoder_int8.cc): int8 kernels, layers[l].quant as quant_layout.h lays it out.
template <typename T>
void RunEncoderInt8(const Eigen::ThreadPoolDevice& device, const EncoderDims& dims, const int32_t* seq_len,
                    const T* input, const std::vector<LayerWeights<T, int8_t>>& layers, T* output);

// Row copies between [B, S, H] and packed [T, H]; cu_seqlens as from PrefixSums.
template <typename T>
void RemovePadding(const T* input, const int32_t* cu_seqlens, int batch, int seq_len, int64_t hidden,
                   T* packed);
template <typename T>
void RebuildPadding(const T* packed, const int32_t* cu_seqlens, int batch, int seq_len, int64_t hidden,
                    T* output);

}  // namespace cpu
}  // namespace fastbert
