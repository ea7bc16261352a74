// Fused attention (scores, mask, softmax, PV in one kernel, float32 accumulation), flash-style
// online softmax over tiles of keys, directly on packed variable-length rows or padded rows.
//  - float16/bfloat16 with size_per_head 32/64/128: tensor cores (mma.sync m16n8k16, ldmatrix,
//    cp.async double buffering), 64 queries x 64 keys per step, 4 warps. Runs on sm_80 and newer.
//  - everything else (float32, other even head sizes up to 256): a SIMT kernel, 16 queries per block.
#include <algorithm>
#include <cstdint>
#include <tuple>
#include <type_traits>

#include "tf_ops/cuda/cuda_types.cuh"
#include "tf_ops/common/quant_layout.h"
#include "tf_ops/cuda/kernels.h"

namespace fastbert {
namespace cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------- tensor-core path

template <typename T>
__device__ __forceinline__ uint32_t PackTwo(float a, float b);
template <>
__device__ __forceinline__ uint32_t PackTwo<__half>(float a, float b) {
  __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&h);
}
template <>
__device__ __forceinline__ uint32_t PackTwo<__nv_bfloat16>(float a, float b) {
  __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&h);
}

template <typename T>
__device__ __forceinline__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void Mma<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void Mma<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                   uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], const void* smem) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const void* smem) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16 bytes global -> shared, asynchronously; zeros when !valid (src is then not read).
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

constexpr int kTcRows = 64;   // queries per block (16 per warp)
constexpr int kTcKeys = 64;   // keys per step
constexpr int kTcThreads = 128;

template <int D>
constexpr int TcSmemStride() {
  return D + 8;  // 16-byte pad: the 8 rows of an ldmatrix land in distinct banks
}
template <int D>
constexpr size_t TcSmemBytes() {
  return size_t{kTcRows + 4 * kTcKeys} * TcSmemStride<D>() * 2;
}

// Rows [from, to) of one head of out get zeros (padded mode).
template <typename T>
__device__ __forceinline__ void ZeroRows(T* out, int64_t ld, int from, int to, int d) {
  for (int i = threadIdx.x; i < (to - from) * d; i += blockDim.x) {
    out[int64_t{from + i / d} * ld + i % d] = FromFloat<T>(0.0f);
  }
}
__device__ __forceinline__ void ZeroRows(int8_t* out, int64_t ld, int from, int to, int d) {
  for (int i = threadIdx.x; i < (to - from) * d; i += blockDim.x) out[int64_t{from + i / d} * ld + i % d] = 0;
}

// Where a head's output goes: `out` of T, or int8 rounded with inv_scale (the int8 modes).
template <typename T>
struct HeadOutput {
  T* out;
  int8_t* out_int8;
  float inv_scale;
  __device__ void Zero(int64_t ld, int from, int to, int d) const {
    if (out_int8 != nullptr) {
      ZeroRows(out_int8, ld, from, to, d);
    } else {
      ZeroRows(out, ld, from, to, d);
    }
  }
  __device__ void Store(int64_t off, float v) const {
    if (out_int8 != nullptr) {
      out_int8[off] = QuantizeInt8Dev(v, inv_scale);
    } else {
      out[off] = FromFloat<T>(v);
    }
  }
  __device__ void StoreTwo(int64_t off, float a, float b) const;  // off even
};
template <typename T>
__device__ void HeadOutput<T>::StoreTwo(int64_t off, float a, float b) const {
  if (out_int8 != nullptr) {
    const int8_t two[2] = {QuantizeInt8Dev(a, inv_scale), QuantizeInt8Dev(b, inv_scale)};
    *reinterpret_cast<int16_t*>(out_int8 + off) = *reinterpret_cast<const int16_t*>(two);
  } else if constexpr (std::is_same<T, float>::value) {
    out[off] = a;
    out[off + 1] = b;
  } else {
    *reinterpret_cast<uint32_t*>(out + off) = PackTwo<T>(a, b);
  }
}

template <typename T>
__device__ HeadOutput<T> MakeHeadOutput(const AttentionParams& p, int64_t offset) {
  HeadOutput<T> o;
  o.out = static_cast<T*>(p.out) + offset;
  o.out_int8 = p.out_int8 != nullptr ? p.out_int8 + offset : nullptr;
  o.inv_scale = p.out_int8 != nullptr ? 1.0f / *p.out_scale : 0.0f;
  return o;
}

