// CUTLASS 3.x Hopper int8 GEMM benchmark (issue 13, step 1).
//
// D[M,N] = A[M,K] (s8, row-major) x B[N,K]^T (s8, row-major = "TN", K contiguous), s32 accumulate.
// Variants: CollectiveBuilder sm90 TMA + warp-specialized wgmma mainloops, with either an s32
// output (LinearCombination in int32, alpha=1, no C) or an fp16 output through the per-column
// "dequantize + bias" fusion D = half(alpha[n] * float(acc) + bias[n]) (PerColLinCombPerColBiasEltAct,
// Identity activation, no C).
//
// One source, several objects: compiling with -DINT8_VARIANT=k (k = 1..NVARIANTS) instantiates
// only variant k (one ~47 s CUTLASS instantiation per object, so make -j builds them in parallel);
// compiling without it builds main(), the reference check and the timing loop. Variants register
// themselves in a global list at start-up, so the binary holds whichever objects were linked.
//
// Must be built for sm_90a (wgmma): -gencode arch=compute_90a,code=sm_90a. See README.md.

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define CK(x)                                                                              \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) {                                                               \
      fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__,   \
              __LINE__, #x);                                                               \
      exit(2);                                                                             \
    }                                                                                      \
  } while (0)

// ------------------------------------------------------------------------------------------
// Variant interface (shared by all objects)
// ------------------------------------------------------------------------------------------
struct GemmArgs {
  int M, N, K;
  const int8_t* A;      // M x K row-major
  const int8_t* B;      // N x K row-major
  void* D;              // M x N row-major, int32 or half
  const float* alpha;   // [N], fp16-out variants only
  const __half* bias;   // [N], fp16-out variants only
};

struct Variant {
  const char* name;
  bool f16_out;
  // Returns an opaque op ready to launch, or nullptr (err says why).
  void* (*create)(const GemmArgs&, std::string& err);
  cudaError_t (*run)(void* op, cudaStream_t);
  void (*destroy)(void* op);
};

std::vector<Variant>& registry();

#ifdef INT8_VARIANT
// ------------------------------------------------------------------------------------------
// One CUTLASS instantiation
// ------------------------------------------------------------------------------------------
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/operations.hpp"
#include "cutlass/epilogue/thread/activation.h"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/gemm/kernel/tile_scheduler.hpp"

using namespace cute;

// Packed stride for a (rows, cols, batch) tensor whose mode 1 is contiguous: Stride<int64_t,_1,int64_t>
// (what all four operands are here: A and B K-major, C and D row-major). Stands in for
// cutlass/util/packed_stride.hpp, which the TensorFlow wheel's CUTLASS copy does not ship.
template <class StrideT>
StrideT packed_stride(int rows, int cols) {
  static_assert(cute::is_same_v<cute::remove_cvref_t<decltype(get<1>(StrideT{}))>, _1>,
                "expects mode 1 contiguous");
  StrideT s{};
  get<0>(s) = static_cast<int64_t>(cols);
  get<2>(s) = static_cast<int64_t>(rows) * cols;
  return s;
}

template <class TileShape, class ClusterShape, class KernelSchedule, class EpilogueSchedule,
          bool F16Out, class TileScheduler = void>
struct Config {
  using ElementA = int8_t;
  using ElementB = int8_t;
  using ElementAcc = int32_t;
  using ElementD = cute::conditional_t<F16Out, cutlass::half_t, int32_t>;
  using ElementCompute = cute::conditional_t<F16Out, float, int32_t>;
  using LayoutA = cutlass::layout::RowMajor;     // M x K, K contiguous
  using LayoutB = cutlass::layout::ColumnMajor;  // K x N column-major == N x K row-major
  using LayoutD = cutlass::layout::RowMajor;
  static constexpr int kAlignA = 16, kAlignB = 16;
  static constexpr int kAlignD = 128 / cutlass::sizeof_bits<ElementD>::value;

  using FusionOp = cute::conditional_t<
      F16Out,
      cutlass::epilogue::fusion::PerColLinCombPerColBiasEltAct<
          cutlass::epilogue::thread::Identity, ElementD, float, cutlass::half_t, ElementD, float>,
      cutlass::epilogue::fusion::LinearCombination<ElementD, int32_t, void, int32_t>>;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, ElementAcc, ElementCompute,
      void, LayoutD, kAlignD,  // no C
      ElementD, LayoutD, kAlignD, EpilogueSchedule, FusionOp>::CollectiveOp;

  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementA, LayoutA, kAlignA, ElementB,
      LayoutB, kAlignB, ElementAcc, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      KernelSchedule>::CollectiveOp;

