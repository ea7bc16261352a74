// CPU FastBertEncoder: activations stay float32 between stages whatever T is (float16/bfloat16
// inputs are widened once, weights are widened inside the GEMM's packing), GEMMs run on the
// intra-op pool (sgemm.h; Q/K/V share one packing of their input, bias+GELU runs on each finished
// block of the intermediate GEMM), and each other elementwise stage is one fused pass over rows.
#define EIGEN_USE_THREADS

#include "tf_ops/cpu/encoder_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "Eigen/Core"
#include "unsupported/Eigen/CXX11/Tensor"
#include "tf_ops/cpu/cpu_math.h"

namespace fastbert {
namespace cpu {
namespace {

using Index = Eigen::Index;
using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using StridedMap = Eigen::Map<const MatrixRM, 0, Eigen::OuterStride<>>;

// Everything one layer needs, laid out once per call. 64-byte alignment keeps Eigen's vectorized
// row reductions in the same order on every call, so equal inputs give equal outputs.
using Buffer = std::vector<float, Eigen::aligned_allocator<float>>;
struct Scratch {
  Buffer x, q, k, v, ctx, tmp, x1, inter;
};

template <typename T>
void Layer(const Eigen::ThreadPoolDevice& d, const EncoderDims& dims, const int32_t* seq_len,
           const int32_t* cu_seqlens, const LayerWeights<T, T>& w, const PackedLayer& p, Index rows, Scratch& s) {
  const Index H = dims.hidden;
  const Index I = dims.inter_size;
  const T* qkv_kernels[3] = {w.q_kernel, w.k_kernel, w.v_kernel};
  const PackedWeight* qkv_packed[3] = {p.kernel[kWeight_q_kernel], p.kernel[kWeight_k_kernel],
                                       p.kernel[kWeight_v_kernel]};
  float* qkv[3] = {s.q.data(), s.k.data(), s.v.data()};
  GemmShared(d, s.x.data(), rows, H, qkv_kernels, H, qkv, 3, qkv_packed);
  Attention(d, dims, seq_len, cu_seqlens, s.q.data(), w.q_bias, s.k.data(), w.k_bias, s.v.data(), w.v_bias,
            s.ctx.data());
  Gemm(d, s.ctx.data(), rows, H, w.attn_out_kernel, H, s.tmp.data(), p.kernel[kWeight_attn_out_kernel]);
  AddBiasResidualLayerNorm(d, s.tmp.data(), w.attn_out_bias, s.x.data(), w.attn_ln_gamma, w.attn_ln_beta,
                           dims.layer_norm_eps, rows, H, s.x1.data());
  GemmBiasActivation(d, s.x1.data(), rows, H, w.inter_kernel, I, w.inter_bias, dims.activation, s.inter.data(),
                     p.kernel[kWeight_inter_kernel]);
  Gemm(d, s.inter.data(), rows, I, w.out_kernel, H, s.tmp.data(), p.kernel[kWeight_out_kernel]);
  AddBiasResidualLayerNorm(d, s.tmp.data(), w.out_bias, s.x1.data(), w.out_ln_gamma, w.out_ln_beta,
                           dims.layer_norm_eps, rows, H, s.x.data());
}

}  // namespace

template <typename T>
void RunEncoder(const Eigen::ThreadPoolDevice& d, const EncoderDims& dims, const int32_t* seq_len,
                const T* input, const std::vector<LayerWeights<T, T>>& layers,
                const std::vector<PackedLayer>& packed, T* output) {
  const Index H = dims.hidden;
  std::vector<int32_t> cu;
  const Index rows = LayerRows(dims, seq_len, &cu, output);
  if (rows == 0) return;
  Scratch s;
  for (auto* buf : {&s.x, &s.q, &s.k, &s.v, &s.ctx, &s.tmp, &s.x1}) buf->resize(rows * H);
  s.inter.resize(rows * dims.inter_size);

  WidenInput(d, dims, seq_len, cu.data(), input, s.x.data());

  const PackedLayer none;
  for (size_t l = 0; l < layers.size(); ++l) {
    Layer(d, dims, seq_len, cu.data(), layers[l], packed.empty() ? none : packed[l], rows, s);
  }

  NarrowOutput(d, dims, seq_len, cu.data(), s.x.data(), output);
}

template <typename T>
void RemovePadding(const T* input, const int32_t* cu, int batch, int seq_len, int64_t hidden, T* packed) {
  for (int b = 0; b < batch; ++b) {
    const int64_t n = cu[b + 1] - cu[b];
    std::memcpy(packed + int64_t{cu[b]} * hidden, input + int64_t{b} * seq_len * hidden, n * hidden * sizeof(T));
  }
}

template <typename T>
void RebuildPadding(const T* packed, const int32_t* cu, int batch, int seq_len, int64_t hidden, T* output) {
  for (int b = 0; b < batch; ++b) {
    const int64_t n = cu[b + 1] - cu[b];
    T* dst = output + int64_t{b} * seq_len * hidden;
    std::memcpy(dst, packed + int64_t{cu[b]} * hidden, n * hidden * sizeof(T));
    std::fill(dst + n * hidden, dst + int64_t{seq_len} * hidden, T(0));
  }
}

#define INSTANTIATE_ENCODER(T)                                                                  \
  template void RunEncoder<T>(const Eigen::ThreadPoolDevice&, const EncoderDims&, const int32_t*, const T*, \
                              const std::vector<LayerWeights<T, T>>&, const std::vector<PackedLayer>&, T*);
INSTANTIATE_ENCODER(float)
INSTANTIATE_ENCODER(Eigen::half)
INSTANTIATE_ENCODER(Eigen::bfloat16)
#undef INSTANTIATE_ENCODER

#define INSTANTIATE_PADDING(T)                                                          \
  template void RemovePadding<T>(const T*, const int32_t*, int, int, int64_t, T*); \
  template void RebuildPadding<T>(const T*, const int32_t*, int, int, int64_t, T*);
INSTANTIATE_PADDING(float)
INSTANTIATE_PADDING(double)
INSTANTIATE_PADDING(Eigen::half)
INSTANTIATE_PADDING(Eigen::bfloat16)
INSTANTIATE_PADDING(int32_t)
INSTANTIATE_PADDING(int8_t)
#undef INSTANTIATE_PADDING

}  // namespace cpu
}  // namespace fastbert
