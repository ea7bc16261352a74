"""Checks and times the CUDA runner without TensorFlow (for a GPU machine that has PyTorch only).

Here (with TensorFlow): write cases, each with fb.reference's float64 output:
    python tests/cuda/check_runner.py make --out .device-cases
There (PyTorch for device memory; build/libfastbert_cuda_harness.so from `make harness`):
    python3 tests/cuda/check_runner.py check --cases .device-cases
    python3 tests/cuda/check_runner.py breakdown      # per-stage kernel times, BERT-base fp16
    python3 tests/cuda/check_runner.py traffic        # new lengths every call: checked and timed
"""
import argparse
import ctypes
import glob
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

# fastbert_tf/weights.py alone: the package itself imports TensorFlow, which the GPU machine may lack.
import importlib.util  # noqa: E402
_spec = importlib.util.spec_from_file_location("fb_weights", os.path.join(ROOT, "fastbert_tf", "weights.py"))
_weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_weights)
LAYER_WEIGHTS, key, random_weights = _weights.LAYER_WEIGHTS, _weights.key, _weights.random_weights
from benchmarks.lengths import half_lengths  # noqa: E402 (numpy only)

DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2}
TOL = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 3e-2}
ACT = {"gelu_tanh": 0, "gelu": 1}


def make_cases(out_dir):
    import tensorflow as tf
    import fastbert_tf as fb
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(2024)
    # (B, S, heads, size_per_head, inter, layers, activation, q_scaling)
    shapes = [(1, 1, 1, 32, 64, 1, "gelu_tanh", 1.0), (3, 17, 2, 64, 256, 2, "gelu", 1.0),
              (33, 130, 2, 64, 512, 2, "gelu_tanh", 1.0), (5, 64, 3, 32, 192, 1, "gelu", 1.3),
              (2, 200, 4, 128, 1024, 1, "gelu_tanh", 1.0), (4, 33, 3, 48, 288, 2, "gelu", 1.0),
              (6, 70, 2, 16, 64, 1, "gelu_tanh", 1.0), (8, 128, 12, 64, 3072, 1, "gelu_tanh", 1.0),
              (2, 9, 1, 256, 512, 1, "gelu", 1.0), (7, 1, 2, 64, 128, 1, "gelu_tanh", 1.0)]
    for i, (b, s, nh, d, inter, layers, act, qs) in enumerate(shapes):
        hidden = nh * d
        # Inputs and weights are float16 values, so every dtype's reference sees what the op sees.
        w = {k: v.astype(np.float16) for k, v in
             random_weights(rng, layers, hidden, inter, kernel_std=None, vector_std=0.2).items()}
        x = rng.standard_normal((b, s, hidden)).astype(np.float16)
        lens = rng.integers(0, s + 1, b).astype(np.int32)
        if b >= 2:
            lens[0], lens[-1] = s, 0
        refs = {}
        for dtype in DTYPES:
            np_dtype = tf.as_dtype(dtype).as_numpy_dtype
            xr = x.astype(np_dtype).astype(np.float64)
            wr = {k: v.astype(np_dtype).astype(np.float64) for k, v in w.items()}
            with tf.device("/CPU:0"):
                refs["ref_" + dtype] = fb.reference.bert_encoder(tf.constant(xr), lens, wr, layers, nh, activation=act,
                                                                 q_scaling=qs).numpy().astype(np.float32)
        np.savez(os.path.join(out_dir, f"case{i:02d}.npz"), x=x, lens=lens,
                 meta=json.dumps(dict(b=b, s=s, nh=nh, d=d, inter=inter, layers=layers, act=act, qs=qs)),
                 **refs, **{"w/" + k: v for k, v in w.items()})
    print(f"wrote {len(shapes)} cases to {out_dir}")


