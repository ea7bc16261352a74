"""FastBertEncoder against fb.reference in float64, on fresh random inputs, many shapes and lengths."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastbert_tf as fb
from fastbert_tf import weights as weights_lib
from conftest import NP_DTYPE, TOL, padded_rows_are_zero, random_lengths, random_weights, reference, rel_err

DEVICES = [pytest.param("/CPU:0", id="cpu"), pytest.param("/GPU:0", id="gpu", marks=pytest.mark.gpu)]


def _cases():
    """(B, S, heads, size_per_head, layers, activation): extremes first, then seeded random ones."""
    cases = [(1, 1, 1, 32, 1, "gelu_tanh"), (33, 130, 2, 64, 2, "gelu"), (2, 128, 2, 64, 3, "gelu_tanh"),
             (5, 64, 3, 32, 1, "gelu"), (1, 130, 1, 64, 2, "gelu_tanh"), (33, 1, 2, 32, 1, "gelu"),
             (4, 7, 2, 64, 1, "gelu_tanh"), (8, 33, 3, 64, 2, "gelu")]
    rng = np.random.default_rng(1234)
    for _ in range(10):
        cases.append((int(rng.integers(1, 34)), int(rng.integers(1, 131)), int(rng.integers(1, 4)),
                      int(rng.choice([32, 64])), int(rng.integers(1, 4)), str(rng.choice(["gelu_tanh", "gelu"]))))
    return cases


CASES = _cases()


def run_op(device, weights, x, lens, num_layer, head_num, dtype, **kwargs):
    with tf.device(device):
        enc = fb.BertEncoder.from_weights(weights, num_layer, head_num, dtype=dtype, **kwargs)
        out = enc(tf.constant(x.astype(NP_DTYPE[dtype])), tf.constant(lens))
        return out.numpy().astype(np.float64)


def check(device, case, dtype, seed, q_scaling=1.0, eps=1e-12):
    batch, seq_len, heads, size, layers, act = case
    hidden = heads * size
    rng = np.random.default_rng(seed)
    weights = random_weights(rng, layers, hidden, int(rng.choice([2, 4])) * hidden)
    x = rng.standard_normal((batch, seq_len, hidden)).astype(np.float32)
    lens = random_lengths(rng, batch, seq_len)
    # The reference sees exactly the values the op sees (inputs rounded to dtype).
    np_dtype = NP_DTYPE[dtype]
    w_rounded = {k: v.astype(np_dtype).astype(np.float64) for k, v in weights.items()}
    ref = reference(x.astype(np_dtype).astype(np.float64), lens, w_rounded, layers, heads, act, eps, q_scaling)
    outs = {}
    for rp in (False, True):
        out = run_op(device, weights, x, lens, layers, heads, dtype, remove_padding=rp, activation=act,
                     q_scaling=q_scaling, layer_norm_eps=eps)
        assert np.all(np.isfinite(out))
        assert padded_rows_are_zero(out, lens), f"remove_padding={rp}: padded rows not zero"
        err = rel_err(out, ref)
        assert err < TOL[dtype], f"remove_padding={rp}: relative error {err:.2e} >= {TOL[dtype]}"
        outs[rp] = out
    assert rel_err(outs[True], outs[False]) < TOL[dtype]
    return outs, weights, x, lens


TF32_TOL = 3e-3  # TF32 rounds GEMM inputs to 10 mantissa bits (as float16 does); the rest is float32


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES[:8], ids=str)
def test_float32_gpu_follows_tensorflow_tf32_switch(case):
    """With TensorFlow's TF32 switch on, the op's float32 GEMMs run in TF32: within TF32 accuracy of
    float64, and measurably different from the same call with the switch off (so the switch is read)."""
    batch, seq_len, heads, size, layers, act = case
    rng = np.random.default_rng(hash(case) % 2**32)
    hidden = heads * size
    weights = random_weights(rng, layers, hidden, 4 * hidden)
    x = rng.standard_normal((batch, seq_len, hidden)).astype(np.float32)
    lens = random_lengths(rng, batch, seq_len)
    ref = reference(x.astype(np.float64), lens, {k: v.astype(np.float64) for k, v in weights.items()}, layers,
                    heads, act)
    outs = {}
    try:
        for tf32 in (True, False):
            tf.config.experimental.enable_tensor_float_32_execution(tf32)
            for rp in (False, True):
                outs[tf32, rp] = run_op("/GPU:0", weights, x, lens, layers, heads, "float32", remove_padding=rp,
                                        activation=act)
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(False)
    for rp in (False, True):
        assert padded_rows_are_zero(outs[True, rp], lens)
        err32, err_tf32 = rel_err(outs[False, rp], ref), rel_err(outs[True, rp], ref)
        assert err32 < TOL["float32"], f"TF32 off, remove_padding={rp}: {err32:.2e}"
        assert err_tf32 < TF32_TOL, f"TF32 on, remove_padding={rp}: {err_tf32:.2e} >= {TF32_TOL}"
        if lens.max() > 0:
            # TF32 inputs carry 2^-11 relative rounding; float32's 2^-24 leaves errors far below.
            assert err_tf32 > 4 * err32, f"TF32 on looks like float32 ({err_tf32:.2e} vs {err32:.2e})"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}-S{}-h{}x{}-L{}-{}".format(*c))
def test_float32_matches_reference(device, case):
    outs, weights, x, lens = check(device, case, "float32", seed=hash(case) % 2**32)
    if device == "/GPU:0":  # the GPU op also agrees with the CPU op
        cpu = run_op("/CPU:0", weights, x, lens, case[4], case[2], "float32", activation=case[5])
        assert rel_err(outs[False], cpu) < TOL["float32"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: "B{}-S{}-h{}x{}-L{}-{}".format(*c))
def test_reduced_precision_matches_reference(device, dtype, case):
    check(device, case, dtype, seed=hash((case, dtype)) % 2**32)


@pytest.mark.parametrize("device", DEVICES)
def test_q_scaling_and_eps(device):
    check(device, (3, 20, 2, 32, 2, "gelu"), "float32", seed=7, q_scaling=1.7, eps=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_all_lengths_zero_and_all_full(device, dtype):
    rng = np.random.default_rng(3)
    weights = random_weights(rng, 2, 64, 128)
    x = rng.standard_normal((4, 9, 64)).astype(np.float32)
    for lens in (np.zeros(4, np.int32), np.full(4, 9, np.int32)):
        for rp in (False, True):
            out = run_op(device, weights, x, lens, 2, 2, dtype, remove_padding=rp)
            ref = reference(x.astype(NP_DTYPE[dtype]).astype(np.float64), lens,
                            {k: v.astype(NP_DTYPE[dtype]) for k, v in weights.items()}, 2, 2)
            assert padded_rows_are_zero(out, lens)
            assert rel_err(out, ref) < TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch_and_sequence(device):
    rng = np.random.default_rng(4)
    weights = random_weights(rng, 1, 64, 128)
    for shape in ((0, 5, 64), (3, 0, 64)):
        out = run_op(device, weights, np.zeros(shape, np.float32), np.zeros(shape[0], np.int32), 1, 2, "float32")
        assert out.shape == shape


@pytest.mark.gpu
@pytest.mark.parametrize("batch,seq_len", [(256, 64), (4, 1024), (16, 512)])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_gpu_large_shapes(batch, seq_len, dtype):
    check("/GPU:0", (batch, seq_len, 12, 64, 1, "gelu_tanh"), dtype, seed=batch * seq_len)


@pytest.mark.parametrize("case", [(3, 600, 2, 64, 1, "gelu"), (2, 300, 3, 32, 2, "gelu_tanh")],
                         ids=["B3-S600", "B2-S300"])
def test_cpu_long_sequences(case):
    """Keys past the GEMM kernel's 256-deep panels: attention's products take several of them."""
    check("/CPU:0", case, "float32", seed=case[1])


FP32_LEVEL = 1.5e-6  # fp32 kernels here: 2.7-3.9e-7; bf16 split in two parts: 4.4e-6


def test_cpu_float32_accuracy_is_fp32_level():
    """Tighter than TOL: whichever GEMM kernel runs (tests/test_cpu_kernels.py runs each), float32
    results stay near fp32 rounding. Products on plain bf16, or on two bf16 parts, would not
    (relative errors ~1e-3 and ~1e-5)."""
    batch, seq_len, heads, size, layers, act = 4, 96, 4, 64, 2, "gelu"
    rng = np.random.default_rng(5)
    weights = random_weights(rng, layers, heads * size, 4 * heads * size)
    x = rng.standard_normal((batch, seq_len, heads * size)).astype(np.float32)
    lens = random_lengths(rng, batch, seq_len)
    ref = reference(x.astype(np.float64), lens, weights, layers, heads, act)
    for rp in (False, True):
        out = run_op("/CPU:0", weights, x, lens, layers, heads, "float32", remove_padding=rp, activation=act)
        err = rel_err(out, ref)
        assert err < FP32_LEVEL, f"{fb.cpu_gemm_kernel()} kernel, remove_padding={rp}: relative error {err:.2e}"


def test_cpu_bfloat16_accuracy_beats_tensorflow_bfloat16():
    """dtype="bfloat16" on the CPU computes its GEMMs in bfloat16 (A rounded too, float32
    accumulation; AMX: one tile product instead of the float32 path's six) and keeps LayerNorm,
    softmax and the activations between kernels in float32: at BERT-base width it must stay near
    float64 and no further from it than TensorFlow's own bfloat16 run of the same encoder (measured
    on an AMX Xeon: 2.0e-3 vs 6.9e-3 over 2 layers, 3.0e-3 vs 1.5e-2 over 12)."""
    layers, heads, size, batch, seq_len = 2, 12, 64, 3, 96
    hidden = heads * size
    rng = np.random.default_rng(8)
    weights = weights_lib.random_weights(rng, layers, hidden, 4 * hidden)  # BERT-like statistics
    x = rng.standard_normal((batch, seq_len, hidden)).astype(np.float32)
    lens = random_lengths(rng, batch, seq_len)
    bf16 = NP_DTYPE["bfloat16"]
    ref = reference(x.astype(bf16).astype(np.float64), lens,
                    {k: v.astype(bf16).astype(np.float64) for k, v in weights.items()}, layers, heads)
    with tf.device("/CPU:0"):
        tf_bf16 = fb.reference.bert_encoder(tf.constant(x.astype(bf16)), tf.constant(lens),
                                            {k: tf.constant(v.astype(bf16)) for k, v in weights.items()},
                                            layers, heads).numpy().astype(np.float64)
    tf_err = rel_err(tf_bf16, ref)
    for rp in (False, True):
        out = run_op("/CPU:0", weights, x, lens, layers, heads, "bfloat16", remove_padding=rp)
        err = rel_err(out, ref)
        assert err < 5e-3, f"{fb.cpu_gemm_kernel()} kernel, remove_padding={rp}: relative error {err:.2e}"
        assert err <= tf_err, f"remove_padding={rp}: op {err:.2e} vs TensorFlow bfloat16 {tf_err:.2e}"


@pytest.mark.parametrize("update", ["assign", "assign_add", "scatter", "restore"])
def test_cpu_weight_updates_are_seen(update, tmp_path):
    """The CPU op may keep its weights packed between calls (the AMX kernel does): every kind of
    variable update must reach the next call, including sparse ones (after which TF updates the
    variable's buffer in place)."""
    rng = np.random.default_rng(21)
    layers, heads, hidden, inter = 2, 2, 64, 128
    w0 = random_weights(rng, layers, hidden, inter)
    x = rng.standard_normal((3, 17, hidden)).astype(np.float32)
    lens = random_lengths(rng, 3, 17)
    names = {"intermediate_kernel": "intermediate/dense/kernel", "query_kernel": "attention/self/query/kernel"}

    def stacked(w, name):
        return np.stack([w[f"layer_{l}/{names[name]}"] for l in range(layers)]).astype(np.float32)

    with tf.device("/CPU:0"):
        enc = fb.BertEncoder.from_weights(w0, layers, heads)
        f = tf.function(lambda a, b: enc(a, b))
        out = f(x, lens).numpy()
        assert rel_err(out, reference(x, lens, w0, layers, heads)) < TOL["float32"]
        w = dict(w0)
        for step in range(2):  # twice: the second scatter finds the variable in copy-on-read mode
            for name in names:
                var = enc.layer_variables[name][0]
                new = dict(w)
                new[f"layer_1/{names[name]}"] = rng.standard_normal(w[f"layer_1/{names[name]}"].shape) * 0.1
                value = stacked(new, name)
                if update == "assign":
                    var.assign(value)
                elif update == "assign_add":
                    var.assign_add(value - var.numpy())
                elif update == "scatter":
                    var.scatter_nd_update([[1]], value[1:2])
                else:
                    source = tf.Variable(value)
                    path = tf.train.Checkpoint(v=source).write(str(tmp_path / f"ckpt{step}{name}"))
                    tf.train.Checkpoint(v=var).read(path).assert_consumed()
                w = new
            out = f(x, lens).numpy()
            err = rel_err(out, reference(x, lens, w, layers, heads))
            assert err < TOL["float32"], f"{update}, step {step}: the op computed with stale weights ({err:.2e})"


def test_cpu_concurrent_calls():
    """Several threads calling one encoder at once (the first calls pack the weights, under a lock
    the op and the process-wide packing registry share) all get the reference's answer."""
    import threading
    rng = np.random.default_rng(31)
    layers, heads, hidden = 2, 2, 64
    weights = random_weights(rng, layers, hidden, 2 * hidden)
    xs = [rng.standard_normal((2, 19, hidden)).astype(np.float32) for _ in range(4)]
    lens = random_lengths(rng, 2, 19)
    with tf.device("/CPU:0"):
        encs = [fb.BertEncoder.from_weights(weights, layers, heads, remove_padding=rp) for rp in (False, True)]
        fns = [tf.function(lambda a, b, e=e: e(a, b)) for e in encs]
    outs, errors = {}, []

    def work(i):
        try:
            with tf.device("/CPU:0"):
                for rep in range(3):
                    outs[(i, rep)] = fns[i % 2](xs[i], lens).numpy()
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(4):
        ref = reference(xs[i], lens, weights, layers, heads)
        for rep in range(3):
            assert rel_err(outs[(i, rep)], ref) < TOL["float32"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 6), seq_len=st.integers(1, 40), heads=st.integers(1, 3),
       size=st.sampled_from([2, 8, 16, 32, 48, 64]), layers=st.integers(1, 2),
       act=st.sampled_from(["gelu_tanh", "gelu"]), seed=st.integers(0, 2**31))
