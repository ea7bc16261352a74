// The int8 GEMM (host API; no CUTLASS here): c[m, n] = sum_k a[m, k] * b[n, k], int8 x int8 ->
// int32, row-major a [m, k], b [n, k] (a weight kernel relaid out to [out, in]) and c [m, n].
// Hopper only (sm_90a wgmma kernels, sm90a_int8_gemm.cuh).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace fastbert {
namespace cuda {

struct Int8GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  const int8_t* a = nullptr;
  const int8_t* b = nullptr;
  void* c = nullptr;  // int32, or float16 for Int8GemmF16
  const float* alpha = nullptr;  // Int8GemmF16: [n] per-channel scales
  const void* bias = nullptr;    // Int8GemmF16: [n] float16
  void* workspace = nullptr;  // kInt8GemmWorkspaceBytes (runner_state.h)
  size_t workspace_bytes = 0;
  int device = 0;
  int sm_count = 0;
};

// What the kernels need besides 16-byte aligned pointers (TMA strides are multiples of 16 bytes).
inline bool Int8GemmShapeSupported(int64_t n, int64_t k) { return n % 16 == 0 && k % 16 == 0 && n > 0 && k > 0; }

// The tile shape for a problem: 128x128 tiles, or 64x128 while 128x128 ones would be <= 200
// (~1.5 waves of the H200's 132 SMs; benchmarks/NOTES.md).
inline bool Int8GemmUsesSmallTiles(int64_t m, int64_t n) { return ((m + 127) / 128) * ((n + 127) / 128) <= 200; }

// Per tile shape and output (sm90a_int8_gemm_*.cu).
cudaError_t Int8GemmTile128(const Int8GemmArgs& g, cudaStream_t stream);
cudaError_t Int8GemmTile64(const Int8GemmArgs& g, cudaStream_t stream);
cudaError_t Int8GemmF16Tile128(const Int8GemmArgs& g, cudaStream_t stream);
cudaError_t Int8GemmF16Tile64(const Int8GemmArgs& g, cudaStream_t stream);

// c = acc (int32). Workspace: the tile scheduler's, at most kInt8GemmWorkspaceBytes (runner_state.h).
inline cudaError_t Int8Gemm(const Int8GemmArgs& g, cudaStream_t stream) {
  return Int8GemmUsesSmallTiles(g.m, g.n) ? Int8GemmTile64(g, stream) : Int8GemmTile128(g, stream);
}
// c = half(alpha[n] * float(acc) + bias[n]).
inline cudaError_t Int8GemmF16(const Int8GemmArgs& g, cudaStream_t stream) {
  return Int8GemmUsesSmallTiles(g.m, g.n) ? Int8GemmF16Tile64(g, stream) : Int8GemmF16Tile128(g, stream);
}

}  // namespace cuda
}  // namespace fastbert
