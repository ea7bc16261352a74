// The CPU encoder's building blocks, one place for each piece of math (float32 activations).
#pragma once

#define EIGEN_USE_THREADS

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "Eigen/Core"
#include "unsupported/Eigen/CXX11/Tensor"
#include "unsupported/Eigen/SpecialFunctions"
#include "tf_ops/common/encoder_params.h"
#include "tf_ops/cpu/sgemm.h"

namespace fastbert {
namespace cpu {

using Index = Eigen::Index;
using RowVector = Eigen::Matrix<float, 1, Eigen::Dynamic>;

// fn(row) for every row in [0, rows), spread over the pool; cost is per element of a row.
template <typename Fn>
void ParallelRows(const Eigen::ThreadPoolDevice& d, Index rows, Index cols, Fn fn, double cycles_per_elem = 2) {
  const Eigen::TensorOpCost cost(4.0 * cols, 4.0 * cols, cycles_per_elem * cols);
  d.parallelFor(rows, cost, [&fn](Index first, Index last) {
    for (Index r = first; r < last; ++r) fn(r);
  });
}

template <typename T>
RowVector ToFloat(const T* p, Index n) {
  RowVector v(n);
  for (Index i = 0; i < n; ++i) v[i] = static_cast<float>(p[i]);
  return v;
}

// The layers' rows: the packed tokens with dims.remove_padding, else all B*S rows (as Google BERT;
// attention still reads real keys only); fills cu (B + 1 offsets). Returns 0, with the output
// zeroed, when there is nothing to compute.
template <typename T>
Index LayerRows(const EncoderDims& dims, const int32_t* seq_len, std::vector<int32_t>* cu, T* output) {
  cu->resize(dims.batch + 1);
  const int64_t tokens = PrefixSums(seq_len, dims.batch, cu->data());
  const Index all = Index{dims.batch} * dims.seq_len;
  if (tokens == 0 || all == 0) {
    std::fill(output, output + all * dims.hidden, T(0.0f));
    return 0;
  }
  return dims.remove_padding ? tokens : all;
}

// x = the input rows as float32, packed when dims.remove_padding (row cu[b] + t), else all B*S rows.
template <typename T>
void WidenInput(const Eigen::ThreadPoolDevice& d, const EncoderDims& dims, const int32_t* seq_len,
                const int32_t* cu, const T* input, float* x) {
  const int S = dims.seq_len;
  const Index H = dims.hidden;
  ParallelRows(d, Index{dims.batch} * S, H, [&](Index r) {
    const int b = static_cast<int>(r / S), t = static_cast<int>(r % S);
    if (dims.remove_padding && t >= seq_len[b]) return;
    float* out = x + (dims.remove_padding ? Index{cu[b]} + t : r) * H;
    for (Index i = 0; i < H; ++i) out[i] = static_cast<float>(input[r * H + i]);
  });
}

// output = x narrowed back to T and unpacked, zeros at and past each sequence's length.
template <typename T>
void NarrowOutput(const Eigen::ThreadPoolDevice& d, const EncoderDims& dims, const int32_t* seq_len,
                  const int32_t* cu, const float* x, T* output) {
  const int S = dims.seq_len;
  const Index H = dims.hidden;
  ParallelRows(d, Index{dims.batch} * S, H, [&](Index r) {
    const int b = static_cast<int>(r / S), t = static_cast<int>(r % S);
    T* out = output + r * H;
    if (t >= seq_len[b]) {
      std::fill(out, out + H, T(0.0f));
      return;
    }
    const float* src = x + (dims.remove_padding ? Index{cu[b]} + t : r) * H;
    for (Index i = 0; i < H; ++i) out[i] = static_cast<T>(src[i]);
  });
}

// c[m, n] = a[m, k] * b[k, n], all row-major and dense; packed: b prepacked, or null.
template <typename Tw>
void Gemm(const Eigen::ThreadPoolDevice& d, const float* a, Index m, Index k, const Tw* b, Index n, float* c,
          const PackedWeight* packed = nullptr) {
  Sgemm(d, m, n, k, a, k, b, n, c, n, {}, packed);
}

// c[i] = a * b[i] for i < count, one packing of a (the Q, K and V projections).
template <typename Tw>
void GemmShared(const Eigen::ThreadPoolDevice& d, const float* a, Index m, Index k, const Tw* const* b, Index n,
                float* const* c, int count, const PackedWeight* const* packed = nullptr) {
  SgemmShared(d, m, n, k, a, k, b, n, c, n, count, {}, packed);
}

// v = act(v + bias) over one contiguous span.
inline void BiasActivationSpan(float* v, const float* bias, Index n, Activation act) {
  Eigen::Map<Eigen::ArrayXf> x(v, n);
  x += Eigen::Map<const Eigen::ArrayXf>(bias, n);
  if (act == Activation::kGeluTanh) {
    // Google BERT: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    x = 0.5f * x * (1.0f + (0.7978845608028654f * (x + 0.044715f * x.cube())).tanh());
  } else {
    x = 0.5f * x * (1.0f + (x * 0.7071067811865476f).erf());
  }
}

// c[m, n] = act(a[m, k] * b[k, n] + bias), the activation applied to each block of c as soon as
// the GEMM finishes it.
template <typename Tw, typename T>
void GemmBiasActivation(const Eigen::ThreadPoolDevice& d, const float* a, Index m, Index k, const Tw* b, Index n,
                        const T* bias, Activation act, float* c, const PackedWeight* packed = nullptr) {
  const RowVector bf = ToFloat(bias, n);
  Sgemm(d, m, n, k, a, k, b, n, c, n, [&](int, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    for (int64_t r = m0; r < m1; ++r) BiasActivationSpan(c + r * n + n0, bf.data() + n0, n1 - n0, act);
  }, packed);
}

// out = LayerNorm(x + bias + residual) * gamma + beta, row by row; out may alias x or residual.
template <typename T>
void AddBiasResidualLayerNorm(const Eigen::ThreadPoolDevice& d, const float* x, const T* bias,
                              const float* residual, const T* gamma, const T* beta, float eps, Index rows,
                              Index cols, float* out) {
  const RowVector b = ToFloat(bias, cols), g = ToFloat(gamma, cols), be = ToFloat(beta, cols);
  ParallelRows(d, rows, cols, [&](Index r) {
    Eigen::Map<const RowVector> xr(x + r * cols, cols), rr(residual + r * cols, cols);
    Eigen::Map<RowVector> o(out + r * cols, cols);
    o = xr + b + rr;
    const float mean = o.mean();
    o.array() -= mean;
    const float var = o.squaredNorm() / static_cast<float>(cols);
    const float inv = 1.0f / std::sqrt(var + eps);
    o = (o.array() * inv * g.array() + be.array()).matrix();
  }, 8);
}

// x = act(x + bias) in place.
template <typename T>
void AddBiasActivation(const Eigen::ThreadPoolDevice& d, float* x, const T* bias, Activation act, Index rows,
                       Index cols) {
  const RowVector b = ToFloat(bias, cols);
  ParallelRows(d, rows, cols, [&](Index r) { BiasActivationSpan(x + r * cols, b.data(), cols, act); }, 30);
}

// Scaled dot-product attention of every (sequence, head) over its real keys only. q/k/v/ctx hold
// rows of width H (heads side by side); sequence b starts at row cu[b] (packed) or b*S (padded).
// Padded query rows get zeros.
template <typename T>
void Attention(const Eigen::ThreadPoolDevice& d, const EncoderDims& dims, const int32_t* seq_len,
               const int32_t* cu, const float* q, const T* q_bias, const float* k, const T* k_bias,
               const float* v, const T* v_bias, float* ctx) {
  using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ConstMap = Eigen::Map<const MatrixRM, 0, Eigen::OuterStride<>>;
  using Map = Eigen::Map<MatrixRM, 0, Eigen::OuterStride<>>;
  const int B = dims.batch, S = dims.seq_len, NH = dims.head_num, D = dims.size_per_head;
  const Index H = dims.hidden;
  const float scale = 1.0f / (std::sqrt(static_cast<float>(D)) * dims.q_scaling);
  const RowVector bq = ToFloat(q_bias, H) * scale, bk = ToFloat(k_bias, H), bv = ToFloat(v_bias, H);
  double mean_len = 0;
  for (int b = 0; b < B; ++b) mean_len += seq_len[b];
  mean_len = mean_len / std::max(B, 1) + 1;
  const Eigen::TensorOpCost cost(12.0 * mean_len * D, 4.0 * mean_len * D, 2.0 * mean_len * mean_len * D + 20 * mean_len * mean_len);
  d.parallelFor(Index{B} * NH, cost, [&](Index first, Index last) {
    MatrixRM qs, ks, vs, p;
    for (Index task = first; task < last; ++task) {
      const int b = static_cast<int>(task / NH), h = static_cast<int>(task % NH);
      const Index len = seq_len[b];
      const Index row0 = dims.remove_padding ? Index{cu[b]} : Index{b} * S;
      const Index col0 = Index{h} * D;
      if (!dims.remove_padding && len < S) Map(ctx + (row0 + len) * H + col0, S - len, D, Eigen::OuterStride<>(H)).setZero();
      if (len == 0) continue;
      qs = (ConstMap(q + row0 * H + col0, len, D, Eigen::OuterStride<>(H)) * scale).rowwise() + bq.segment(col0, D);
      ks = ConstMap(k + row0 * H + col0, len, D, Eigen::OuterStride<>(H)).rowwise() + bk.segment(col0, D);
      vs = ConstMap(v + row0 * H + col0, len, D, Eigen::OuterStride<>(H)).rowwise() + bv.segment(col0, D);
      p.resize(len, len);
      SgemmSerial(len, len, D, qs.data(), D, ks.data(), D, /*b_transposed=*/true, p.data(), len);
      for (Index r = 0; r < len; ++r) {  // softmax along contiguous rows: vectorized exp
        Eigen::Map<Eigen::ArrayXf> row(p.data() + r * len, len);
        row = (row - row.maxCoeff()).exp();
        row *= 1.0f / row.sum();
      }
      SgemmSerial(len, D, len, p.data(), len, vs.data(), D, /*b_transposed=*/false, ctx + row0 * H + col0, H);
    }
  });
}

}  // namespace cpu
}  // namespace fastbert
