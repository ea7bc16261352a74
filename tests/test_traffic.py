"""Serving traffic: row buckets, warm-up, and (GPU) random shapes and lengths every call."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import fastbert_tf as fb
from conftest import random_weights

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("capacity", [1, 37, 64, 2048, 2049, 12288, 100000])
def test_row_buckets_cover_every_token_count(capacity):
    buckets = fb.row_buckets(capacity)
    assert buckets == sorted(set(buckets)) and buckets[-1] == capacity and buckets[0] >= 1
    # A call rounds its token count up to the next bucket: the extra rows are at most 63 below 2048
    # tokens and at most 1/16 of the tokens above.
    for lo, hi in zip([0] + buckets[:-1], buckets):
        assert hi - (lo + 1) <= max(63, (lo + 1) // 16), (lo, hi)


def test_row_buckets_count():
    """The README's figure: 72 buckets (graphs to warm) for B=32, S=384."""
    assert len(fb.row_buckets(32 * 384)) == 72
    assert fb.row_buckets(0) == []
    with pytest.raises(ValueError, match="capacity"):
        fb.row_buckets(-1)


def test_warmup_on_cpu_runs_each_shape_once():
    w = random_weights(np.random.default_rng(3), 1, 64, 128)
    with tf.device("/CPU:0"):
        enc = fb.BertEncoder.from_weights(w, 1, 2, remove_padding=True)
        assert enc.warmup([2, 1], [5, 3]) == 4
        with pytest.raises(ValueError, match="warmup"):
            enc.warmup([0], [5])


def test_gpu_cache_stats_without_gpu_work_is_a_list():
    assert isinstance(fb.gpu_cache_stats(), list)


@pytest.mark.gpu
def test_gpu_warmup_then_new_lengths_replay():
    """After warmup, calls with lengths never seen replay graphs: no new captures."""
    w = random_weights(np.random.default_rng(4), 2, 128, 256)
    with tf.device("/GPU:0"):
        enc = fb.BertEncoder.from_weights(w, 2, 2, dtype="float16", remove_padding=True)
    calls = enc.warmup([4], [40])
    assert calls == 2 * len(fb.row_buckets(160))
    before = {s["device"]: s for s in fb.gpu_cache_stats()}
    rng = np.random.default_rng(5)
    with tf.device("/GPU:0"):
        x = tf.constant(rng.standard_normal((4, 40, 128)), tf.float16)
    for _ in range(30):
        with tf.device("/CPU:0"):
            lens = tf.constant(rng.integers(0, 41, 4).astype(np.int32))
        enc(x, lens)
    after = {s["device"]: s for s in fb.gpu_cache_stats()}
    dev = next(iter(after))
    assert after[dev]["graph_captures"] == before[dev]["graph_captures"]
    assert after[dev]["graph_replays"] >= before[dev]["graph_replays"] + 29  # all-zero lengths skip the graph


@pytest.mark.gpu
def test_gpu_500_calls_random_shapes_and_lengths():
    """500 calls, each a random shape and a new length vector, four encoders (float32/float16,
    padded/remove_padding), every result against the float64 reference; a graph cache bounded to
    6 executables must evict and stay within its bounds."""
    env = dict(os.environ, FASTBERT_GRAPH_CACHE="6")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "gpu_traffic.py"), "--calls", "500",
                           "--report_every", "100"], env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 5 and lines[-1]["calls"] == 500 and lines[-1]["failures"] == 0
    st = lines[-1]["caches"][0]
    assert st["graph_execs_max"] == 6 and st["graph_execs"] <= 6 and st["graph_keys"] <= 24
    assert st["graph_replays"] > 0 and st["graph_execs_evicted"] > 0 and st["graph_keys_evicted"] > 0
