"""Every invalid input to the encoder is a clear error, never a crash or a wrong answer."""
import numpy as np
import pytest
import tensorflow as tf

import fastbert_tf as fb
from conftest import random_weights
from fastbert_tf.weights import OP_INPUT_NAMES, LAYER_WEIGHTS, key

DEVICES = [pytest.param("/CPU:0", id="cpu"), pytest.param("/GPU:0", id="gpu", marks=pytest.mark.gpu)]
H, NH, I, L = 64, 2, 128, 2


@pytest.fixture(scope="module")
def weights():
    return random_weights(np.random.default_rng(0), L, H, I)


def raw_lists(weights, dtype=np.float32):
    return {op: [tf.constant(weights[key(l, name)].astype(dtype)) for l in range(L)]
            for op, name, _ in LAYER_WEIGHTS}


def call_op(lists, x, lens, **attrs):
    kw = dict(num_layer=L, head_num=NH, size_per_head=H // NH, inter_size=I)
    kw.update(attrs)
    return fb.fast_bert_encoder(tf.constant(x), tf.constant(lens, tf.int32), lists, **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("x_shape,lens,attrs,match", [
    ((2, 3, H), [1, 4], {}, "sequence_length\\[1\\] = 4 is outside \\[0, 3\\]"),
    ((2, 3, H), [-2, 1], {}, "sequence_length\\[0\\] = -2"),
    ((2, 3, H), [1, 1, 1], {}, "sequence_length must be \\[batch\\]"),
    ((2, 3, H + 2), [1, 1], {}, "head_num \\* size_per_head|must equal|Dimension"),
    ((2, H), [1, 1], {}, "rank 3|\\[batch, seq_len, hidden\\]|must be rank"),
    ((2, 3, H), [1, 1], {"head_num": 4, "size_per_head": 15}, "size_per_head must be even"),
    ((2, 3, H), [1, 1], {"inter_size": I + 1}, "intermediate_kernel\\[0\\] must have shape"),
    ((2, 3, H), [1, 1], {"q_scaling": 0.0}, "q_scaling must be > 0"),
    ((2, 3, H), [1, 1], {"int8_mode": 3}, "int8_mode"),
])
def test_invalid_argument(device, weights, x_shape, lens, attrs, match):
    with tf.device(device):
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=match):
            call_op(raw_lists(weights), np.ones(x_shape, np.float32), lens, **attrs)


@pytest.mark.parametrize("device", DEVICES)
def test_wrong_weight_shape_named(device, weights):
    lists = raw_lists(weights)
    lists["value_kernel"][1] = tf.ones([H, H - 2])
    with tf.device(device):
        with pytest.raises(tf.errors.InvalidArgumentError, match="value_kernel\\[1\\] must have shape \\[64,64\\]"):
            call_op(lists, np.ones([2, 3, H], np.float32), [1, 2])


@pytest.mark.parametrize("device", DEVICES)
def test_weight_count_mismatch(device, weights):
    lists = raw_lists(weights)
    lists["key_bias"] = lists["key_bias"][:1]
    with tf.device(device):
        with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError), match="key_bias|num_weights|length"):
            call_op(lists, np.ones([2, 3, H], np.float32), [1, 2])
    lists = raw_lists(weights)
    lists["key_bias"] = [tf.ones([L + 1, H])]
    lists = {k: (v if k == "key_bias" else [tf.stack(v)]) for k, v in lists.items()}
    with tf.device(device):
        with pytest.raises(tf.errors.InvalidArgumentError, match="key_bias\\[0\\] must have shape \\[64\\] or \\[2,64\\]"):
            call_op(lists, np.ones([2, 3, H], np.float32), [1, 2])


def test_dtype_mismatch(weights):
    lists = raw_lists(weights, np.float16)
    with pytest.raises(ValueError, match="query_kernel\\[0\\] is float16; with hidden_states float32"):
        call_op(lists, np.ones([2, 3, H], np.float32), [1, 2])


def test_from_weights_validation(weights):
    w = dict(weights)
    del w[key(1, "attention/self/key/bias")]
    with pytest.raises(ValueError, match="missing key 'layer_1/attention/self/key/bias'"):
        fb.BertEncoder.from_weights(w, L, NH)
    w = dict(weights)
    w["layer_0/attention/self/extra"] = np.ones(3)
    with pytest.raises(ValueError, match="unexpected key 'layer_0/attention/self/extra'"):
        fb.BertEncoder.from_weights(w, L, NH)
    with pytest.raises(ValueError, match="weights hold layer_1 but num_layer=1"):
        fb.BertEncoder.from_weights(weights, 1, NH)
    with pytest.raises(ValueError, match="missing key 'layer_2/"):
        fb.BertEncoder.from_weights(weights, 3, NH)
    w = dict(weights)
    w[key(0, "output/dense/kernel")] = np.ones([I, H + 1], np.float32)
    with pytest.raises(ValueError, match="weights\\['layer_0/output/dense/kernel'\\] has shape \\[128, 65\\]"):
        fb.BertEncoder.from_weights(w, L, NH)
    with pytest.raises(ValueError, match="not divisible by head_num=3"):
        fb.BertEncoder.from_weights(weights, L, 3)
    with pytest.raises(ValueError, match="must be even"):
        fb.BertEncoder.from_weights(weights, L, 64)
    with pytest.raises(ValueError, match="dtype"):
        fb.BertEncoder.from_weights(weights, L, NH, dtype="int8")
    with pytest.raises(ValueError, match="activation"):
        fb.BertEncoder.from_weights(weights, L, NH, activation="relu")
    # the scope prefix is accepted
    enc = fb.BertEncoder.from_weights({"bert/encoder/" + k: v for k, v in weights.items()}, L, NH)
    assert enc.hidden == H


def test_call_validation(weights):
    enc = fb.BertEncoder.from_weights(weights, L, NH)
    with pytest.raises(ValueError, match="float16, this encoder is float32"):
        enc(tf.ones([1, 2, H], tf.float16), [2])
    with pytest.raises(ValueError, match="last dimension must be 64"):
        enc(tf.ones([1, 2, H + 2]), [2])
    with pytest.raises(ValueError, match="integers"):
        enc(tf.ones([1, 2, H]), [2.0])


def test_op_input_names_match_registration():
    import inspect
    names = list(inspect.signature(fb.load_op_library().fast_bert_encoder).parameters)
    assert names[2:2 + len(OP_INPUT_NAMES)] == list(OP_INPUT_NAMES)