template <typename T>
__device__ __forceinline__ float BiasAt(const void* bias, int64_t i) {
  return bias != nullptr ? ToFloat(static_cast<const T*>(bias)[i]) : 0.0f;
}

// kInt8: mode 2 (AttentionParams::int8_scales): a first pass over the keys finds each row's max and
// sum, the second rounds the probabilities to int8 and accumulates P.V exactly.
template <typename T, int D, bool kInt8>
__global__ void __launch_bounds__(kTcThreads) TensorCoreAttentionKernel(const AttentionParams p) {
  constexpr int LDS = TcSmemStride<D>();
  constexpr int VEC = 8;  // elements per 16-byte chunk
  constexpr int CHUNKS = D / VEC;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* q_s = reinterpret_cast<T*>(smem_raw);  // [64][LDS]
  T* k_s = q_s + kTcRows * LDS;               // [2][64][LDS]
  T* v_s = k_s + 2 * kTcKeys * LDS;           // [2][64][LDS]

  const int b = blockIdx.z, h = blockIdx.y, m0 = blockIdx.x * kTcRows;
  const int len = p.seq_len[b];
  const int64_t start = p.cu_seqlens != nullptr ? int64_t{p.cu_seqlens[b]} : int64_t{b} * p.padded_seq_len;
  const int64_t ld = p.ld;
  const T* q = static_cast<const T*>(p.q) + start * ld + h * D;
  const T* k = static_cast<const T*>(p.k) + start * ld + h * D;
  const T* v = static_cast<const T*>(p.v) + start * ld + h * D;
  const int64_t out_ld = p.out_ld != 0 ? p.out_ld : ld;
  const HeadOutput<T> out = MakeHeadOutput<T>(p, start * out_ld + h * D);
  if (p.cu_seqlens == nullptr) out.Zero(out_ld, max(m0, len), min(m0 + kTcRows, p.padded_seq_len), D);
  if (m0 >= len) return;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

  // Q tile + bias (rows past the sequence are zeros; their outputs are never written).
  const T* qb = p.q_bias != nullptr ? static_cast<const T*>(p.q_bias) + h * D : nullptr;
  for (int i = tid; i < kTcRows * CHUNKS; i += kTcThreads) {
    const int r = i / CHUNKS, c = (i % CHUNKS) * VEC;
    uint4 raw = make_uint4(0, 0, 0, 0);
    if (m0 + r < len) {
      raw = *reinterpret_cast<const uint4*>(q + int64_t{m0 + r} * ld + c);
      if (qb != nullptr) {
        const uint4 braw = *reinterpret_cast<const uint4*>(qb + c);
        T* x = reinterpret_cast<T*>(&raw);
        const T* bb = reinterpret_cast<const T*>(&braw);
#pragma unroll
        for (int e = 0; e < VEC; ++e) x[e] = FromFloat<T>(ToFloat(x[e]) + ToFloat(bb[e]));
      }
    }
    *reinterpret_cast<uint4*>(q_s + r * LDS + c) = raw;
  }

  auto load_kv = [&](int tile, int buf) {
    const int n0 = tile * kTcKeys;
    T* ks = k_s + buf * kTcKeys * LDS;
    T* vs = v_s + buf * kTcKeys * LDS;
    for (int i = tid; i < kTcKeys * CHUNKS; i += kTcThreads) {
      const int r = i / CHUNKS, c = (i % CHUNKS) * VEC;
      const bool valid = n0 + r < len;
      const int64_t off = valid ? int64_t{n0 + r} * ld + c : 0;
      CpAsync16(ks + r * LDS + c, k + off, valid);
      CpAsync16(vs + r * LDS + c, v + off, valid);
    }
  };
  const int tiles = (len + kTcKeys - 1) / kTcKeys;
  load_kv(0, 0);
  CpAsyncCommit();
  __syncthreads();  // q_s written

  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    LdMatrixX4(qf[kk], q_s + (warp * 16 + (lane & 15)) * LDS + kk * 16 + (lane >> 4) * 8);
  }

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};  // this thread's share; reduced over the quad at the end
  float scale_log2 = p.scale * kLog2e;
  float inv_probs = 0.0f, inv_sum[2] = {0.0f, 0.0f};
  if (kInt8) {
    scale_log2 = __fmul_rn(p.int8_scales[kQ], p.int8_scales[kK]) * p.scale * kLog2e;
    inv_probs = 1.0f / p.int8_scales[kProbs];
  }

  // kInt8: pass 0 finds row max and sum (no P.V), pass 1 accumulates the rounded P.V.
  for (int pass = kInt8 ? 0 : 1; pass < 2; ++pass) {
  if (kInt8 && pass == 1) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = row_sum[r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      inv_sum[r] = 1.0f / l;
    }
    load_kv(0, 0);
    CpAsyncCommit();
  }
  for (int tile = 0; tile < tiles; ++tile) {
    const int buf = tile & 1;
    if (tile + 1 < tiles) load_kv(tile + 1, buf ^ 1);
    CpAsyncCommit();
    CpAsyncWait<1>();  // this tile has landed (the next may still be in flight)
    __syncthreads();
    const T* ks = k_s + buf * kTcKeys * LDS;
    const T* vs = v_s + buf * kTcKeys * LDS;

    float s[kTcKeys / 8][4];
#pragma unroll
    for (int i = 0; i < kTcKeys / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < kTcKeys / 16; ++np) {
        uint32_t kb[4];
        LdMatrixX4(kb, ks + (np * 16 + (lane >> 4) * 8 + (lane & 7)) * LDS + kk * 16 + ((lane >> 3) & 1) * 8);
        Mma<T>(s[2 * np], qf[kk], kb[0], kb[1]);
        Mma<T>(s[2 * np + 1], qf[kk], kb[2], kb[3]);
      }
    }

    // Mask keys past the sequence, then the online softmax (base 2, scale folded in).
    const int n0 = tile * kTcKeys;
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kTcKeys / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = n0 + nt * 8 + 2 * (lane & 3) + (e & 1);
        s[nt][e] = key < len ? s[nt][e] * scale_log2 : -INFINITY;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[nt][e]);
      }
    }
    if (kInt8 && pass == 1) {
      // The probabilities of the full softmax, rounded to int8 (integers in T's P fragments).
#pragma unroll
      for (int nt = 0; nt < kTcKeys / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float prob = exp2f(s[nt][e] - row_max[e >> 1]) * inv_sum[e >> 1];
          s[nt][e] = static_cast<float>(QuantizeInt8Dev(prob, inv_probs));
        }
      }
    } else {
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float new_max = fmaxf(row_max[r], tile_max[r]);  // finite: key 0 is always real
      alpha[r] = exp2f(row_max[r] - new_max);
      row_max[r] = new_max;
      row_sum[r] *= alpha[r];
    }