class Harness:
    def __init__(self, path):
        import torch
        self.torch = torch
        for lib in ("libcublasLt.so.13", "libcublas.so.13"):
            ctypes.CDLL(os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "lib64", lib),
                        mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(path)
        self.lib.fb_run_encoder.argtypes = (
            [ctypes.c_int] * 9 + [ctypes.c_float, ctypes.c_float] + [ctypes.c_void_p] * 4 +
            [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
             ctypes.c_int, ctypes.c_char_p, ctypes.c_int])
        self.lib.fb_cache_stats.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.lib.fb_padding.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                        ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_char_p, ctypes.c_int]
        self.stream = torch.cuda.current_stream().cuda_stream

    def torch_dtype(self, dtype):
        return {"float32": self.torch.float32, "float16": self.torch.float16, "bfloat16": self.torch.bfloat16}[dtype]

    def device_weights(self, w, layers, dtype):
        tensors = [self.torch.tensor(w[key(l, name)]).to("cuda", self.torch_dtype(dtype))
                   for l in range(layers) for _, name, _ in LAYER_WEIGHTS]
        ptrs = (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])
        return tensors, ptrs

    def cache_stats(self):
        buf = ctypes.create_string_buffer(1 << 16)
        self.lib.fb_cache_stats(buf, len(buf))
        return json.loads(buf.value.decode())

    def run(self, dtype, x, lens, wptrs, m, rp, iterations=1, stages=False, out=None, sync=True):
        lens_c = np.ascontiguousarray(lens, np.int32)
        lp = lens_c.ctypes.data_as(ctypes.c_void_p)
        if out is None:
            out = self.torch.full_like(x, float("nan"))  # poisoned: every element must be written
        err = ctypes.create_string_buffer(512)
        names = ctypes.create_string_buffer(32 * 32)
        ms = (ctypes.c_double * 32)()
        rc = self.lib.fb_run_encoder(DTYPES[dtype], m["b"], m["s"], m["nh"], m["d"], m["inter"], m["layers"], int(rp),
                                     ACT[m["act"]], 1e-12, m["qs"], lp, x.data_ptr(), wptrs, out.data_ptr(),
                                     self.stream, iterations, int(sync), names if stages else None,
                                     ms if stages else None, 32, err, 512)
        if rc:
            raise RuntimeError(err.value.decode())
        timing = {}
        if stages:
            for i in range(32):
                name = names.raw[32 * i:32 * i + 32].split(b"\0")[0].decode()
                if not name:
                    break
                timing[name] = ms[i]
        return out, timing


def rel_err(out, ref):
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    return np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30)


def check(args):
    h = Harness(args.harness)
    torch = h.torch
    failures = 0
    for path in sorted(glob.glob(os.path.join(args.cases, args.only))):
        z = np.load(path)
        m = json.loads(str(z["meta"]))
        w = {k[2:]: z[k] for k in z.files if k.startswith("w/")}
        lens = z["lens"]
        for dtype in DTYPES:
            tensors, wptrs = h.device_weights(w, m["layers"], dtype)
            x = torch.tensor(z["x"]).to("cuda", h.torch_dtype(dtype))
            outs = {}
            for rp in (False, True):
                out, _ = h.run(dtype, x, lens, wptrs, m, rp)
                o = out.float().cpu().numpy().astype(np.float64)
                zero_ok = all(not np.any(o[i, lens[i]:]) for i in range(m["b"]))
                finite = np.all(np.isfinite(o))
                err = rel_err(o, z["ref_" + dtype])
                ok = finite and zero_ok and err < TOL[dtype]
                failures += not ok
                outs[rp] = o
                print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(path)} {dtype:8s} rp={int(rp)} rel_err={err:.2e} "
                      f"finite={finite} padded_zero={zero_ok}", flush=True)
            cross = rel_err(outs[True], outs[False])
            failures += not cross < TOL[dtype]
            print(f"     rp on vs off: {cross:.2e}")
            del tensors
    if args.quick:  # under compute-sanitizer: the saved cases only
        print("FAILURES:", failures)
        return 1 if failures else 0
    # padding kernels: exact round trip, many shapes, odd row sizes
    rng = np.random.default_rng(0)
    for b, s, row in [(1, 1, 1), (5, 17, 6), (33, 130, 1536), (256, 64, 3), (4, 1024, 3072)]:
        lens = rng.integers(0, s + 1, b).astype(np.int32)
        cu = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        src = torch.randint(0, 255, (b, s, row), dtype=torch.uint8, device="cuda")
        packed = torch.full((int(cu[-1]), row), 7, dtype=torch.uint8, device="cuda")
        back = torch.full((b, s, row), 7, dtype=torch.uint8, device="cuda")
        ws = torch.empty(4096 + 4 * b, dtype=torch.uint8, device="cuda")
        err = ctypes.create_string_buffer(256)
        cp = cu.ctypes.data_as(ctypes.c_void_p)
        assert h.lib.fb_padding(1, src.data_ptr(), cp, b, s, row, packed.data_ptr(), ws.data_ptr(), h.stream, err, 256) == 0, err.value
        assert h.lib.fb_padding(0, packed.data_ptr(), cp, b, s, row, back.data_ptr(), ws.data_ptr(), h.stream, err, 256) == 0, err.value
        sn, bn = src.cpu().numpy(), back.cpu().numpy()
        expect = np.concatenate([sn[i, :lens[i]] for i in range(b)]) if cu[-1] else np.zeros((0, row))
        ok = np.array_equal(packed.cpu().numpy(), expect) and all(
            np.array_equal(bn[i, :lens[i]], sn[i, :lens[i]]) and not np.any(bn[i, lens[i]:]) for i in range(b))
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} padding B={b} S={s} row_bytes={row}")
    # large shapes: fp16 against fp32, rp on against off (no saved reference)
    for b, s in [(256, 64), (4, 1024), (32, 384)]:
        m = dict(b=b, s=s, nh=12, d=64, inter=3072, layers=1, act="gelu_tanh", qs=1.0)
        w = random_weights(rng, 1, 768, 3072, kernel_std=None, vector_std=0.2)
        lens = rng.integers(0, s + 1, b).astype(np.int32)
        lens[0] = s
        x32 = torch.randn(b, s, 768, device="cuda")
        res = {}
        for dtype in ("float32", "float16"):
            t, wp = h.device_weights(w, 1, dtype)
            for rp in (False, True):
                res[dtype, rp] = h.run(dtype, x32.to(h.torch_dtype(dtype)), lens, wp, m, rp)[0].float().cpu().numpy()
        e1 = rel_err(res["float16", True], res["float32", False])
        e2 = rel_err(res["float32", True], res["float32", False])
        ok = e1 < 1e-2 and e2 < 1e-5 and all(np.all(np.isfinite(v)) for v in res.values())
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} large B={b} S={s}: fp16 vs fp32 {e1:.2e}, rp vs padded fp32 {e2:.2e}")
    print("FAILURES:", failures)
    return 1 if failures else 0


