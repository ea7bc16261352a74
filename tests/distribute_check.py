"""Run in a fresh process by tests/test_distribute.py (the logical device split must come before
TensorFlow initializes its devices): a BertEncoder built under MirroredStrategy over two logical
devices of one physical CPU or GPU, called through strategy.run on per-replica slices of a batch
(each replica in its own thread, as MirroredStrategy runs them), against the same encoder on one
device: exactly what that device computes for the same slices, and (CPU: exactly; GPU: within the
dtype's tolerance, as cuBLAS may choose another algorithm for the whole batch's row count) what
it computes for the whole batch. Prints the differences; exits 1 on a mismatch."""
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
half = batch // 2
with tf.device(devices[0]):
    single = fb.BertEncoder.from_weights(w, layers, heads, dtype=dtype, remove_padding=rp)

    def run(a, b):
        return single(tf.constant(x[a:b].astype(np_dtype)), tf.constant(lens[a:b])).numpy().astype(np.float64)

    ref_full = run(0, batch)
    ref_slices = np.concatenate([run(0, half), run(half, batch)])

strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
with strategy.scope():
    enc = fb.BertEncoder.from_weights(w, layers, heads, dtype=dtype, remove_padding=rp)
xs = strategy.experimental_distribute_values_from_function(
    lambda ctx: tf.constant(x[ctx.replica_id_in_sync_group * half:(ctx.replica_id_in_sync_group + 1) * half]
                            .astype(np_dtype)))
ls = strategy.experimental_distribute_values_from_function(
    lambda ctx: tf.constant(lens[ctx.replica_id_in_sync_group * half:(ctx.replica_id_in_sync_group + 1) * half]))
for _ in range(3):  # repeated calls: the per-device caches (graphs, packed weights) in play
    out = strategy.gather(strategy.run(lambda a, b: enc(a, b), args=(xs, ls)), axis=0).numpy().astype(np.float64)
    diff = float(np.abs(out - ref_slices).max())
    rel_full = float(np.linalg.norm(out - ref_full) / max(np.linalg.norm(ref_full), 1e-30))
    print(f"{kind} {dtype} rp={rp}: max |mirrored - single, same slices| = {diff:.3e}; "
          f"relative to the whole batch on one device {rel_full:.3e}")
    tol = 0.0 if kind == "CPU" else {"float32": 3e-3, "float16": 1e-2, "bfloat16": 3e-2}[dtype]
    if diff != 0.0 or rel_full > tol:
        sys.exit(1)