  using GemmKernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>,
                                                          CollectiveMainloop, CollectiveEpilogue,
                                                          TileScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<GemmKernel>;
  static constexpr bool kStreamK =
      !cute::is_void_v<TileScheduler> &&
      cute::is_same_v<TileScheduler, cutlass::gemm::StreamKScheduler>;
};

template <class Cfg>
struct Op {
  typename Cfg::Gemm gemm;
  typename Cfg::Gemm::Arguments args;
  void* ws = nullptr;
};

template <class Cfg>
void* create_op(const GemmArgs& a, std::string& err) {
  using Gemm = typename Cfg::Gemm;
  using GK = typename Gemm::GemmKernel;
  auto* op = new Op<Cfg>();
  auto sA = packed_stride<typename GK::StrideA>(a.M, a.K);
  auto sB = packed_stride<typename GK::StrideB>(a.N, a.K);
  auto sC = packed_stride<typename GK::StrideC>(a.M, a.N);
  auto sD = packed_stride<typename GK::StrideD>(a.M, a.N);
  auto& args = op->args;
  args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
  args.problem_shape = {a.M, a.N, a.K, 1};
  args.mainloop.ptr_A = reinterpret_cast<const typename Cfg::ElementA*>(a.A);
  args.mainloop.dA = sA;
  args.mainloop.ptr_B = reinterpret_cast<const typename Cfg::ElementB*>(a.B);
  args.mainloop.dB = sB;
  auto& th = args.epilogue.thread;
  if constexpr (cute::is_same_v<typename Cfg::ElementD, int32_t>) {
    th.alpha = 1;
    th.beta = 0;
  } else {
    th.alpha = 1.f;
    th.beta = 0.f;
    th.alpha_ptr = a.alpha;  // per-column (dAlpha defaults to a vector along N)
    th.bias_ptr = reinterpret_cast<const cutlass::half_t*>(a.bias);
  }
  args.epilogue.ptr_C = nullptr;
  args.epilogue.dC = sC;
  args.epilogue.ptr_D = reinterpret_cast<typename Cfg::ElementD*>(a.D);
  args.epilogue.dD = sD;
  args.hw_info.device_id = 0;
  args.hw_info.sm_count = cutlass::KernelHardwareInfo::query_device_multiprocessor_count(0);

  cutlass::Status st = op->gemm.can_implement(args);
  if (st != cutlass::Status::kSuccess) {
    err = std::string("can_implement: ") + cutlassGetStatusString(st);
    delete op;
    return nullptr;
  }
  size_t wsz = Gemm::get_workspace_size(args);
  if (wsz) {
    if (cudaMalloc(&op->ws, wsz) != cudaSuccess) {
      err = "workspace alloc";
      delete op;
      return nullptr;
    }
  }
  st = op->gemm.initialize(args, op->ws);
  if (st != cutlass::Status::kSuccess) {
    err = std::string("initialize: ") + cutlassGetStatusString(st);
    delete op;
    return nullptr;
  }
  return op;
}

template <class Cfg>
cudaError_t run_op(void* p, cudaStream_t s) {
  auto* op = static_cast<Op<Cfg>*>(p);
  cutlass::Status st;
  if constexpr (Cfg::kStreamK) {
    // Stream-K's fixup locks count up and are not reset by the kernel: re-zero them before each
    // launch (initialize_workspace = one cudaMemsetAsync of the lock region) and launch.
    st = op->gemm.run(op->args, op->ws, s);
  } else {
    st = op->gemm.run(s);
  }
  if (st != cutlass::Status::kSuccess) return cudaErrorLaunchFailure;
  return cudaGetLastError();
}

template <class Cfg>
void destroy_op(void* p) {
  auto* op = static_cast<Op<Cfg>*>(p);
  if (op->ws) cudaFree(op->ws);
  delete op;
}

template <class Cfg>
struct Register {
  Register(const char* name) {
    registry().push_back(
        {name, !cute::is_same_v<typename Cfg::ElementD, int32_t>, &create_op<Cfg>, &run_op<Cfg>,
         &destroy_op<Cfg>});
  }
};