def bert_base_inputs(h, b, s, dtype, rng):
    w = random_weights(rng, 12, 768, 3072)
    tensors, wp = h.device_weights(w, 12, dtype)
    x = h.torch.randn(b, s, 768, device="cuda").to(h.torch_dtype(dtype))
    return tensors, wp, x, w


def breakdown(args):
    """Per-stage kernel time (CUDA events between stages) and ms per pass, BERT-base."""
    h = Harness(args.harness)
    torch = h.torch
    rng = np.random.default_rng(0)
    rows = []
    for b, s in [(int(v.split("x")[0]), int(v.split("x")[1])) for v in args.shapes.split(",")]:
        tensors, wp, x, w = bert_base_inputs(h, b, s, args.dtype, rng)
        m = dict(b=b, s=s, nh=12, d=64, inter=3072, layers=12, act="gelu_tanh", qs=1.0)
        for rp, lens in ((False, np.full(b, s, np.int32)), (True, half_lengths(b, s))):
            h.run(args.dtype, x, lens, wp, m, rp, iterations=3)
            _, stages = h.run(args.dtype, x, lens, wp, m, rp, iterations=args.iters, stages=True)
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            times = []
            for _ in range(5):
                start.record()
                h.run(args.dtype, x, lens, wp, m, rp, iterations=args.iters)
                stop.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(stop) / args.iters)
            total = sum(stages.values())
            rows.append(dict(batch=b, seq_len=s, remove_padding=rp, avg_len=float(lens.mean()),
                             ms_per_pass=float(np.median(times)), stages_ms=stages))
            print(f"\nB={b} S={s} remove_padding={rp} (avg len {lens.mean():.0f}): {np.median(times):.3f} ms/pass "
                  f"(harness loop, host launch included)")
            gemm = sum(v for k, v in stages.items() if k.endswith("gemm"))
            for name, v in sorted(stages.items(), key=lambda kv: -kv[1]):
                print(f"  {name:14s} {v:8.3f} ms  {100 * v / total:5.1f}%  ({v / 12 * 1e3:7.1f} us/layer)")
            print(f"  {'GEMMs':14s} {gemm:8.3f} ms  {100 * gemm / total:5.1f}%;  attention "
                  f"{stages.get('attention', 0):.3f} ms; rest {total - gemm - stages.get('attention', 0):.3f} ms")
        if args.torch:
            rows[-1]["torch_ms"] = time_torch(torch, w, x, b, s, args.iters)
            print(f"  PyTorch (transformers BertEncoder, sdpa, {args.dtype}): {rows[-1]['torch_ms']:.3f} ms/pass")
        del tensors
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "dtype": args.dtype, "rows": rows}, f, indent=1)


