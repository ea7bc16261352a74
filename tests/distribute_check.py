"""Run in a fresh process by tests/test_distribute.py (the logical device split must come before
TensorFlow initializes its devices): a BertEncoder built under MirroredStrategy over two logical
devices of one physical CPU or GPU, called through strategy.run on per-replica slices of a batch
(each replica in its own thread, as MirroredStrategy runs them), against the same encoder on one
device. Prints the max difference; exits 1 if it is not exactly 0."""
import sys

import numpy as np
import tensorflow as tf

kind, dtype, rp = sys.argv[1], sys.argv[2], sys.argv[3] == "rp"
phys = tf.config.list_physical_devices(kind)
if not phys:
    print(f"no {kind} device")
    sys.exit(3)
config = [tf.config.LogicalDeviceConfiguration(memory_limit=4096) if kind == "GPU"
          else tf.config.LogicalDeviceConfiguration() for _ in range(2)]
tf.config.set_logical_device_configuration(phys[0], config)

import fastbert_tf as fb  # noqa: E402
from fastbert_tf import weights as weights_lib  # noqa: E402

rng = np.random.default_rng(11)
layers, heads, size, batch, seq = 2, 4, 32, 6, 40
hidden = heads * size
w = weights_lib.random_weights(rng, layers, hidden, 4 * hidden)
x = rng.standard_normal((batch, seq, hidden)).astype(np.float32)
lens = rng.integers(0, seq + 1, batch).astype(np.int32)
lens[0], lens[-1] = seq, 0
np_dtype = tf.as_dtype(dtype).as_numpy_dtype

devices = [d.name for d in tf.config.list_logical_devices(kind)]
with tf.device(devices[0]):
    single = fb.BertEncoder.from_weights(w, layers, heads, dtype=dtype, remove_padding=rp)
    ref = single(tf.constant(x.astype(np_dtype)), tf.constant(lens)).numpy().astype(np.float64)

strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
with strategy.scope():
    enc = fb.BertEncoder.from_weights(w, layers, heads, dtype=dtype, remove_padding=rp)
half = batch // 2
xs = strategy.experimental_distribute_values_from_function(
    lambda ctx: tf.constant(x[ctx.replica_id_in_sync_group * half:(ctx.replica_id_in_sync_group + 1) * half]
                            .astype(np_dtype)))
ls = strategy.experimental_distribute_values_from_function(
    lambda ctx: tf.constant(lens[ctx.replica_id_in_sync_group * half:(ctx.replica_id_in_sync_group + 1) * half]))
for _ in range(3):  # repeated calls: the per-device caches (graphs, packed weights) in play
    out = strategy.gather(strategy.run(lambda a, b: enc(a, b), args=(xs, ls)), axis=0).numpy().astype(np.float64)
    diff = float(np.abs(out - ref).max())
    print(f"{kind} {dtype} rp={rp}: max |mirrored - single| = {diff:.3e}")
    if diff != 0.0:
        sys.exit(1)
