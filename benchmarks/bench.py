"""Side-by-side timing of the BERT encoder: plain TF, TF-XLA, the op, the op with remove_padding.

Each variant runs --passes encoder passes inside one tf.function, each pass's output feeding the next
(XLA: a compiled tf.while_loop; the others: unrolled, see make_loop), timed --repeats times with
the variants taking turns; the table shows the median ms per pass.

    python -m benchmarks.bench                                  # CPU: BERT-base fp32, B=8 S=128
    python -m benchmarks.bench --device gpu --dtype float16 --grid seed --json benchmarks/results/h200.json
"""
import json
import os
import platform
import statistics
import sys
import time

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLAGS = flags.FLAGS
flags.DEFINE_enum("device", "cpu", ["cpu", "gpu"], "Where to run.")
flags.DEFINE_enum("dtype", "float32", ["float32", "float16", "bfloat16"], "Activation and weight dtype.")
flags.DEFINE_list("batch_sizes", ["8"], "Batch sizes.")
flags.DEFINE_list("seq_lens", ["128"], "Padded sequence lengths.")
flags.DEFINE_enum("grid", None, ["seed"], "'seed': B in {1, 8, 32} x S in {32, 128, 384} (overrides the lists).")
flags.DEFINE_integer("num_layer", 12, "Encoder layers.")
flags.DEFINE_integer("head_num", 12, "Attention heads.")
flags.DEFINE_integer("size_per_head", 64, "Head size.")
flags.DEFINE_integer("inter_size", 3072, "Intermediate size.")
flags.DEFINE_enum("activation", "gelu_tanh", ["gelu_tanh", "gelu"], "Activation.")
flags.DEFINE_list("variants", ["tf", "xla", "op", "op_rp"], "Which of tf, xla, op, op_rp to time.")
flags.DEFINE_integer("passes", 0, "Encoder passes per timed call (0: 3 on CPU, 50 on GPU).")
flags.DEFINE_integer("repeats", 5, "Timed calls per variant; the median is reported.")
flags.DEFINE_string("json", None, "Write the results here as JSON.")
flags.DEFINE_integer("seed", 0, "Random seed for weights and inputs.")