namespace ke = cutlass::epilogue;
namespace kg = cutlass::gemm;
using Coop = kg::KernelTmaWarpSpecializedCooperative;
using Ping = kg::KernelTmaWarpSpecializedPingpong;
using ECoop = ke::TmaWarpSpecializedCooperative;
using EPing = ke::TmaWarpSpecialized;

#if INT8_VARIANT == 1
static Register<Config<Shape<_128, _128, _128>, Shape<_1, _1, _1>, Coop, ECoop, false>> reg(
    "cutlass_s32_coop_128x128x128_c1x1");
#elif INT8_VARIANT == 2
static Register<Config<Shape<_128, _128, _128>, Shape<_1, _1, _1>, Ping, EPing, false>> reg(
    "cutlass_s32_ping_128x128x128_c1x1");
#elif INT8_VARIANT == 3
static Register<Config<Shape<_128, _256, _128>, Shape<_2, _1, _1>, Coop, ECoop, false>> reg(
    "cutlass_s32_coop_128x256x128_c2x1");
#elif INT8_VARIANT == 4
static Register<Config<Shape<_128, _128, _128>, Shape<_1, _1, _1>, Coop, ECoop, false,
                       kg::StreamKScheduler>>
    reg("cutlass_s32_coop_128x128x128_c1x1_streamk");
#elif INT8_VARIANT == 5
static Register<Config<Shape<_64, _128, _128>, Shape<_1, _1, _1>, Ping, EPing, false>> reg(
    "cutlass_s32_ping_64x128x128_c1x1");
#elif INT8_VARIANT == 6
static Register<Config<Shape<_128, _128, _128>, Shape<_1, _1, _1>, Coop, ECoop, true>> reg(
    "cutlass_f16_coop_128x128x128_c1x1_scalebias");
#elif INT8_VARIANT == 7
static Register<Config<Shape<_128, _128, _128>, Shape<_1, _1, _1>, Ping, EPing, true>> reg(
    "cutlass_f16_ping_128x128x128_c1x1_scalebias");
#elif INT8_VARIANT == 8
static Register<Config<Shape<_64, _128, _128>, Shape<_1, _1, _1>, Ping, EPing, true>> reg(
    "cutlass_f16_ping_64x128x128_c1x1_scalebias");
#elif INT8_VARIANT == 9
static Register<Config<Shape<_128, _128, _128>, Shape<_2, _1, _1>, Ping, EPing, true>> reg(
    "cutlass_f16_ping_128x128x128_c2x1_scalebias");
#else
#error "unknown INT8_VARIANT"
#endif

#else  // !INT8_VARIANT: main, reference, timing
// ------------------------------------------------------------------------------------------

std::vector<Variant>& registry() {
  static std::vector<Variant> r;
  return r;
}

__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return (uint32_t)x;
}

__global__ void fill_s8(int8_t* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    p[i] = (int8_t)(hash32(seed * 0x9E3779B97F4A7C15ULL + i) & 0xff);
}

__global__ void fill_scale_bias(float* alpha, __half* bias, int n, uint64_t seed) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    float u = (hash32(seed * 31 + 2 * i) & 0xffffff) / 16777216.f;
    float v = (hash32(seed * 31 + 2 * i + 1) & 0xffffff) / 16777216.f;
    alpha[i] = (0.5f + u) * 1e-4f;  // |acc| ~ 1e5 -> outputs ~ 10
    bias[i] = __float2half(2.f * v - 1.f);
  }
}

// Naive-ish reference: 16x16 tiles through shared memory, int32 accumulate. D = A x B^T.
__global__ void ref_gemm(const int8_t* A, const int8_t* B, int32_t* D, int M, int N, int K) {
  __shared__ int32_t sa[16][17], sb[16][17];
  int tx = threadIdx.x, ty = threadIdx.y;
  int m = blockIdx.y * 16 + ty, n = blockIdx.x * 16 + tx;
  int32_t acc = 0;
  for (int k0 = 0; k0 < K; k0 += 16) {
    sa[ty][tx] = (m < M && k0 + tx < K) ? A[(size_t)m * K + k0 + tx] : 0;
    int nb = blockIdx.x * 16 + ty;
    sb[ty][tx] = (nb < N && k0 + tx < K) ? B[(size_t)nb * K + k0 + tx] : 0;
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; ++kk) acc += sa[ty][kk] * sb[tx][kk];
    __syncthreads();
  }
  if (m < M && n < N) D[(size_t)m * N + n] = acc;
}

