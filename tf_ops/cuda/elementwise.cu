// Row copies (padding removal/rebuild), fused bias+residual+LayerNorm, fused bias+GELU.
#include <algorithm>
#include <cstdint>
#include <tuple>
#include <type_traits>

#include "tf_ops/cuda/cuda_types.cuh"
#include "tf_ops/cuda/kernels.h"

namespace fastbert {
namespace cuda {
namespace {

constexpr int kRowsPerBlock = 8;  // one warp per row

// Packed row p belongs to sequence b with cu[b] <= p < cu[b + 1] (found by bisection; empty
// sequences have cu[b] == cu[b + 1] and are never chosen). Rows past the tokens get zeros.
template <typename V>
__global__ void PackRowsKernel(DeviceAddress src_addr, const int32_t* __restrict__ cu, int batch, int seq_len,
                               int64_t rows, int64_t row_vecs, V* __restrict__ dst) {
  const int64_t p = int64_t{blockIdx.x} * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (p >= rows) return;
  V* out = dst + p * row_vecs;
  if (p >= cu[batch]) {
    for (int64_t i = lane; i < row_vecs; i += 32) out[i] = V{};
    return;
  }
  int lo = 0, hi = batch;  // cu[lo] <= p < cu[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (cu[mid] <= p) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  const V* in = Resolve<const V>(src_addr) + (int64_t{lo} * seq_len + (p - cu[lo])) * row_vecs;
  for (int64_t i = lane; i < row_vecs; i += 32) out[i] = in[i];
}

template <typename V>
__global__ void UnpackRowsKernel(const V* __restrict__ src, const int32_t* __restrict__ cu, int seq_len,
                                 int64_t rows, int64_t row_vecs, DeviceAddress dst_addr) {
  const int64_t row = int64_t{blockIdx.x} * kRowsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const int b = static_cast<int>(row / seq_len), s = static_cast<int>(row % seq_len);
  V* out = Resolve<V>(dst_addr) + row * row_vecs;
  if (s >= cu[b + 1] - cu[b]) {
    for (int64_t i = lane; i < row_vecs; i += 32) out[i] = V{};
    return;
  }
  const V* in = src + (int64_t{cu[b]} + s) * row_vecs;
  for (int64_t i = lane; i < row_vecs; i += 32) out[i] = in[i];
}

// Calls launch(V{}, vectors per row) with the widest of uint4 / uint32_t / uint8_t that the row
// size and both addresses allow.
template <typename Launch>
cudaError_t ByRowVector(int64_t row_bytes, const void* a, const void* b, Launch&& launch) {
  const uintptr_t align = reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b);
  if (row_bytes % 16 == 0 && align % 16 == 0) {
    launch(uint4{}, row_bytes / 16);
  } else if (row_bytes % 4 == 0 && align % 4 == 0) {
    launch(uint32_t{}, row_bytes / 4);
  } else {
    launch(uint8_t{}, row_bytes);
  }
  return cudaGetLastError();
}

// Rows up to this many columns keep x + bias + residual in shared memory (48 KB, no opt-in).
constexpr int kLayerNormSmemCols = 12288;

template <typename T, bool kSmem>
__global__ void LayerNormKernel(const T* x, const T* __restrict__ bias, DeviceAddress residual,
                                const T* __restrict__ gamma, const T* __restrict__ beta, float eps, int cols,
                                DeviceAddress out, const int32_t* __restrict__ zero_lens, int seq_len) {
  extern __shared__ float row_buf[];
  __shared__ float scratch[33];
  const int64_t r = blockIdx.x;
  T* o = Resolve<T>(out) + r * cols;
  if (zero_lens != nullptr && static_cast<int>(r % seq_len) >= zero_lens[r / seq_len]) {
    for (int i = threadIdx.x; i < cols; i += blockDim.x) o[i] = FromFloat<T>(0.0f);
    return;
  }
  const T* xr = x + r * cols;
  const T* rr = Resolve<const T>(residual) + r * cols;
  auto value = [&](int i) { return ToFloat(xr[i]) + ToFloat(bias[i]) + ToFloat(rr[i]); };
  float sum = 0.0f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = value(i);
    if (kSmem) row_buf[i] = v;  // each thread reads back only what it wrote
    sum += v;
  }
  const float mean = BlockSum(sum, scratch) / cols;
  float sq = 0.0f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const float d = (kSmem ? row_buf[i] : value(i)) - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(BlockSum(sq, scratch) / cols + eps);
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = kSmem ? row_buf[i] : value(i);
    o[i] = FromFloat<T>((v - mean) * inv * ToFloat(gamma[i]) + ToFloat(beta[i]));
  }
}

