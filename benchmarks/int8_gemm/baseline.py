"""cuBLASLt baselines for the BERT-base GEMM shapes (issue 13, step 1).

Runs on the GPU machine (PyTorch only). For each shape (M tokens, N, K), "TN":
A is M x K row-major, the weight W is N x K row-major (K contiguous), out = A @ W^T.

  fp16   torch.matmul(A, W.t())                 fp16 in, fp16 out (cuBLASLt)
  int8   torch._int_mm(A, W.t())                s8 in, s32 out (cuBLASLt)
  fp8    torch._scaled_mm(A, W.t(), ...)        e4m3 in, fp16 out, scalar scales (cuBLASLt)
         (fp8_fast: use_fast_accum=True)

Timing matches int8_gemm.cu: inputs rotate over several buffer sets so that a set is
not in L2 from the previous launch (>= 256 MB over all sets, at most 64 sets); 10 warm-up
launches; 20 back-to-back launches are captured in one CUDA graph (no host launch gaps), and
the result is the median over 20 timed replays (CUDA events) divided by 20.
Prints one JSON line per (variant, shape): {variant, M, N, K, ms, tops}; ms is per GEMM.
"""
import json
import statistics
import sys

import torch

MS = [1024, 4096, 12288]
NKS = [(2304, 768), (768, 768), (3072, 768), (768, 3072)]
REPS, INNER, WARM = 20, 20, 10
ROTATE_BYTES = 256 << 20
FAILS = []


def time_fn(fns):
    """fns: zero-arg callables, one per buffer set. Captures INNER calls (rotating sets) into a
    CUDA graph, replays it WARM times, then times REPS replays with CUDA events; returns the
    median, min and max ms per call (same method as int8_gemm.cu)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(WARM):
            fns[i % len(fns)]()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for j in range(INNER):
            fns[j % len(fns)]()
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(REPS):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        g.replay()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / INNER)
    del g
    return statistics.median(times), min(times), max(times)


def nsets(bytes_per_set):
    return max(1, min(64, -(-ROTATE_BYTES // bytes_per_set)))


def check(name, got, ref, tol):
    err = ((got.double() - ref).norm() / ref.norm()).item()
    if not (err <= tol):
        print(json.dumps({"variant": name, "check": "FAIL", "rel_err": err}), flush=True)
        FAILS.append(name)
    return err


def main():
    torch.manual_seed(0)
    dev = "cuda"
    have_fp8 = hasattr(torch, "_scaled_mm") and hasattr(torch, "float8_e4m3fn")
    for M in MS:
        for N, K in NKS:
            flops = 2.0 * M * N * K
            rows = []
            # ---- int8: s8 x s8 -> s32 ----
            n = nsets(M * K + N * K + 4 * M * N)
            A8 = [torch.randint(-128, 128, (M, K), dtype=torch.int8, device=dev) for _ in range(n)]
            W8 = [torch.randint(-128, 128, (N, K), dtype=torch.int8, device=dev) for _ in range(n)]
            O32 = [torch.empty((M, N), dtype=torch.int32, device=dev) for _ in range(n)]
            got = torch._int_mm(A8[0], W8[0].t())
            ref = (A8[0].double() @ W8[0].double().t())
            err = check("cublaslt_int8", got, ref, 0.0)
            fns = [lambda i=i: torch._int_mm(A8[i], W8[i].t()) for i in range(n)]
            try:  # _int_mm has an out= overload in recent torch; use it when present
                torch._int_mm(A8[0], W8[0].t(), out=O32[0])
                fns = [lambda i=i: torch._int_mm(A8[i], W8[i].t(), out=O32[i]) for i in range(n)]
            except (TypeError, RuntimeError):
                pass
            ms, mn, mx = time_fn(fns)
            rows.append(("cublaslt_int8", ms, mn, mx, err, n))
            del A8, W8, O32, fns
            # ---- fp16 ----
            n = nsets(2 * (M * K + N * K + M * N))
            A16 = [torch.randn((M, K), dtype=torch.float16, device=dev) for _ in range(n)]
            W16 = [torch.randn((N, K), dtype=torch.float16, device=dev) for _ in range(n)]
            O16 = [torch.empty((M, N), dtype=torch.float16, device=dev) for _ in range(n)]
            got = torch.matmul(A16[0], W16[0].t())
            ref = A16[0].double() @ W16[0].double().t()
            err = check("cublaslt_fp16", got, ref, 5e-3)
            fns = [lambda i=i: torch.matmul(A16[i], W16[i].t(), out=O16[i]) for i in range(n)]
            ms, mn, mx = time_fn(fns)
            rows.append(("cublaslt_fp16", ms, mn, mx, err, n))
            # ---- fp8 e4m3 -> fp16 (optional) ----
            if have_fp8:
                try:
                    A8f = [a.to(torch.float8_e4m3fn) for a in A16]
                    W8f = [w.to(torch.float8_e4m3fn) for w in W16]
                    one = torch.tensor(1.0, device=dev)
                    got = torch._scaled_mm(A8f[0], W8f[0].t(), scale_a=one, scale_b=one,
                                           out_dtype=torch.float16)
                    ref = A8f[0].double() @ W8f[0].double().t()
                    err = check("cublaslt_fp8", got, ref, 5e-3)
                    for fast in (False, True):
                        fns = [lambda i=i: torch._scaled_mm(A8f[i], W8f[i].t(), scale_a=one,
                                                            scale_b=one, out_dtype=torch.float16,
                                                            use_fast_accum=fast)
                               for i in range(n)]
                        ms, mn, mx = time_fn(fns)
                        rows.append(("cublaslt_fp8" + ("_fastacc" if fast else ""), ms, mn, mx,
                                     err, n))
                    del A8f, W8f
                except Exception as ex:  # noqa: BLE001 - optional baseline
                    print(json.dumps({"variant": "cublaslt_fp8", "M": M, "N": N, "K": K,
                                      "error": repr(ex)[:200]}), flush=True)
            del A16, W16, O16
            for name, ms, mn, mx, err, n in rows:
                print(json.dumps({"variant": name, "M": M, "N": N, "K": K,
                                  "ms": round(ms, 5), "ms_min": round(mn, 5),
                                  "ms_max": round(mx, 5),
                                  "tops": round(flops / ms / 1e9, 1), "rel_err": err,
                                  "sets": n}), flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "cuda": torch.version.cuda}), flush=True)
    main()
    print(json.dumps({"done": True, "failures": FAILS}), flush=True)
    sys.exit(1 if FAILS else 0)
