// Framework-free description of one FastBertEncoder call, shared by the TF glue, the CPU
// implementation and the CUDA runner (which must not see TensorFlow headers).
#pragma once

#include <cstdint>
#include <vector>

namespace fastbert {
namespace cpu {
struct PackedWeight;  // sgemm.h
}

enum class Activation { kGeluTanh = 0, kGeluErf = 1 };

struct EncoderDims {
  int batch = 0;
  int seq_len = 0;
  int head_num = 0;
  int size_per_head = 0;
  int hidden = 0;  // head_num * size_per_head
  int inter_size = 0;
  int num_layer = 0;
  bool remove_padding = false;
  Activation activation = Activation::kGeluTanh;
  float layer_norm_eps = 1e-12f;
  float q_scaling = 1.0f;
  int int8_mode = 0;
};

// Pointers into the caller's weight tensors, Google BERT's [in, out] layout; nothing is copied.
template <typename T, typename Tw>
struct LayerWeights {
  const Tw* q_kernel;
  const T* q_bias;
  const Tw* k_kernel;
  const T* k_bias;
  const Tw* v_kernel;
  const T* v_bias;
  const Tw* attn_out_kernel;
  const T* attn_out_bias;
  const T* attn_ln_gamma;
  const T* attn_ln_beta;
  const Tw* inter_kernel;
  const T* inter_bias;
  const Tw* out_kernel;
  const T* out_bias;
  const T* out_ln_gamma;
  const T* out_ln_beta;
  const float* quant = nullptr;  // int8 modes: see quant_layout.h
  // CPU, optional: the six kernels (in the order above) packed by cpu::PackWeight, or null.
  enum Kernel { kQuery, kKey, kValue, kAttnOut, kInter, kOut, kNumKernels };
  const cpu::PackedWeight* packed[kNumKernels] = {};
};

// Offsets of the real tokens: cu_seqlens[b] .. cu_seqlens[b+1] are sequence b's rows when packed.
inline int64_t PrefixSums(const int32_t* seq_len, int batch, int32_t* cu_seqlens) {
  int64_t total = 0;
  cu_seqlens[0] = 0;
  for (int b = 0; b < batch; ++b) {
    total += seq_len[b];
    cu_seqlens[b + 1] = static_cast<int32_t>(total);
  }
  return total;
}

}  // namespace fastbert