def half_lengths(batch, seq_len):
    """Deterministic lengths spread over [1, S] with mean S/2 (all S/2 when B = 1)."""
    import numpy as np
    if batch == 1:
        return np.array([max(1, seq_len // 2)], np.int32)
    lens = np.round((np.arange(batch) + 0.5) / batch * seq_len).astype(np.int32)
    return np.clip(lens, 1, seq_len)


def build_variants(weights, dtype, names):
    import tensorflow as tf
    import fastbert_tf as fb
    n, nh = FLAGS.num_layer, FLAGS.head_num
    variables = {k: tf.Variable(tf.cast(v, dtype), trainable=False) for k, v in weights.items()}
    encoders = {}

    def ref(x, lens):
        return fb.reference.bert_encoder(x, lens, variables, n, nh, activation=FLAGS.activation)

    if "tf" in names:
        encoders["tf"] = ref
    if "xla" in names:
        encoders["xla"] = ref
    if "op" in names:
        encoders["op"] = fb.BertEncoder.from_weights(weights, n, nh, dtype=dtype.name, activation=FLAGS.activation)
    if "op_rp" in names:
        encoders["op_rp"] = fb.BertEncoder.from_weights(weights, n, nh, dtype=dtype.name, remove_padding=True,
                                                        activation=FLAGS.activation)
    return encoders


def main(argv):
    del argv
    import numpy as np
    from benchmarks.timing import time_variants
    import tensorflow as tf
    from fastbert_tf.encoder import as_dtype
    from fastbert_tf.weights import random_weights

    if FLAGS.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise app.UsageError("--device gpu: TensorFlow sees no GPU")
    if FLAGS.device == "cpu":
        tf.config.set_visible_devices([], "GPU")
    unknown = set(FLAGS.variants) - {"tf", "xla", "op", "op_rp"}
    if unknown:
        raise app.UsageError(f"--variants: unknown {sorted(unknown)}")
    if FLAGS.grid == "seed":
        grid = [(b, s) for b in (1, 8, 32) for s in (32, 128, 384)]
    else:
        grid = [(int(b), int(s)) for b in FLAGS.batch_sizes for s in FLAGS.seq_lens]
    passes = FLAGS.passes or (50 if FLAGS.device == "gpu" else 3)
    dtype = as_dtype(FLAGS.dtype)
    hidden = FLAGS.head_num * FLAGS.size_per_head
    rng = np.random.default_rng(FLAGS.seed)
    weights = random_weights(rng, FLAGS.num_layer, hidden, FLAGS.inter_size)
    device = "/GPU:0" if FLAGS.device == "gpu" else "/CPU:0"
    import fastbert_tf as fb
    cpu_kernel = fb.cpu_gemm_kernel() if FLAGS.device == "cpu" else None
    print(f"{device_name(FLAGS.device)}" + (f", CPU GEMM kernel: {cpu_kernel}" if cpu_kernel else ""), flush=True)
    results = []
    with tf.device(device):
        encoders = build_variants(weights, dtype, FLAGS.variants)
        for batch, seq_len in grid:
            x = tf.constant(rng.standard_normal((batch, seq_len, hidden)), dtype)
            with tf.device("/CPU:0"):  # lengths come from the host, as in serving
                full = tf.constant(np.full([batch], seq_len, np.int32))
                half = tf.constant(half_lengths(batch, seq_len))
            row = {"batch": batch, "seq_len": seq_len, "avg_len_rp": float(np.mean(half.numpy()))}
            inputs = {name: (x, half if name == "op_rp" else full) for name in FLAGS.variants}
            times = time_variants({name: encoders[name] for name in FLAGS.variants}, inputs, passes,
                                  FLAGS.repeats)
            for name in FLAGS.variants:
                row[name] = statistics.median(times[name])
                row[name + "_all"] = times[name]
            results.append(row)
            print(format_row(row), flush=True)
    print_table(results)
    if FLAGS.json:
        meta = {"device": device_name(FLAGS.device), "host": platform.node(), "dtype": FLAGS.dtype,
                "num_layer": FLAGS.num_layer, "hidden": hidden, "head_num": FLAGS.head_num,
                "inter_size": FLAGS.inter_size, "activation": FLAGS.activation, "passes": passes,
                "loop": "xla: compiled tf.while_loop; tf, op, op_rp: passes unrolled in one tf.function",
                "repeats": FLAGS.repeats, "cpu_gemm_kernel": cpu_kernel, "tensorflow": tf.__version__, "cpu_count": os.cpu_count(),
                "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json)), exist_ok=True)
        with open(FLAGS.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


def device_name(device):
    if device == "gpu":
        import tensorflow as tf
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return details.get("device_name", "GPU")
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), platform.processor())
    except OSError:
        model = platform.processor()
    return f"{model}, {os.cpu_count()} cores"


def format_row(row):
    cols = [f"B={row['batch']:<3d} S={row['seq_len']:<4d}"]
    for name in ("tf", "xla", "op", "op_rp"):
        if name in row:
            cols.append(f"{name} {row[name]:9.3f} ms")
    return "  ".join(cols)


def print_table(results):
    names = [n for n in ("tf", "xla", "op", "op_rp") if n in results[0]]
    base = [n for n in ("tf", "xla") if n in names]
    head = f"{'B':>4} {'S':>5} " + " ".join(f"{n + ' ms':>10}" for n in names)
    if base:
        head += " " + " ".join(f"{n + ' x':>9}" for n in names if n.startswith("op"))
    print("\nms per encoder pass (median); 'x' = speedup over the faster of " + "/".join(base) if base else "")
    print(head)
    for r in results:
        line = f"{r['batch']:>4} {r['seq_len']:>5} " + " ".join(f"{r[n]:>10.3f}" for n in names)
        if base:
            best = min(r[n] for n in base)
            line += " " + " ".join(f"{best / r[n]:>9.2f}" for n in names if n.startswith("op"))
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
