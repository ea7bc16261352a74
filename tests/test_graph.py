"""tf.function with unknown dims, SavedModel round trip, shape inference, gradients."""
import numpy as np
import pytest
import tensorflow as tf

import fastbert_tf as fb
from conftest import random_weights, rel_err


@pytest.fixture(scope="module")
def encoder():
    w = random_weights(np.random.default_rng(5), 2, 64, 256)
    return fb.BertEncoder.from_weights(w, 2, 2, activation="gelu")


def test_tf_function_unknown_dims(encoder):
    f = tf.function(encoder.__call__, input_signature=[tf.TensorSpec([None, None, 64], tf.float32),
                                                       tf.TensorSpec([None], tf.int32)])
    concrete = f.get_concrete_function()
    assert concrete.structured_outputs.shape.as_list() == [None, None, 64]
    rng = np.random.default_rng(0)
    for b, s in [(1, 3), (4, 17), (2, 40)]:
        x = tf.constant(rng.standard_normal((b, s, 64)), tf.float32)
        lens = tf.constant(rng.integers(0, s + 1, b), tf.int32)
        np.testing.assert_allclose(f(x, lens).numpy(), encoder(x, lens).numpy(), rtol=0, atol=1e-6)


def test_shape_inference_static():
    w = random_weights(np.random.default_rng(1), 1, 64, 128)
    enc = fb.BertEncoder.from_weights(w, 1, 2)

    @tf.function
    def f(x, lens):
        out = enc(x, lens)
        packed, cu = fb.remove_padding(x, lens)
        back = fb.rebuild_padding(packed, cu, 7)
        assert out.shape.as_list() == [3, 7, 64]
        assert packed.shape.as_list() == [None, 64] and cu.shape.as_list() == [4]
        assert back.shape.as_list() == [3, 7, 64]
        return out

    f(tf.ones([3, 7, 64]), tf.constant([1, 2, 3]))


def test_saved_model_round_trip(encoder, tmp_path):
    rng = np.random.default_rng(2)
    x = tf.constant(rng.standard_normal((3, 11, 64)), tf.float32)
    lens = tf.constant([11, 0, 4], tf.int32)
    expect = encoder(x, lens).numpy()
    path = str(tmp_path / "enc")
    tf.saved_model.save(encoder, path, signatures={"serving_default": encoder.serve})
    fb.load_op_library()
    loaded = tf.saved_model.load(path)
    got = loaded.serve(x, lens).numpy()
    assert rel_err(got, expect) < 1e-6
    got = loaded.signatures["serving_default"](hidden_states=x, sequence_length=lens)
    assert rel_err(list(got.values())[0].numpy(), expect) < 1e-6


def test_gradient_raises_naming_op(encoder):
    x = tf.Variable(tf.ones([1, 3, 64]))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(encoder(x, [3]))
    with pytest.raises(NotImplementedError, match="FastBertEncoder has no gradient"):
        tape.gradient(y, x)
    with tf.GradientTape() as tape:
        packed, cu = fb.remove_padding(x, [2])
        y = tf.reduce_sum(packed)
    with pytest.raises(NotImplementedError, match="RemovePadding has no gradient"):
        tape.gradient(y, x)
    with tf.GradientTape() as tape:
        tape.watch(packed)
        y = tf.reduce_sum(fb.rebuild_padding(packed, cu, 3))
    with pytest.raises(NotImplementedError, match="RebuildPadding has no gradient"):
        tape.gradient(y, packed)


def test_load_op_library_idempotent():
    assert fb.load_op_library() is fb.load_op_library()


@pytest.mark.parametrize("device", [pytest.param("/CPU:0", id="cpu"), pytest.param("/GPU:0", id="gpu", marks=pytest.mark.gpu)])
def test_variables_and_tensors_agree(device):
    """Weights as resource variables (the op reads them) or as tensors give the same output."""
    from fastbert_tf.weights import LAYER_WEIGHTS, key
    w = random_weights(np.random.default_rng(8), 2, 64, 128)
    rng = np.random.default_rng(9)
    x = tf.constant(rng.standard_normal((3, 6, 64)), tf.float32)
    lens = tf.constant([6, 2, 0])
    with tf.device(device):
        enc = fb.BertEncoder.from_weights(w, 2, 2)
        via_vars = enc(x, lens).numpy()
        tensors = {op: [tf.constant(w[key(l, name)]) for l in range(2)] for op, name, _ in LAYER_WEIGHTS}
        via_tensors = fb.fast_bert_encoder(x, lens, tensors, num_layer=2, head_num=2, size_per_head=32,
                                           inter_size=128).numpy()
        stacked = {k: [tf.stack(v)] for k, v in tensors.items()}
        via_stacked = fb.fast_bert_encoder(x, lens, stacked, num_layer=2, head_num=2, size_per_head=32,
                                           inter_size=128).numpy()
    np.testing.assert_array_equal(via_vars, via_tensors)
    np.testing.assert_array_equal(via_vars, via_stacked)
