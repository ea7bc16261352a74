"""INT8: rounding and scales against numpy, the op's int8 path against a numpy simulation of the
same integer math, and bad quantization inputs."""
import numpy as np
import pytest
import tensorflow as tf

import fastbert_tf as fb
import int8_reference
from checkpoint_tools import quantization
from conftest import random_lengths, random_weights, rel_err
from fastbert_tf import int8
from fastbert_tf.weights import KERNEL_NAMES, LAYER_WEIGHTS, key


def test_quantize_rounding_and_saturation():
    scale = np.float32(0.5)
    x = np.array([0.25, 0.75, -0.25, -0.75, 1.25, 63.4, 63.6, 100.0, -100.0, 0.0, 1e-9], np.float32)
    # half to even: 0.5 -> 0, 1.5 -> 2, -0.5 -> 0, -1.5 -> -2, 2.5 -> 2; then clamp to +-127
    np.testing.assert_array_equal(int8.quantize(x, scale), [0, 2, 0, -2, 2, 127, 127, 127, -127, 0, 0])
    np.testing.assert_array_equal(int8.dequantize(np.array([-127, 3], np.int8), scale), [-63.5, 1.5])
    np.testing.assert_allclose(int8.scale_of([127.0, 0.0, 2.54]), [1.0, 1 / 127, 0.02], rtol=1e-6)


@pytest.mark.parametrize("mode", [1, 2])
def test_quantize_kernel(mode):
    rng = np.random.default_rng(mode)
    w = rng.standard_normal((64, 48)).astype(np.float32) * np.linspace(0.1, 3, 48)[None, :]
    q, scales = quantization.quantize_kernel(w, mode)
    assert q.dtype == np.int8 and q.shape == w.shape
    if mode == 1:
        np.testing.assert_allclose(scales, np.abs(w).max(0) / 127, rtol=1e-6)
        assert np.all(np.abs(q).max(0) == 127)  # each channel uses its full range
    else:
        assert scales.shape == (1,) and np.isclose(scales[0], np.abs(w).max() / 127)
    deq = q.astype(np.float32) * (scales[None, :] if mode == 1 else scales[0])
    assert np.abs(deq - w).max() <= (scales.max() / 2) * (1 + 1e-6)


def quantized_model(rng, layers, hidden, heads, inter, mode, x, lens):
    """Random weights, ranges from a float run over x, kernels quantized: (weights, quant vectors)."""
    w = random_weights(rng, layers, hidden, inter)
    cal = quantization.Calibrator("max")
    cal.set_mask(np.arange(x.shape[1])[None, :] < lens[:, None])
    fb.reference.bert_encoder(tf.constant(x), lens, w, layers, heads, observer=cal)
    acts = cal.ranges()
    qw, quant = dict(w), []
    for layer in range(layers):  # a batch without real tokens observes nothing
        for name in int8.QUANT_ACTIVATIONS:
            acts.setdefault(layer, {}).setdefault(name, 1.0)
    for layer in range(layers):
        ks = {}
        for name in KERNEL_NAMES:
            qw[key(layer, name)], ks[name] = quantization.quantize_kernel(w[key(layer, name)], mode)
        quant.append(int8.quant_vector(acts[layer], ks, mode, hidden, inter))
    return qw, quant


@pytest.mark.parametrize("mode", [1, 2])
@pytest.mark.parametrize("remove_padding", [False, True])
@pytest.mark.parametrize("shape", [(3, 17, 2, 32, 2), (5, 40, 4, 16, 1), (1, 1, 2, 32, 2)])
def test_op_matches_numpy_int8(mode, remove_padding, shape):
    b, s, heads, size, layers = shape
    hidden, inter = heads * size, 4 * heads * size
    rng = np.random.default_rng(hash((mode, shape)) % 2**32)
    x = rng.standard_normal((b, s, hidden)).astype(np.float32)
    lens = random_lengths(rng, b, s)
    qw, quant = quantized_model(rng, layers, hidden, heads, inter, mode, x, lens)
    lists = {op: [tf.constant(qw[key(l, name)]) for l in range(layers)] for op, name, _ in LAYER_WEIGHTS}
    out = fb.fast_bert_encoder(tf.constant(x), lens, lists, [tf.constant(q) for q in quant], num_layer=layers,
                               head_num=heads, size_per_head=size, inter_size=inter, int8_mode=mode,
                               remove_padding=remove_padding).numpy()
    ref = int8_reference.encoder(x, lens, qw, quant, layers, heads, mode)
    assert all(not np.any(out[i, lens[i]:]) for i in range(b))
    # The integer math is exact; float rounding may move a value across an int8 boundary now and then.
    assert rel_err(out, ref) < 1e-3
    close = np.isclose(out, ref, rtol=1e-4, atol=1e-4)
    assert close.mean() > 0.999


@pytest.fixture
def small_int8():
    """A one-layer int8_mode 1 model: (x, lens, op weight lists, quant vectors)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 64)).astype(np.float32)
    lens = np.array([5, 2], np.int32)
    qw, quant = quantized_model(rng, 1, 64, 2, 128, 1, x, lens)
    lists = {op: [tf.constant(qw[key(0, name)])] for op, name, _ in LAYER_WEIGHTS}
    return x, lens, lists, quant


SMALL = dict(num_layer=1, head_num=2, size_per_head=32, inter_size=128, int8_mode=1)


def test_int8_bad_inputs(small_int8):
    x, lens, lists, quant = small_int8
    kw = SMALL
    with pytest.raises(tf.errors.InvalidArgumentError, match="quant_scales\\[0\\] must be float32 \\["):
        fb.fast_bert_encoder(x, lens, lists, [tf.constant(quant[0][:-1])], **kw)
    bad = quant[0].copy()
    bad[3] = 0.0
    with pytest.raises(tf.errors.InvalidArgumentError, match="scales must be finite and > 0"):
        fb.fast_bert_encoder(x, lens, lists, [tf.constant(bad)], **kw)
    with pytest.raises(tf.errors.InvalidArgumentError, match="quant_scales must have one tensor per layer"):
        fb.fast_bert_encoder(x, lens, lists, [], **kw)
    with pytest.raises(ValueError, match="query_kernel\\[0\\] is int8.*int8_mode=0"):
        fb.fast_bert_encoder(x, lens, lists, **dict(kw, int8_mode=0))
    with pytest.raises(ValueError, match="int8_mode must be 0, 1 or 2"):
        fb.BertEncoder.from_weights(random_weights(np.random.default_rng(1), 1, 64, 128), 1, 2, int8_mode=3)


@pytest.mark.gpu
def test_int8_on_gpu_is_a_clear_error(small_int8):
    x, lens, lists, quant = small_int8
    with tf.device("/GPU:0"):
        with pytest.raises(tf.errors.UnimplementedError, match="runs on the CPU only"):
            fb.fast_bert_encoder(tf.constant(x), lens, lists, [tf.constant(quant[0])], **SMALL)
