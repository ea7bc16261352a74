"""Throughput over replicas: sequences/s of FastBertEncoder for a long stream of requests, each a
global batch of B sequences per replica with a new length vector (real-traffic lengths), on 1..N
replicas of tf.distribute.MirroredStrategy (the GPUs of this host, or logical CPUs), padded and
with remove_padding.

    python -m benchmarks.throughput --device gpu --replicas 1,2,4 --batch 32 --seq_lens 128,384 \
        --lengths uniform --json out/throughput.json

Each replica count gets its own strategy and encoder (weights mirrored); a request's batch is cut
into one slice per replica, the outputs are waited for once per request (a serving loop that
pipelines nothing across requests). Reported: the median over repeats of sequences/s, and the
scaling efficiency against one replica (sequences/s at N / (N x at 1)).
"""
import json
import os
import platform
import statistics
import time

from checkpoint_tools import cli  # first: keeps TensorFlow's start-up lines quiet

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("device", "cpu", ["cpu", "gpu"], "Replicas on GPUs, or on logical CPUs (a split of the CPU).")
flags.DEFINE_list("replicas", ["1", "2"], "Replica counts to measure.")
flags.DEFINE_integer("batch", 32, "Sequences per replica per request.")
flags.DEFINE_list("seq_lens", ["128"], "Padded sequence lengths.")
flags.DEFINE_enum("dtype", "float16", ["float32", "float16", "bfloat16"], "Activation and weight dtype.")
flags.DEFINE_integer("num_layer", 12, "Encoder layers.")
flags.DEFINE_integer("head_num", 12, "Attention heads.")
flags.DEFINE_integer("size_per_head", 64, "Head size.")
flags.DEFINE_integer("inter_size", 3072, "Intermediate size.")
flags.DEFINE_string("lengths", "uniform", "Traffic: uniform or dataset:PATH (benchmarks/lengths.py); new per request.")
flags.DEFINE_string("vocab_file", None, "The model's vocab.txt, for --lengths dataset:PATH.")
flags.DEFINE_integer("requests", 50, "Requests per timed repeat.")
flags.DEFINE_integer("repeats", 3, "Timed repeats; the median is reported.")
flags.DEFINE_string("json", None, "Write the results here as JSON.")
flags.DEFINE_integer("seed", 0, "Random seed for weights, inputs and lengths.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    try:
        counts = sorted({int(r) for r in FLAGS.replicas})
        seq_lens = [int(s) for s in FLAGS.seq_lens]
    except ValueError:
        raise app.UsageError("--replicas and --seq_lens are lists of integers")
    if not counts or counts[0] < 1 or FLAGS.batch < 1 or FLAGS.requests < 1 or FLAGS.repeats < 1:
        raise app.UsageError("--replicas, --batch, --requests and --repeats must be >= 1")
    kind = "GPU" if FLAGS.device == "gpu" else "CPU"
    if kind == "CPU":
        tf.config.set_visible_devices([], "GPU")
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()
                                                         for _ in range(counts[-1])])
    devices = [d.name for d in tf.config.list_logical_devices(kind)]
    if len(devices) < counts[-1]:
        raise app.UsageError(f"--replicas {counts[-1]}: only {len(devices)} {kind} device(s) visible")

    import fastbert_tf as fb
    from benchmarks.lengths import Lengths
    from fastbert_tf.weights import random_weights
    try:
        source = Lengths(FLAGS.lengths, FLAGS.vocab_file)
    except ValueError as e:
        raise app.UsageError(str(e))
    rng = np.random.default_rng(FLAGS.seed)
    hidden = FLAGS.head_num * FLAGS.size_per_head
    weights = random_weights(rng, FLAGS.num_layer, hidden, FLAGS.inter_size)
    np_dtype = tf.as_dtype(FLAGS.dtype).as_numpy_dtype
    results = []
    for seq_len in seq_lens:
        x_all = rng.standard_normal((FLAGS.batch * counts[-1], seq_len, hidden)).astype(np_dtype)
        for n in counts:
            strategy = tf.distribute.MirroredStrategy(devices[:n], cross_device_ops=tf.distribute.ReductionToOneDevice())
            total = FLAGS.batch * n
            xs = strategy.experimental_distribute_values_from_function(
                lambda ctx: tf.constant(x_all[ctx.replica_id_in_sync_group * FLAGS.batch:
                                              (ctx.replica_id_in_sync_group + 1) * FLAGS.batch]))
            row = {"seq_len": seq_len, "replicas": n, "batch_per_replica": FLAGS.batch}
            for rp in (False, True):
                with strategy.scope():
                    enc = fb.BertEncoder.from_weights(weights, FLAGS.num_layer, FLAGS.head_num, dtype=FLAGS.dtype,
                                                      remove_padding=rp)
                vectors = source.vectors(total, seq_len, FLAGS.requests * FLAGS.repeats + 2, rng)
                lens = [strategy.experimental_distribute_values_from_function(
                    lambda ctx, v=v: tf.constant(v[ctx.replica_id_in_sync_group * FLAGS.batch:
                                                   (ctx.replica_id_in_sync_group + 1) * FLAGS.batch]))
                    for v in vectors]

                def call(length):
                    out = strategy.run(lambda a, b: enc(a, b), args=(xs, length))
                    for t in strategy.experimental_local_results(out):
                        t.numpy()  # waits for the replica's result (a server answers each request)

                if kind == "GPU" and rp:
                    enc.warmup([FLAGS.batch], [seq_len])
                call(lens[0])
                call(lens[1])
                rates = []
                for rep in range(FLAGS.repeats):
                    start = time.perf_counter()
                    for i in range(FLAGS.requests):
                        call(lens[2 + rep * FLAGS.requests + i])
                    rates.append(total * FLAGS.requests / (time.perf_counter() - start))
                name = "op_rp" if rp else "op"
                row[name + "_seq_per_s"] = statistics.median(rates)
                row[name + "_all"] = rates
            row["avg_len"] = float(np.mean(vectors[2:]))
            results.append(row)
    for row in results:
        one = next(r for r in results if r["seq_len"] == row["seq_len"] and r["replicas"] == counts[0])
        for name in ("op", "op_rp"):
            row[name + "_efficiency"] = row[name + "_seq_per_s"] / (row["replicas"] / counts[0] *
                                                                    one[name + "_seq_per_s"])
    print(f"{'S':>5} {'replicas':>8} {'avg len':>8} {'op seq/s':>10} {'eff':>5} {'op_rp seq/s':>12} {'eff':>5}")
    for r in results:
        print(f"{r['seq_len']:>5} {r['replicas']:>8} {r['avg_len']:>8.1f} {r['op_seq_per_s']:>10.0f} "
              f"{r['op_efficiency']:>5.2f} {r['op_rp_seq_per_s']:>12.0f} {r['op_rp_efficiency']:>5.2f}")
    if FLAGS.json:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json)), exist_ok=True)
        meta = {"device": kind, "devices": devices[:counts[-1]], "dtype": FLAGS.dtype, "num_layer": FLAGS.num_layer,
                "hidden": hidden, "lengths": FLAGS.lengths, "requests": FLAGS.requests, "repeats": FLAGS.repeats,
                "host": platform.node(), "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
                "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        with open(FLAGS.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    cli.define_verbose()
    cli.run(main)
