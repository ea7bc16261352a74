// The int8 GEMM of the int8 modes on Hopper: c[m, n] = sum_k a[m, k] * b[n, k], int8 x int8 ->
// int32 (both operands K-major: the only layout int8 wgmma takes). CUTLASS 3.x CollectiveBuilder,
// TMA loads + warp-specialized pingpong wgmma, cluster 1x1. Two outputs: int32 through the plain
// linear combination (alpha 1, no C), the next kernel doing the CPU path's float math exactly; or
// float16 with the per-channel dequantize + bias fused (mode 1 with float16 activations).
// Why these tiles: benchmarks/NOTES.md, "INT8 GEMMs on the H200" (pingpong won at every BERT shape;
// 64x128 when 128x128 tiles fill fewer than ~1.5 waves).
//
// Included only by the sm90a_int8_gemm_*.cu files, one tile shape each (a CUTLASS instantiation
// takes ~47 s to compile), which the Makefile builds for sm_90a (wgmma needs the "a" target).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "tf_ops/cuda/int8_gemm.h"

namespace fastbert {
namespace cuda {
namespace sm90a {

// F16Out: D = half(alpha[n] * float(acc) + bias[n]) (per output channel, the dequantize + bias of
// int8_mode 1; PerColLinCombPerColBiasEltAct with the identity), else D = acc as int32.
template <class TileShape, bool F16Out>
struct Int8GemmConfig {
  using Layout = cutlass::layout::RowMajor;          // A: M x K, D: M x N
  using LayoutB = cutlass::layout::ColumnMajor;      // K x N column-major = N x K row-major
  using ElementD = cute::conditional_t<F16Out, cutlass::half_t, int32_t>;
  using ElementCompute = cute::conditional_t<F16Out, float, int32_t>;
  static constexpr int kAlign8 = 16, kAlignD = 128 / cutlass::sizeof_bits<ElementD>::value;
  using ClusterShape = cute::Shape<cute::_1, cute::_1, cute::_1>;
  using Fusion = cute::conditional_t<
      F16Out,
      cutlass::epilogue::fusion::PerColLinCombPerColBiasEltAct<cutlass::epilogue::thread::Identity, ElementD, float,
                                                               cutlass::half_t, ElementD, float>,
      cutlass::epilogue::fusion::LinearCombination<int32_t, int32_t, void, int32_t>>;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, int32_t, ElementCompute, void, Layout, kAlignD, ElementD,
      Layout, kAlignD, cutlass::epilogue::TmaWarpSpecialized, Fusion>::CollectiveOp;
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, int8_t, Layout, kAlign8, int8_t, LayoutB, kAlign8,
      int32_t, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
      cutlass::gemm::KernelTmaWarpSpecializedPingpong>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, Mainloop, Epilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

// Strides of a packed (rows, cols, batch 1) tensor with mode 1 contiguous (all four operands here).
template <class Stride>
Stride Packed(int64_t rows, int64_t cols) {
  Stride s{};
  cute::get<0>(s) = cols;
  cute::get<2>(s) = rows * cols;
  return s;
}

template <class TileShape, bool F16Out>
typename Int8GemmConfig<TileShape, F16Out>::Gemm::Arguments Arguments(const Int8GemmArgs& g) {
  using Cfg = Int8GemmConfig<TileShape, F16Out>;
  using K = typename Cfg::Kernel;
  typename Cfg::Gemm::Arguments args;
  args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
  args.problem_shape = {static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), 1};
  args.mainloop.ptr_A = g.a;
  args.mainloop.dA = Packed<typename K::StrideA>(g.m, g.k);
  args.mainloop.ptr_B = g.b;
  args.mainloop.dB = Packed<typename K::StrideB>(g.n, g.k);
  auto& th = args.epilogue.thread;
  if constexpr (F16Out) {
    th.alpha = 1.0f;
    th.beta = 0.0f;
    th.alpha_ptr = g.alpha;  // per output channel (dAlpha's default: a vector along N)
    th.bias_ptr = reinterpret_cast<const cutlass::half_t*>(g.bias);
  } else {
    th.alpha = 1;
    th.beta = 0;
  }
  args.epilogue.ptr_C = nullptr;
  args.epilogue.dC = Packed<typename K::StrideC>(g.m, g.n);
  args.epilogue.ptr_D = reinterpret_cast<typename Cfg::ElementD*>(g.c);
  args.epilogue.dD = Packed<typename K::StrideD>(g.m, g.n);
  args.hw_info.device_id = g.device;
  args.hw_info.sm_count = g.sm_count;
  return args;
}

template <class TileShape, bool F16Out>
size_t WorkspaceBytes(const Int8GemmArgs& g) {
  return Int8GemmConfig<TileShape, F16Out>::Gemm::get_workspace_size(Arguments<TileShape, F16Out>(g));
}

// cudaErrorInvalidValue when CUTLASS refuses the problem (shape or alignment), the launch's error
// otherwise.
template <class TileShape, bool F16Out>
cudaError_t Run(const Int8GemmArgs& g, cudaStream_t stream) {
  using Gemm = typename Int8GemmConfig<TileShape, F16Out>::Gemm;
  const auto args = Arguments<TileShape, F16Out>(g);
  Gemm gemm;
  if (gemm.can_implement(args) != cutlass::Status::kSuccess) return cudaErrorInvalidValue;
  if (Gemm::get_workspace_size(args) > g.workspace_bytes) return cudaErrorInvalidValue;
  if (gemm.initialize(args, g.workspace, stream) != cutlass::Status::kSuccess) {
    const cudaError_t err = cudaGetLastError();
    return err != cudaSuccess ? err : cudaErrorInvalidValue;
  }
  const cutlass::Status st = gemm.run(stream);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  return st == cutlass::Status::kSuccess ? cudaSuccess : cudaErrorLaunchFailure;
}

}  // namespace sm90a
}  // namespace cuda
}  // namespace fastbert

// One tile shape and output per file: defines Int8Gemm<NAME> (int8_gemm.h).
#define FB_INT8_GEMM_TILE(NAME, M, N, K, F16OUT)                                                 \
  namespace fastbert {                                                                           \
  namespace cuda {                                                                               \
  cudaError_t Int8Gemm##NAME(const Int8GemmArgs& g, cudaStream_t stream) {                       \
    return sm90a::Run<cute::Shape<cute::Int<M>, cute::Int<N>, cute::Int<K>>, F16OUT>(g, stream); \
  }                                                                                              \
  }                                                                                              \
  }