// One warp per row, the row in registers, 16-byte loads: rows of up to 32 * 16 bytes * kMaxVecs.
constexpr int kLnWarpsPerBlock = 4;
constexpr int kLnMaxVecs = 8;

template <typename T>
struct Vec16 {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};

template <typename T>
__device__ __forceinline__ void LoadVec(const T* p, float (&out)[Vec16<T>::kN]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < Vec16<T>::kN; ++i) out[i] = ToFloat(e[i]);
}

template <typename T, int kVecs>
__global__ void __launch_bounds__(32 * kLnWarpsPerBlock)
    LayerNormWarpKernel(const T* x, const T* __restrict__ bias, DeviceAddress residual_addr,
                        const T* __restrict__ gamma, const T* __restrict__ beta, float eps, int cols, int64_t rows,
                        DeviceAddress out_addr, const int32_t* __restrict__ zero_lens, int seq_len) {
  constexpr int N = Vec16<T>::kN;
  const int64_t r = int64_t{blockIdx.x} * kLnWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;
  const T* residual = Resolve<const T>(residual_addr);
  T* o = Resolve<T>(out_addr) + r * cols;
  const bool zero = zero_lens != nullptr && static_cast<int>(r % seq_len) >= zero_lens[r / seq_len];
  float v[kVecs][N];
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    const int c = (i * 32 + lane) * N;
    if (c < cols && !zero) {
      float a[N], b[N], res[N];
      LoadVec(x + r * cols + c, a);
      LoadVec(bias + c, b);
      LoadVec(residual + r * cols + c, res);
#pragma unroll
      for (int e = 0; e < N; ++e) {
        v[i][e] = a[e] + b[e] + res[e];
        sum += v[i][e];
      }
    }
  }
  const float mean = WarpSum(sum) / cols;
  float sq = 0.0f;
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    if ((i * 32 + lane) * N < cols && !zero) {
#pragma unroll
      for (int e = 0; e < N; ++e) {
        const float d = v[i][e] - mean;
        sq += d * d;
      }
    }
  }
  const float inv = rsqrtf(WarpSum(sq) / cols + eps);
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    const int c = (i * 32 + lane) * N;
    if (c < cols) {
      Vec16<T> res;
      if (zero) {
#pragma unroll
        for (int e = 0; e < N; ++e) res.v[e] = FromFloat<T>(0.0f);
      } else {
        float g[N], b[N];
        LoadVec(gamma + c, g);
        LoadVec(beta + c, b);
#pragma unroll
        for (int e = 0; e < N; ++e) res.v[e] = FromFloat<T>((v[i][e] - mean) * inv * g[e] + b[e]);
      }
      *reinterpret_cast<uint4*>(o + c) = *reinterpret_cast<const uint4*>(&res);
    }
  }
}

__device__ __forceinline__ float Gelu(float x, Activation act) {
  if (act == Activation::kGeluTanh) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  }
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

template <typename T>
__global__ void BiasActivationKernel(T* x, const T* __restrict__ bias, Activation act, int64_t n, int cols) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    float v = ToFloat(x[i]);
    if (bias != nullptr) v += ToFloat(bias[i % cols]);
    x[i] = FromFloat<T>(Gelu(v, act));
  }
}

}  // namespace

cudaError_t PackRows(DeviceAddress padded, const int32_t* cu, int batch, int seq_len, int64_t rows,
                     int64_t row_bytes, void* packed, cudaStream_t stream) {
  if (rows == 0 || row_bytes == 0) return cudaSuccess;
  const dim3 grid(CeilDiv(rows, kRowsPerBlock)), block(32 * kRowsPerBlock);
  return ByRowVector(row_bytes, padded.ptr, packed, [&](auto v, int64_t vecs) {
    using V = decltype(v);
    PackRowsKernel<V><<<grid, block, 0, stream>>>(padded, cu, batch, seq_len, rows, vecs, static_cast<V*>(packed));
  });
}

