"""Serving traffic on the GPU encoder: random shapes and a new length vector every call.

    python tests/gpu_traffic.py --calls 500 --check_every 1        # tests/test_traffic.py runs this
    python tests/gpu_traffic.py --calls 100000 --check_every 5000 --shapes wide   # the soak

Each call picks a shape (B, S) and lengths (0 and S included), runs a float32 and a float16 encoder,
padded and with remove_padding, and (every --check_every calls) checks the outputs against
fb.reference in float64 and that padded rows are zeros. Every --report_every calls it prints one
JSON line: calls, worst errors, TF's GPU memory in use, the process's RSS and fb.gpu_cache_stats().
Exits 1 if any check failed or a cache is over its bound.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import tensorflow as tf  # noqa: E402

import fastbert_tf as fb  # noqa: E402
from conftest import TOL, padded_rows_are_zero, random_lengths, random_weights, reference, rel_err  # noqa: E402

LAYERS, HEADS, SIZE, INTER = 2, 2, 64, 256


def within_bounds(st):
    return (st["graph_execs"] <= st["graph_execs_max"] and st["graph_keys"] <= st["graph_keys_max"]
            and st["gemm_plans"] <= st["gemm_plans_max"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--check_every", type=int, default=1)
    p.add_argument("--report_every", type=int, default=0, help="0: once at the end")
    p.add_argument("--shapes", choices=["repeat", "wide"], default="repeat",
                   help="repeat: B, S from small sets (keys repeat: graphs captured, replayed, evicted); "
                        "wide: B in [1, 32], S in [1, 256] (most shapes rarely repeat)")
    p.add_argument("--dtypes", default="float32,float16", help="encoders' dtypes (each padded and remove_padding)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not tf.config.list_physical_devices("GPU"):
        print("no GPU visible to TensorFlow", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    weights = random_weights(rng, LAYERS, HEADS * SIZE, INTER)
    with tf.device("/GPU:0"):
        encoders = {(dtype, rp): fb.BertEncoder.from_weights(weights, LAYERS, HEADS, dtype=dtype, remove_padding=rp)
                    for dtype in args.dtypes.split(",") for rp in (False, True)}
    funcs = {k: e.serve for k, e in encoders.items()}  # what a SavedModel serves: unknown dims
    worst = {k: 0.0 for k in encoders}
    failures = []
    start = time.time()
    report_every = args.report_every or args.calls

    def report(call):
        info = tf.config.experimental.get_memory_info("GPU:0")
        stats = fb.gpu_cache_stats()
        line = {"calls": call, "seconds": round(time.time() - start, 1), "failures": len(failures),
                "worst_rel_err": {f"{d}{'_rp' if rp else ''}": v for (d, rp), v in worst.items()},
                "gpu_bytes_in_use": info["current"], "gpu_bytes_peak": info["peak"],
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "caches": stats}
        print(json.dumps(line), flush=True)
        return stats

    for call in range(1, args.calls + 1):
        if args.shapes == "repeat":
            b, s = int(rng.choice([1, 2, 3, 5, 8])), int(rng.choice([1, 7, 16, 33, 64]))
        else:
            b, s = int(rng.integers(1, 33)), int(rng.integers(1, 257))
        lens = random_lengths(rng, b, s)
        x = rng.standard_normal((b, s, HEADS * SIZE)).astype(np.float32)
        check = call % args.check_every == 0
        ref = reference(x, lens, weights, LAYERS, HEADS) if check else None
        with tf.device("/CPU:0"):
            lt = tf.constant(lens)
        for (dtype, rp), f in funcs.items():
            with tf.device("/GPU:0"):
                xd = tf.cast(tf.constant(x), dtype)
                out = f(xd, lt)
            if not check:
                continue
            out = tf.cast(out, tf.float32).numpy()
            # float16 inputs are rounded: compare with the reference of what the op saw
            r = ref if dtype == "float32" else reference(tf.cast(xd, tf.float32).numpy(), lens, weights, LAYERS,
                                                         HEADS)
            err = rel_err(out, r)
            worst[dtype, rp] = max(worst[dtype, rp], err)
            if not (np.all(np.isfinite(out)) and padded_rows_are_zero(out, lens) and err < TOL[dtype]):
                failures.append(dict(call=call, dtype=dtype, remove_padding=rp, B=b, S=s, lens=lens.tolist(),
                                     rel_err=err))
        if call % report_every == 0:
            stats = report(call)
            if not all(within_bounds(st) for st in stats):
                failures.append(dict(call=call, over_bound=stats))
    for f in failures[:10]:
        print("FAIL", json.dumps(f), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
