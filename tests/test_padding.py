"""RemovePadding / RebuildPadding: exact inverses on the real tokens, zeros elsewhere, clear errors."""
import numpy as np
import pytest
import tensorflow as tf

import fastbert_tf as fb
from conftest import random_lengths

DEVICES = [pytest.param("/CPU:0", id="cpu"), pytest.param("/GPU:0", id="gpu", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [tf.float32, tf.float16, tf.bfloat16, tf.float64, tf.int8])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 17, 8), (33, 130, 24), (3, 4, 768)])
def test_round_trip_exact(device, dtype, shape):
    rng = np.random.default_rng(sum(shape))
    b, s, h = shape
    x = rng.standard_normal(shape) * 50
    lens = random_lengths(rng, b, s)
    with tf.device(device):
        xt = tf.cast(tf.constant(x), dtype)
        packed, cu = fb.remove_padding(xt, lens)
        back = fb.rebuild_padding(packed, cu, s)
    xn = xt.numpy()
    assert cu.numpy().tolist() == [0] + np.cumsum(lens).tolist()
    assert packed.shape == (lens.sum(), h)
    expect = np.concatenate([xn[i, :lens[i]] for i in range(b)]) if lens.sum() else np.zeros((0, h))
    np.testing.assert_array_equal(packed.numpy(), expect.astype(xn.dtype))
    back = back.numpy()
    for i in range(b):
        np.testing.assert_array_equal(back[i, :lens[i]], xn[i, :lens[i]])
        assert not np.any(back[i, lens[i]:])


@pytest.mark.parametrize("device", DEVICES)
def test_empty(device):
    with tf.device(device):
        packed, cu = fb.remove_padding(tf.zeros([0, 4, 8]), tf.zeros([0], tf.int32))
        assert packed.shape == (0, 8) and cu.numpy().tolist() == [0]
        back = fb.rebuild_padding(packed, cu, 4)
        assert back.shape == (0, 4, 8)
        packed, cu = fb.remove_padding(tf.ones([3, 0, 8]), tf.zeros([3], tf.int32))
        assert packed.shape == (0, 8) and cu.numpy().tolist() == [0, 0, 0, 0]
        assert fb.rebuild_padding(packed, cu, 0).shape == (3, 0, 8)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hidden,lens,match", [
    (np.ones([2, 3, 4], np.float32), [1, 4], "outside \\[0, 3\\]"),
    (np.ones([2, 3, 4], np.float32), [-1, 2], "outside"),
    (np.ones([2, 3, 4], np.float32), [1, 2, 3], "must be \\[batch\\]"),
    (np.ones([2, 3], np.float32), [1, 2], "rank 3|\\[batch, seq_len, hidden\\]"),
])
def test_remove_padding_bad_input(device, hidden, lens, match):
    with tf.device(device):
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=match):
            fb.remove_padding(tf.constant(hidden), tf.constant(lens, tf.int32))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rows,cu,max_len,match", [
    (5, [0, 3, 2, 5], 4, "non-decreasing"),
    (5, [0, 2, 4], 4, "must equal the number of packed rows"),
    (5, [1, 2, 5], 4, "cu_seqlens\\[0\\] must be 0"),
    (5, [0, 5], 4, "more than max_seq_len"),
    (5, [0, 2, 5], -1, "max_seq_len must be >= 0"),
    (0, [], 3, "at least one entry|rank"),
])
def test_rebuild_padding_bad_input(device, rows, cu, max_len, match):
    with tf.device(device):
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=match):
            fb.rebuild_padding(tf.ones([rows, 4]), tf.constant(cu, tf.int32), max_len)