__global__ void cmp_s32(const int32_t* got, const int32_t* ref, size_t n, int N,
                        unsigned long long* bad) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    if (got[i] != ref[i]) atomicAdd(bad, 1ULL);
}

__global__ void cmp_f16(const __half* got, const int32_t* ref, const float* alpha,
                        const __half* bias, size_t n, int N, unsigned long long* bad,
                        float* maxrel) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    int c = (int)(i % N);
    float e = __half2float(__float2half_rn(fmaf(alpha[c], (float)ref[i], __half2float(bias[c]))));
    float g = __half2float(got[i]);
    float d = fabsf(g - e);
    if (!(d <= 1e-3f * fabsf(e) + 1e-3f)) atomicAdd(bad, 1ULL);  // NaN fails too
    float r = d / (fabsf(e) + 1e-3f);
    if (r == r) atomicMax((int*)maxrel, __float_as_int(r));  // r >= 0: int order == float order
  }
}

struct BufSet {
  int8_t *A, *B;
  void* D;
};

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char** argv) {
  const int REPS = 20, INNER = 20;
  const size_t ROTATE_BYTES = 256ull << 20;
  std::vector<int> Ms = {1024, 4096, 12288};
  std::vector<std::pair<int, int>> NKs = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}};
  const char* only = argc > 1 ? argv[1] : nullptr;  // optional substring filter on variant names

  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  printf("{\"gpu\": \"%s\", \"sm\": \"%d.%d\", \"sms\": %d, \"cuda_driver\": %d, \"cudart\": %d, "
         "\"variants\": %zu}\n",
         prop.name, prop.major, prop.minor, prop.multiProcessorCount, drv, rt, registry().size());
  fflush(stdout);
  if (only && !strcmp(only, "--probe")) return 0;  // start-up check only

  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  unsigned long long* d_bad;
  float* d_maxrel;
  CK(cudaMalloc(&d_bad, sizeof(unsigned long long)));
  CK(cudaMalloc(&d_maxrel, sizeof(float)));
  int failures = 0;
  uint64_t seed = 12345;

  for (int M : Ms) {
    for (auto nk : NKs) {
      const int N = nk.first, K = nk.second;
      double flops = 2.0 * M * N * K;
      size_t set_bytes = (size_t)M * K + (size_t)N * K + 4ull * M * N;
      int nsets = (int)std::min<size_t>(64, std::max<size_t>(1, (ROTATE_BYTES + set_bytes - 1) / set_bytes));
      std::vector<BufSet> sets(nsets);
      for (auto& s : sets) {
        CK(cudaMalloc(&s.A, (size_t)M * K));
        CK(cudaMalloc(&s.B, (size_t)N * K));
        CK(cudaMalloc(&s.D, 4ull * M * N));  // big enough for int32 or half
        fill_s8<<<1024, 256, 0, stream>>>(s.A, (size_t)M * K, ++seed);
        fill_s8<<<1024, 256, 0, stream>>>(s.B, (size_t)N * K, ++seed);
      }
      float* alpha;
      __half* bias;
      int32_t* ref;
      CK(cudaMalloc(&alpha, N * sizeof(float)));
      CK(cudaMalloc(&bias, N * sizeof(__half)));
      CK(cudaMalloc(&ref, 4ull * M * N));
      fill_scale_bias<<<(N + 255) / 256, 256, 0, stream>>>(alpha, bias, N, ++seed);
      CK(cudaGetLastError());
      // Reference for set 0 and for the last set.
      int chk[2] = {0, nsets - 1};
      std::vector<int32_t*> refs;
      for (int c = 0; c < (nsets > 1 ? 2 : 1); ++c) {
        int32_t* r = c == 0 ? ref : nullptr;
        if (c == 1) CK(cudaMalloc(&r, 4ull * M * N));
        ref_gemm<<<dim3((N + 15) / 16, (M + 15) / 16), dim3(16, 16), 0, stream>>>(
            sets[chk[c]].A, sets[chk[c]].B, r, M, N, K);
        CK(cudaGetLastError());
        refs.push_back(r);
      }
      CK(cudaStreamSynchronize(stream));

      for (auto& v : registry()) {
        if (only && !strstr(v.name, only)) continue;
        std::vector<void*> ops(nsets, nullptr);
        std::string err;
        bool ok = true;
        for (int i = 0; i < nsets && ok; ++i) {
          GemmArgs a{M, N, K, sets[i].A, sets[i].B, sets[i].D, alpha, bias};
          ops[i] = v.create(a, err);
          ok = ops[i] != nullptr;
        }
        if (!ok) {
          printf("{\"variant\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"error\": \"%s\"}\n",
                 v.name, M, N, K, err.c_str());
          fflush(stdout);
          for (void* o : ops)
            if (o) v.destroy(o);
          failures++;
          continue;
        }
        // ---- check (poisoned outputs, checked sets 0 and last), before and after timing ----
        auto check = [&](const char* when, bool poison) -> bool {
          bool good = true;
          for (size_t c = 0; c < refs.size(); ++c) {
            int i = chk[c];
            if (poison) CK(cudaMemsetAsync(sets[i].D, 0xff, 4ull * M * N, stream));
            if (poison) CK(v.run(ops[i], stream));
            CK(cudaMemsetAsync(d_bad, 0, sizeof(unsigned long long), stream));
            CK(cudaMemsetAsync(d_maxrel, 0, sizeof(float), stream));
            if (v.f16_out)
              cmp_f16<<<1024, 256, 0, stream>>>((const __half*)sets[i].D, refs[c], alpha, bias,
                                                (size_t)M * N, N, d_bad, d_maxrel);
            else
              cmp_s32<<<1024, 256, 0, stream>>>((const int32_t*)sets[i].D, refs[c],
                                                (size_t)M * N, N, d_bad);
            CK(cudaGetLastError());
            unsigned long long bad = 0;
            float maxrel = 0;
            CK(cudaMemcpyAsync(&bad, d_bad, sizeof(bad), cudaMemcpyDeviceToHost, stream));
            CK(cudaMemcpyAsync(&maxrel, d_maxrel, sizeof(maxrel), cudaMemcpyDeviceToHost, stream));
            CK(cudaStreamSynchronize(stream));
            if (bad) {
              printf("{\"variant\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"check\": \"FAIL %s\", "
                     "\"set\": %d, \"bad\": %llu, \"max_rel\": %g}\n",
                     v.name, M, N, K, when, i, bad, maxrel);
              fflush(stdout);
              good = false;
            }
          }
          return good;
        };
        bool good = check("before", true);
        // ---- timing: a graph of INNER launches over rotating sets; median over REPS replays ----
        cudaGraph_t graph;
        cudaGraphExec_t gexec;
        CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
        for (int j = 0; j < INNER; ++j) CK(v.run(ops[j % nsets], stream));
        CK(cudaStreamEndCapture(stream, &graph));
        CK(cudaGraphInstantiate(&gexec, graph, 0));
        for (int w = 0; w < 3; ++w) CK(cudaGraphLaunch(gexec, stream));
        CK(cudaStreamSynchronize(stream));
        std::vector<double> ts;
        for (int r = 0; r < REPS; ++r) {
          CK(cudaEventRecord(e0, stream));
          CK(cudaGraphLaunch(gexec, stream));
          CK(cudaEventRecord(e1, stream));
          CK(cudaEventSynchronize(e1));
          float ms = 0;
          CK(cudaEventElapsedTime(&ms, e0, e1));
          ts.push_back(ms / INNER);
        }
        CK(cudaGetLastError());
        // Outputs of the checked sets after all the timed launches (no poison, no relaunch).
        // (only sets the graph touched; set 0 always is)
        good = check("after", false) && good;
        double med = median(ts);
        printf("{\"variant\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"ms\": %.5f, "
               "\"ms_min\": %.5f, \"ms_max\": %.5f, \"tops\": %.1f, \"check\": \"%s\", \"sets\": %d}\n",
               v.name, M, N, K, med, *std::min_element(ts.begin(), ts.end()),
               *std::max_element(ts.begin(), ts.end()), flops / med / 1e9, good ? "ok" : "FAIL",
               nsets);
        fflush(stdout);
        if (!good) failures++;
        CK(cudaGraphExecDestroy(gexec));
        CK(cudaGraphDestroy(graph));
        for (void* o : ops) v.destroy(o);
      }
      for (auto& s : sets) {
        CK(cudaFree(s.A));
        CK(cudaFree(s.B));
        CK(cudaFree(s.D));
      }
      for (auto* r : refs) CK(cudaFree(r));
      CK(cudaFree(alpha));
      CK(cudaFree(bias));
    }
  }
  printf("{\"done\": true, \"failures\": %d}\n", failures);
  return failures ? 1 : 0;
}
#endif