def time_torch(torch, w, x, b, s, iters):
    """transformers' BertEncoder with the same weights (full-length sequences), CUDA events."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertEncoder
    cfg = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                     hidden_act="gelu_new", attn_implementation="sdpa")
    enc = BertEncoder(cfg).to("cuda", x.dtype).eval()
    with torch.no_grad():
        for i, layer in enumerate(enc.layer):
            def put(mod, name):
                kernel = torch.tensor(w[key(i, name + "/kernel")]).t()
                mod.weight.copy_(kernel)
                mod.bias.copy_(torch.tensor(w[key(i, name + "/bias")]))
            put(layer.attention.self.query, "attention/self/query")
            put(layer.attention.self.key, "attention/self/key")
            put(layer.attention.self.value, "attention/self/value")
            put(layer.attention.output.dense, "attention/output/dense")
            put(layer.intermediate.dense, "intermediate/dense")
            put(layer.output.dense, "output/dense")
        for _ in range(3):
            enc(x)
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(5):
            start.record()
            for _ in range(iters):
                enc(x)
            stop.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(stop) / iters)
    return float(np.median(times))


def torch_reference(torch, w, x, lens, m):
    """fb.reference's math in float32 PyTorch (the GPU machine has no TensorFlow): padded rows zero."""
    import torch.nn.functional as F
    b, s, nh, d = m["b"], m["s"], m["nh"], m["d"]
    h = nh * d
    lens_t = torch.tensor(np.asarray(lens), device="cuda")
    valid = torch.arange(s, device="cuda")[None, :] < lens_t[:, None]  # [B, S]
    bias = torch.where(valid, 0.0, -1e30)[:, None, None, :]
    x = x.float()

    def p(l, name):
        return torch.tensor(np.asarray(w[key(l, name)], np.float32), device="cuda")

    def ln(v, l, name):
        return F.layer_norm(v, (h,), p(l, name + "/gamma"), p(l, name + "/beta"), eps=1e-12)

    def heads(v):
        return v.view(b, s, nh, d).transpose(1, 2)

    for l in range(m["layers"]):
        q, k, v = (heads(x @ p(l, f"attention/self/{n}/kernel") + p(l, f"attention/self/{n}/bias"))
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / (np.sqrt(d) * m["qs"]) + bias
        ctx = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, s, h)
        a = ln(ctx @ p(l, "attention/output/dense/kernel") + p(l, "attention/output/dense/bias") + x, l,
               "attention/output/LayerNorm")
        inter = a @ p(l, "intermediate/dense/kernel") + p(l, "intermediate/dense/bias")
        inter = F.gelu(inter, approximate="tanh" if m["act"] == "gelu_tanh" else "none")
        x = ln(inter @ p(l, "output/dense/kernel") + p(l, "output/dense/bias") + a, l, "output/LayerNorm")
    return x * valid[:, :, None]