cudaError_t UnpackRows(const void* packed, const int32_t* cu, int batch, int seq_len, int64_t row_bytes,
                       DeviceAddress padded, cudaStream_t stream) {
  const int64_t rows = int64_t{batch} * seq_len;
  if (rows == 0 || row_bytes == 0) return cudaSuccess;
  const dim3 grid(CeilDiv(rows, kRowsPerBlock)), block(32 * kRowsPerBlock);
  return ByRowVector(row_bytes, packed, padded.ptr, [&](auto v, int64_t vecs) {
    using V = decltype(v);
    UnpackRowsKernel<V><<<grid, block, 0, stream>>>(static_cast<const V*>(packed), cu, seq_len, rows, vecs, padded);
  });
}

cudaError_t AddBiasResidualLayerNorm(DType dtype, const void* x, const void* bias, DeviceAddress residual,
                                     const void* gamma, const void* beta, float eps, int64_t rows, int cols,
                                     DeviceAddress out, const int32_t* zero_lens, int seq_len, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const int threads = cols >= 2048 ? 512 : std::max(32, (cols / 4 + 31) / 32 * 32);
  return DispatchDType(dtype, [&](auto t) {
    using T = decltype(t);
    constexpr int N = Vec16<T>::kN;
    const uintptr_t align = reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(bias) |
                            reinterpret_cast<uintptr_t>(residual.ptr) | reinterpret_cast<uintptr_t>(gamma) |
                            reinterpret_cast<uintptr_t>(beta) | reinterpret_cast<uintptr_t>(out.ptr);
    const int vecs = (cols / N + 31) / 32;
    if (cols % N == 0 && align % 16 == 0 && vecs <= kLnMaxVecs) {
      const dim3 grid(CeilDiv(rows, kLnWarpsPerBlock)), block(32 * kLnWarpsPerBlock);
      const auto* tx = static_cast<const T*>(x);
      const auto* tb = static_cast<const T*>(bias);
      const auto* tg = static_cast<const T*>(gamma);
      const auto* tbe = static_cast<const T*>(beta);
      switch (vecs) {
#define FB_LN_CASE(V)                                                                                        \
  case V:                                                                                                    \
    LayerNormWarpKernel<T, V><<<grid, block, 0, stream>>>(tx, tb, residual, tg, tbe, eps, cols, rows, out,   \
                                                          zero_lens, seq_len);                               \
    return cudaGetLastError();
        FB_LN_CASE(1) FB_LN_CASE(2) FB_LN_CASE(3) FB_LN_CASE(4) FB_LN_CASE(5) FB_LN_CASE(6) FB_LN_CASE(7)
        FB_LN_CASE(8)
#undef FB_LN_CASE
      }
    }
    const auto args = std::make_tuple(static_cast<const T*>(x), static_cast<const T*>(bias), residual,
                                      static_cast<const T*>(gamma), static_cast<const T*>(beta), eps, cols, out,
                                      zero_lens, seq_len);
    if (cols <= kLayerNormSmemCols) {
      std::apply([&](auto... a) {
        LayerNormKernel<T, true><<<static_cast<unsigned>(rows), threads, cols * sizeof(float), stream>>>(a...);
      }, args);
    } else {
      std::apply([&](auto... a) { LayerNormKernel<T, false><<<static_cast<unsigned>(rows), threads, 0, stream>>>(a...); },
                 args);
    }
    return cudaGetLastError();
  });
}

cudaError_t AddBiasActivation(DType dtype, void* x, const void* bias, Activation act, int64_t rows, int cols,
                              cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(CeilDiv(n, 256), 65535 * 8));
  return DispatchDType(dtype, [&](auto t) {
    using T = decltype(t);
    BiasActivationKernel<T><<<blocks, 256, 0, stream>>>(static_cast<T*>(x), static_cast<const T*>(bias), act, n,
                                                         cols);
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace fastbert