#pragma unroll
    for (int nt = 0; nt < kTcKeys / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - row_max[e >> 1]);
        row_sum[e >> 1] += s[nt][e];
      }
    }
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      o[i][0] *= alpha[0];
      o[i][1] *= alpha[0];
      o[i][2] *= alpha[1];
      o[i][3] *= alpha[1];
    }
    }
    if (kInt8 && pass == 0) {
      __syncthreads();  // everyone is done with this buffer before it is refilled
      continue;
    }

    // O += P V: the score accumulators are already the A fragments of P.
#pragma unroll
    for (int kb = 0; kb < kTcKeys / 16; ++kb) {
      const uint32_t pa[4] = {PackTwo<T>(s[2 * kb][0], s[2 * kb][1]), PackTwo<T>(s[2 * kb][2], s[2 * kb][3]),
                              PackTwo<T>(s[2 * kb + 1][0], s[2 * kb + 1][1]),
                              PackTwo<T>(s[2 * kb + 1][2], s[2 * kb + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t vb[4];
        LdMatrixX4Trans(vb, vs + (kb * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LDS + dp * 16 + (lane >> 4) * 8);
        Mma<T>(o[2 * dp], pa, vb[0], vb[1]);
        Mma<T>(o[2 * dp + 1], pa, vb[2], vb[3]);
      }
    }
    __syncthreads();  // everyone is done with this buffer before it is refilled
  }
  }  // pass

  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (kInt8) {  // integer sums of int8 probabilities times int8 values
      inv[r] = __fmul_rn(p.int8_scales[kProbs], p.int8_scales[kV]);
      continue;
    }
    float l = row_sum[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[r] = 1.0f / l;
  }
  const int row0 = m0 + warp * 16 + (lane >> 2);
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) {
    const int col = dt * 8 + 2 * (lane & 3);
    const float b0 = BiasAt<T>(p.v_bias, h * D + col), b1 = BiasAt<T>(p.v_bias, h * D + col + 1);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + 8 * r;
      if (row < len) {
        out.StoreTwo(int64_t{row} * out_ld + col, o[dt][2 * r] * inv[r] + b0, o[dt][2 * r + 1] * inv[r] + b1);
      }
    }
  }
}