def traffic(args):
    """A new length vector every call (what serving sees). Check: every call of several shapes, in
    both modes, against a float32 PyTorch reference, with padded rows zero, and the caches within
    their bounds. Time: BERT-base calls back to back, new lengths vs one repeated length vector."""
    h = Harness(args.harness)
    torch = h.torch
    rng = np.random.default_rng(7)
    failures = 0
    for b, s, nh, d, inter, layers, act in [(4, 33, 2, 64, 256, 2, "gelu"), (16, 64, 2, 32, 128, 1, "gelu_tanh"),
                                            (1, 130, 4, 32, 256, 1, "gelu_tanh"), (32, 40, 1, 64, 128, 1, "gelu")]:
        m = dict(b=b, s=s, nh=nh, d=d, inter=inter, layers=layers, act=act, qs=1.0)
        w = {k: v.astype(np.float16) for k, v in
             random_weights(rng, layers, nh * d, inter, kernel_std=None, vector_std=0.2).items()}
        for dtype in ("float16", "float32"):
            tensors, wp = h.device_weights(w, layers, dtype)
            worst = {False: 0.0, True: 0.0}
            bad = 0
            for call in range(args.calls):
                lens = rng.integers(0, s + 1, b).astype(np.int32)
                if call % 7 == 0:
                    lens[:] = s
                elif call % 11 == 0 and b > 1:
                    lens[0], lens[-1] = 0, s
                x = torch.randn(b, s, nh * d, device="cuda").half().to(h.torch_dtype(dtype))
                ref = torch_reference(torch, w, x, lens, m).cpu().numpy()
                for rp in (False, True):
                    o = h.run(dtype, x, lens, wp, m, rp)[0].float().cpu().numpy()
                    err = rel_err(o, ref)
                    zero_ok = all(not np.any(o[i, lens[i]:]) for i in range(b))
                    ok = np.all(np.isfinite(o)) and zero_ok and err < TOL[dtype]
                    worst[rp] = max(worst[rp], err)
                    bad += not ok
            failures += bad
            print(f"{'ok  ' if not bad else 'FAIL'} traffic B={b} S={s} {dtype}: {args.calls} calls, worst rel_err "
                  f"padded {worst[False]:.2e} rp {worst[True]:.2e}, {bad} bad", flush=True)
            del tensors
    for st in h.cache_stats():
        within = st["graph_execs"] <= st["graph_execs_max"] and st["graph_keys"] <= st["graph_keys_max"] and \
            st["gemm_plans"] <= st["gemm_plans_max"]
        failures += not within
        print(f"{'ok  ' if within else 'FAIL'} caches {st}")

    # Timing: BERT-base, calls back to back (the host enqueues, the GPU runs), median of 5.
    timings = []
    for b, s in [(int(v.split("x")[0]), int(v.split("x")[1])) for v in args.shapes.split(",")]:
        tensors, wp, x, _ = bert_base_inputs(h, b, s, args.dtype, rng)
        m = dict(b=b, s=s, nh=12, d=64, inter=3072, layers=12, act="gelu_tanh", qs=1.0)
        lo = min(20, s)
        vectors = [rng.integers(lo, s + 1, b).astype(np.int32) for _ in range(args.iters)]
        fixed = [vectors[0]] * args.iters
        out = torch.empty_like(x)
        row = dict(batch=b, seq_len=s)
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for name, rp, vecs in (("padded_new", False, vectors), ("rp_fixed", True, fixed), ("rp_new", True, vectors)):
            cold = None
            times = []
            for rep in range(7):
                torch.cuda.synchronize()
                start.record()
                for lens in vecs:
                    h.run(args.dtype, x, lens, wp, m, rp, out=out, sync=False)
                stop.record()
                torch.cuda.synchronize()
                t = start.elapsed_time(stop) / len(vecs)
                if rep == 0:
                    cold = t
                elif rep >= 2:  # the first two rounds capture each bucket's graph
                    times.append(t)
            row[name] = float(np.median(times))
            row[name + "_cold"] = cold
        timings.append(row)
        print(f"B={b} S={s} ms/call: padded {row['padded_new']:.3f}, rp fixed lengths {row['rp_fixed']:.3f}, "
              f"rp new lengths {row['rp_new']:.3f} (first round {row['rp_new_cold']:.3f}); "
              f"rp new / fixed {row['rp_new'] / row['rp_fixed']:.2f}, rp new / padded "
              f"{row['rp_new'] / row['padded_new']:.2f}", flush=True)
        del tensors
    print("caches after timing:", h.cache_stats())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "dtype": args.dtype, "rows": timings}, f, indent=1)
    print("FAILURES:", failures)
    return 1 if failures else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("--out", default=".device-cases")
    for name in ("check", "breakdown", "traffic"):
        sp = sub.add_parser(name)
        sp.add_argument("--harness", default=os.path.join(ROOT, "build", "libfastbert_cuda_harness.so"))
        sp.add_argument("--cases", default=".device-cases")
        sp.add_argument("--shapes", default="8x128,32x384")
        sp.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
        sp.add_argument("--iters", type=int, default=20)
        sp.add_argument("--torch", action="store_true", help="also time transformers' BertEncoder")
        sp.add_argument("--json", default=None)
        sp.add_argument("--only", default="*.npz", help="glob of case files")
        sp.add_argument("--quick", action="store_true", help="saved cases only (for compute-sanitizer)")
        sp.add_argument("--calls", type=int, default=60, help="traffic: checked calls per shape and dtype")
    args = p.parse_args()
    if args.cmd == "make":
        make_cases(args.out)
        return 0
    return {"check": check, "breakdown": breakdown, "traffic": traffic}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
