#include "tf_ops/cuda/gemm_plans.h"

namespace fastbert {
namespace cuda {

GemmPlans::~GemmPlans() {
  for (auto& kv : plans_) Destroy(kv.second);
}

Status GemmPlans::Run(DType dtype, bool tf32, int64_t m, int64_t n, int64_t k, const void* a, const void* w, void* c,
                      Epilogue epilogue, const void* bias, void* ws, size_t ws_bytes, cudaStream_t stream,
                      bool* supported) {
  *supported = true;
  tf32 = tf32 && dtype == DType::kFloat32;
  const Key key{m, n, k, static_cast<int>(dtype) * 2 + (tf32 ? 1 : 0), static_cast<int>(epilogue), ws_bytes};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    if (plans_.size() >= kMaxPlans) {
      auto victim = plans_.find(lru_.back());
      Destroy(victim->second);
      plans_.erase(victim);
      lru_.pop_back();
      ++evicted_;
    }
    Plan plan;
    const Status st = Create(dtype, tf32, m, n, k, epilogue, ws_bytes, &plan);
    if (!st.ok()) {
      Destroy(plan);
      return st;
    }
    ++created_;
    lru_.push_front(key);
    plan.lru = lru_.begin();
    it = plans_.emplace(key, plan).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Plan& plan = it->second;
  if (!plan.has_algo) {
    *supported = false;
    return Status::Ok();
  }
  if (epilogue != Epilogue::kNone) {
    FB_BLAS("cublasLtMatmulDescSetAttribute(bias)",
            cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  const float alpha = 1.0f, beta = 0.0f;
  FB_BLAS("cublasLtMatmul", cublasLtMatmul(lt_, plan.desc, &alpha, w, plan.w, a, plan.a, &beta, c, plan.c, c,
                                           plan.c, &plan.algo, ws, ws_bytes, stream));
  return Status::Ok();
}

Status GemmPlans::Create(DType dtype, bool tf32, int64_t m, int64_t n, int64_t k, Epilogue epilogue, size_t ws_bytes,
                         Plan* plan) {
  const cudaDataType_t t = CudaType(dtype);
  // float32 is TF32 only when the caller says so (TensorFlow's switch); otherwise full float32.
  FB_BLAS("cublasLtMatmulDescCreate",
          cublasLtMatmulDescCreate(&plan->desc, ComputeType(dtype, tf32), CUDA_R_32F));
  const cublasOperation_t op = CUBLAS_OP_N;
  FB_BLAS("cublasLtMatmulDescSetAttribute",
          cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op, sizeof(op)));
  FB_BLAS("cublasLtMatmulDescSetAttribute",
          cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op, sizeof(op)));
  if (epilogue != Epilogue::kNone) {
    const cublasLtEpilogue_t ep = epilogue == Epilogue::kBias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
    FB_BLAS("cublasLtMatmulDescSetAttribute",
            cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)));
    FB_BLAS("cublasLtMatmulDescSetAttribute",
            cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &t, sizeof(t)));
  }
  FB_BLAS("cublasLtMatrixLayoutCreate", cublasLtMatrixLayoutCreate(&plan->w, t, n, k, n));
  FB_BLAS("cublasLtMatrixLayoutCreate", cublasLtMatrixLayoutCreate(&plan->a, t, k, m, k));
  FB_BLAS("cublasLtMatrixLayoutCreate", cublasLtMatrixLayoutCreate(&plan->c, t, n, m, n));
  cublasLtMatmulPreference_t pref = nullptr;
  FB_BLAS("cublasLtMatmulPreferenceCreate", cublasLtMatmulPreferenceCreate(&pref));
  FB_BLAS("cublasLtMatmulPreferenceSetAttribute",
          cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                               sizeof(ws_bytes)));
  cublasLtMatmulHeuristicResult_t result;
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(lt_, plan->desc, plan->w, plan->a, plan->c, plan->c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0) {
    plan->algo = result.algo;
    plan->has_algo = true;
  } else if (epilogue == Epilogue::kNone) {
    return BlasError("cublasLtMatmulAlgoGetHeuristic (no algorithm)", static_cast<int>(st));
  }
  return Status::Ok();
}

void GemmPlans::Destroy(Plan& p) {
  if (p.w) cublasLtMatrixLayoutDestroy(p.w);
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.c) cublasLtMatrixLayoutDestroy(p.c);
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  p.w = p.a = p.c = nullptr;
  p.desc = nullptr;
  p.has_algo = false;
}

}  // namespace cuda
}  // namespace fastbert
