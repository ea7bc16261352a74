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

// output rows at or past a sequence's length are zeros. seq_len has dims.batch entries in [0, S].
template <typename T, typename Tw>
void RunEncoder(const Eigen::ThreadPoolDevice& device, const EncoderDims& dims, const int32_t* seq_len,
                const T* input, const std::vector<LayerWeights<T, Tw>>& layers, T* output);

// Row copies between [B, S, H] and packed [T, H]; cu_seqlens as from PrefixSums.
template <typename T>
void RemovePadding(const T* input, const int32_t* cu_seqlens, int batch, int seq_len, int64_t hidden,
                   T* packed);
template <typename T>
void RebuildPadding(const T* packed, const int32_t* cu_seqlens, int batch, int seq_len, int64_t hidden,
                    T* output);

}  // namespace cpu
}  // namespace fastbert