// ---------------------------------------------------------------- SIMT path

constexpr int kSimtRows = 16;  // queries per block, 4 per warp
constexpr int kSimtKeys = 32;  // keys per step, one per lane
constexpr int kSimtThreads = 128;
constexpr int kSimtMaxPerLane = kMaxGpuHeadSize / 32;

inline size_t SimtSmemBytes(int d) {
  return sizeof(float) * (size_t{kSimtRows} * d + size_t{kSimtKeys} * (d + 1) + size_t{kSimtKeys} * d);
}

template <typename T>
__global__ void __launch_bounds__(kSimtThreads) SimtAttentionKernel(const AttentionParams p) {
  extern __shared__ float sm[];
  const int D = p.size_per_head, LDK = D + 1;
  float* q_s = sm;                       // [16][D], scaled to base 2
  float* k_s = q_s + kSimtRows * D;      // [32][D + 1]
  float* v_s = k_s + kSimtKeys * LDK;    // [32][D]
  const int b = blockIdx.z, h = blockIdx.y, m0 = blockIdx.x * kSimtRows;
  const int len = p.seq_len[b];
  const int64_t start = p.cu_seqlens != nullptr ? int64_t{p.cu_seqlens[b]} : int64_t{b} * p.padded_seq_len;
  const int64_t ld = p.ld;
  const T* q = static_cast<const T*>(p.q) + start * ld + int64_t{h} * D;
  const T* k = static_cast<const T*>(p.k) + start * ld + int64_t{h} * D;
  const T* v = static_cast<const T*>(p.v) + start * ld + int64_t{h} * D;
  const int64_t out_ld = p.out_ld != 0 ? p.out_ld : ld;
  const HeadOutput<T> out = MakeHeadOutput<T>(p, start * out_ld + int64_t{h} * D);
  if (p.cu_seqlens == nullptr) out.Zero(out_ld, max(m0, len), min(m0 + kSimtRows, p.padded_seq_len), D);
  if (m0 >= len) return;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const float scale_log2 = p.scale * kLog2e;
  for (int i = tid; i < kSimtRows * D; i += kSimtThreads) {
    const int r = i / D, c = i % D;
    // Rounded to T after the bias, as the tensor-core path and the GEMM epilogues do.
    q_s[i] = m0 + r < len
                 ? ToFloat(FromFloat<T>(ToFloat(q[int64_t{m0 + r} * ld + c]) + BiasAt<T>(p.q_bias, int64_t{h} * D + c))) *
                       scale_log2
                 : 0.0f;
  }
  float row_max[4], row_sum[4], o[4][kSimtMaxPerLane];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < kSimtMaxPerLane; ++i) o[r][i] = 0.0f;
  }
  for (int n0 = 0; n0 < len; n0 += kSimtKeys) {
    __syncthreads();  // previous tile consumed (and q_s written, the first time)
    for (int i = tid; i < kSimtKeys * D; i += kSimtThreads) {
      const int r = i / D, c = i % D;
      const bool valid = n0 + r < len;
      k_s[r * LDK + c] = valid ? ToFloat(k[int64_t{n0 + r} * ld + c]) : 0.0f;
      v_s[r * D + c] = valid ? ToFloat(v[int64_t{n0 + r} * ld + c]) : 0.0f;
    }
    __syncthreads();
    const int keys = min(kSimtKeys, len - n0);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const float* qr = q_s + (warp * 4 + r) * D;
      float s = -INFINITY;
      if (lane < keys) {
        float dot = 0.0f;
        for (int c = 0; c < D; ++c) dot = fmaf(qr[c], k_s[lane * LDK + c], dot);
        s = dot;
      }
      const float new_max = fmaxf(row_max[r], WarpMax(s));
      const float alpha = exp2f(row_max[r] - new_max);
      const float pr = exp2f(s - new_max);
      row_max[r] = new_max;
      row_sum[r] = row_sum[r] * alpha + WarpSum(pr);
#pragma unroll
      for (int i = 0; i < kSimtMaxPerLane; ++i) o[r][i] *= alpha;
      for (int j = 0; j < keys; ++j) {
        const float pj = __shfl_sync(0xffffffffu, pr, j);
#pragma unroll
        for (int i = 0; i < kSimtMaxPerLane; ++i) {
          const int c = lane + 32 * i;
          if (c < D) o[r][i] = fmaf(pj, v_s[j * D + c], o[r][i]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int row = m0 + warp * 4 + r;
    if (row >= len) continue;
    const float inv = 1.0f / row_sum[r];
#pragma unroll
    for (int i = 0; i < kSimtMaxPerLane; ++i) {
      const int c = lane + 32 * i;
      if (c < D) out.Store(int64_t{row} * out_ld + c, o[r][i] * inv + BiasAt<T>(p.v_bias, int64_t{h} * D + c));
    }
  }
}

template <typename Kernel>
cudaError_t LaunchWithSmem(Kernel kernel, dim3 grid, int threads, size_t smem, const AttentionParams& p,
                           cudaStream_t stream) {
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  kernel<<<grid, threads, smem, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
bool TensorCoreEligible(const AttentionParams& p) {
  if constexpr (std::is_same<T, float>::value) {
    return false;
  } else {
    const uintptr_t align = reinterpret_cast<uintptr_t>(p.q) | reinterpret_cast<uintptr_t>(p.k) |
                            reinterpret_cast<uintptr_t>(p.v) | reinterpret_cast<uintptr_t>(p.q_bias) |
                            reinterpret_cast<uintptr_t>(p.out);
    return (p.size_per_head == 32 || p.size_per_head == 64 || p.size_per_head == 128) && p.ld % 8 == 0 &&
           align % 16 == 0;
  }
}

}  // namespace

cudaError_t Attention(const AttentionParams& p, cudaStream_t stream) {
  if (p.batch == 0 || p.seq_len_max == 0) return cudaSuccess;
  if (p.size_per_head < 2 || p.size_per_head > kMaxGpuHeadSize || p.size_per_head % 2) return cudaErrorInvalidValue;
  if (p.int8_scales != nullptr) {  // mode 2: float16 planes of int8 values
    if (p.dtype != DType::kFloat16 || !TensorCoreEligible<__half>(p)) return cudaErrorInvalidValue;
    const dim3 grid(CeilDiv(p.seq_len_max, kTcRows), p.head_num, p.batch);
    switch (p.size_per_head) {
      case 32:
        return LaunchWithSmem(TensorCoreAttentionKernel<__half, 32, true>, grid, kTcThreads, TcSmemBytes<32>(), p,
                              stream);
      case 64:
        return LaunchWithSmem(TensorCoreAttentionKernel<__half, 64, true>, grid, kTcThreads, TcSmemBytes<64>(), p,
                              stream);
      default:
        return LaunchWithSmem(TensorCoreAttentionKernel<__half, 128, true>, grid, kTcThreads, TcSmemBytes<128>(),
                              p, stream);
    }
  }
  return DispatchDType(p.dtype, [&](auto t) -> cudaError_t {
    using T = decltype(t);
    if (TensorCoreEligible<T>(p)) {
      const dim3 grid(CeilDiv(p.seq_len_max, kTcRows), p.head_num, p.batch);
      if constexpr (!std::is_same<T, float>::value) {
        switch (p.size_per_head) {
          case 32:
            return LaunchWithSmem(TensorCoreAttentionKernel<T, 32, false>, grid, kTcThreads, TcSmemBytes<32>(), p, stream);
          case 64:
            return LaunchWithSmem(TensorCoreAttentionKernel<T, 64, false>, grid, kTcThreads, TcSmemBytes<64>(), p, stream);
          default:
            return LaunchWithSmem(TensorCoreAttentionKernel<T, 128, false>, grid, kTcThreads, TcSmemBytes<128>(), p,
                                  stream);
        }
      }
    }
    const dim3 grid(CeilDiv(p.seq_len_max, kSimtRows), p.head_num, p.batch);
    return LaunchWithSmem(SimtAttentionKernel<T>, grid, kSimtThreads, SimtSmemBytes(p.size_per_head), p, stream);
  });
}

}  // namespace cuda
}  // namespace fastbert