def test_fuzz_cpu(batch, seq_len, heads, size, layers, act, seed):
    check("/CPU:0", (batch, seq_len, heads, size, layers, act), "float32", seed=seed)


@pytest.mark.gpu
@pytest.mark.parametrize("remove_padding", [False, True])
def test_gpu_repeated_calls(remove_padding):
    """Calls after the first replay a captured CUDA graph: new values, moved buffers and lengths
    permuted under the same shape must all still give the reference's answer."""
    rng = np.random.default_rng(11)
    weights = random_weights(rng, 2, 128, 256)
    enc = None
    with tf.device("/GPU:0"):
        enc = fb.BertEncoder.from_weights(weights, 2, 2, dtype="float32", remove_padding=remove_padding)
    lens_a = np.array([9, 3, 0, 7], np.int32)
    for step, lens in enumerate([lens_a, lens_a, lens_a[::-1].copy(), lens_a, np.array([9, 9, 1, 0], np.int32)]):
        x = rng.standard_normal((4, 9, 128)).astype(np.float32)
        with tf.device("/GPU:0"):
            keep = [tf.constant(x) for _ in range(step)]  # shift the allocator so buffers move
            out = enc(tf.constant(x), tf.constant(lens)).numpy()
            del keep
        ref = reference(x, lens, weights, 2, 2)
        assert padded_rows_are_zero(out, lens)
        assert rel_err(out, ref) < TOL["float32"], f"call {step}"
