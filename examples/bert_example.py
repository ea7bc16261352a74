"""BERT-base encoder with random weights: the op against fb.reference, with and without
remove_padding, then a short timing of each, the benchmark's way (benchmarks/timing.py) with one
pass per call (the README's main job).

    python examples/bert_example.py                       # CPU, float32, B=8 S=128
    python examples/bert_example.py --device gpu --dtype float16 --batch 32 --seq_len 384
"""
import os
import statistics
import sys

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLAGS = flags.FLAGS
flags.DEFINE_enum("device", "cpu", ["cpu", "gpu"], "Where to run.")
flags.DEFINE_enum("dtype", "float32", ["float32", "float16", "bfloat16"], "Encoder dtype.")
flags.DEFINE_integer("batch", 8, "Batch size.")
flags.DEFINE_integer("seq_len", 128, "Padded sequence length.")
flags.DEFINE_integer("num_layer", 12, "Layers (BERT-base: 12).")
flags.DEFINE_integer("repeats", 5, "Timed calls per variant (median; this VM is noisy).")


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fastbert_tf as fb
    from benchmarks.timing import time_variants
    from fastbert_tf.weights import random_weights

    if FLAGS.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise app.UsageError("--device gpu: TensorFlow sees no GPU")
    device = "/GPU:0" if FLAGS.device == "gpu" else "/CPU:0"
    layers, heads, hidden, inter = FLAGS.num_layer, 12, 768, 3072
    rng = np.random.default_rng(0)
    weights = random_weights(rng, layers, hidden, inter)
    x = rng.standard_normal((FLAGS.batch, FLAGS.seq_len, hidden)).astype(np.float32)
    lens = rng.integers(1, FLAGS.seq_len + 1, FLAGS.batch).astype(np.int32)
    lens[0] = FLAGS.seq_len
    print(f"BERT-base encoder ({layers} layers, hidden {hidden}, {heads} heads), {FLAGS.dtype} on {device}, "
          f"batch {FLAGS.batch}, seq_len {FLAGS.seq_len}, lengths {lens.tolist()}")
    if FLAGS.device == "cpu":
        print(f"CPU GEMM kernel: {fb.cpu_gemm_kernel()} (FASTBERT_CPU_ISA=avx2|avx512|amx caps it)")

    with tf.device("/CPU:0"):  # the reference in float64
        ref = fb.reference.bert_encoder(tf.constant(x.astype(FLAGS.dtype if FLAGS.dtype != "bfloat16" else "float32")
                                                    .astype(np.float64)), lens,
                                        {k: v.astype(np.float64) for k, v in weights.items()}, layers, heads).numpy()
    dtype = tf.as_dtype(FLAGS.dtype)
    with tf.device(device):
        xt = tf.cast(tf.constant(x), dtype)
        lt = tf.constant(lens)
        variables = {k: tf.Variable(tf.cast(v, dtype)) for k, v in weights.items()}

        def reference(a, b):
            return fb.reference.bert_encoder(a, b, variables, layers, heads)

        variants = {"TF (tf.function)": reference, "TF-XLA": reference}
        for rp in (False, True):
            variants[f"op (remove_padding={rp})"] = fb.BertEncoder.from_weights(
                weights, layers, heads, dtype=FLAGS.dtype, remove_padding=rp)
        outs = {}
        times = time_variants(variants, {name: (xt, lt) for name in variants}, 1, FLAGS.repeats,
                              compiled=("TF-XLA",), outputs=outs)
        print(f"\n{'variant':28s} {'max |diff|':>11s} {'rel err':>9s} {'ms/pass':>9s}")
        for name in variants:
            out = outs[name].astype(np.float64)
            diff = np.abs(out - ref).max()
            err = np.linalg.norm(out - ref) / np.linalg.norm(ref)
            print(f"{name:28s} {diff:11.3e} {err:9.2e} {statistics.median(times[name]):9.1f}", flush=True)
    print("\n(diffs against fb.reference in float64; padded rows are zero in every variant)")


if __name__ == "__main__":
    app.run(main)
