// Framework-free description of one FastBertEncoder call, shared by the TF glue, the CPU
// implementation and the CUDA runner (which must not see TensorFlow headers).
#pragma once

#include <cstdint>
#include <vector>

namespace fastbert {

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
  // float32 on the GPU: the GEMMs may round their inputs to TF32 (TensorFlow's
  // tf.config.experimental.enable_tensor_float_32_execution, read per call by the op). The CPU
  // ignores it.
  bool tf32 = false;
};

// ---------------------------------------------------------------- the per-layer weights

enum class WeightKind { kKernel, kVector };
enum class WeightDim { kH, kI };

// One entry of layer_weights.def.
struct WeightSpec {
  const char* name;  // the op's input name
  WeightKind kind;
  WeightDim rows, cols;  // rows unused for vectors
  int64_t Rows(int64_t hidden, int64_t inter) const { return rows == WeightDim::kH ? hidden : inter; }
  int64_t Cols(int64_t hidden, int64_t inter) const { return cols == WeightDim::kH ? hidden : inter; }
};

// kWeight_q_kernel, ...: positions in layer_weights.def (and in the op's inputs).
enum WeightIndex {
#define FB_WEIGHT(field, name, kind, rows, cols) kWeight_##field,
#include "tf_ops/common/layer_weights.def"
#undef FB_WEIGHT
  kNumWeights
};

constexpr WeightSpec kWeightSpecs[kNumWeights] = {
#define FB_WEIGHT(field, name, kind, rows, cols) {name, WeightKind::kind, WeightDim::rows, WeightDim::cols},
#include "tf_ops/common/layer_weights.def"
#undef FB_WEIGHT
};

template <WeightKind kKind, typename T, typename Tw>
struct WeightElement {
  using type = Tw;  // kernels
};
template <typename T, typename Tw>
struct WeightElement<WeightKind::kVector, T, Tw> {
  using type = T;
};

// Pointers into the caller's weight tensors of one layer, one field per entry of
// layer_weights.def; nothing is copied. T: activations and vectors; Tw: kernels (T, or int8).
// LayerWeights<void, void> is the type-erased view the CUDA runner takes.
template <typename T, typename Tw>
struct LayerWeights {
#define FB_WEIGHT(field, name, kind, rows, cols) \
  const typename WeightElement<WeightKind::kind, T, Tw>::type* field = nullptr;
#include "tf_ops/common/layer_weights.def"
#undef FB_WEIGHT
  const float* quant = nullptr;  // int8 modes: see quant_layout.h

  // fn(WeightIndex, pointer) for every weight, in table order (pointer: const Tw* or const T*;
  // assignable through the mutable overload).
  template <typename Fn>
  void ForEach(Fn&& fn) const {
#define FB_WEIGHT(field, name, kind, rows, cols) fn(kWeight_##field, field);
#include "tf_ops/common/layer_weights.def"
#undef FB_WEIGHT
  }
  template <typename Fn>
  void ForEach(Fn&& fn) {
#define FB_WEIGHT(field, name, kind, rows, cols) fn(kWeight_##field, field);
#include "tf_ops/common/layer_weights.def"
#undef FB_WEIGHT
  }

  LayerWeights<void, void> Erased() const {
    LayerWeights<void, void> out;
#define FB_WEIGHT(field, name, kind, rows, cols) out.field = field;
#include "tf_ops/common/layer_weights.def"
#undef FB_WEIGHT
    out.quant = quant;
    return out;
  }
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
