"""Side-by-side timing of the BERT encoder: plain TF, TF-XLA, the op, the op with remove_padding,
and the op's int8 modes (op_int8_1, op_int8_2, each also _rp: with remove_padding).

Two modes (--modes), each timing the variants in turns, --repeats times, median reported:
  passes    --passes encoder passes inside one tf.function, each pass's output feeding the next
            (XLA: a compiled tf.while_loop; the others: unrolled, see timing.make_loop); ms per pass
  per_call  a one-pass tf.function called --calls times back to back, as a serving loop does (the
            host enqueues a call while the device runs the last); ms per call
and the traffic (--lengths, benchmarks/lengths.py): one fixed length vector, or a new vector every
call (uniform, or drawn from a real dataset's token counts). Every variant sees the same vectors; the
padded variants compute every row and mask, op_rp computes the real tokens only. Before timing, the
op variants are warmed up (BertEncoder.warmup: every row bucket of B * S) as a server would, and
the cost of the first calls of a new shape is measured and reported (first_call_ms).

    python -m benchmarks.bench                                  # CPU: BERT-base fp32, B=8 S=128
    python -m benchmarks.bench --device gpu --dtype float16 --grid seed --variants xla,op,op_rp \\
        --lengths fixed,uniform,dataset:../shared/data/mrpc/train.tsv \\
        --vocab_file ../shared/models/minilm-l6-mrpc/vocab.txt --json benchmarks/results/h200.json
"""
import json
import os
import platform
import statistics
import subprocess
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
flags.DEFINE_list("variants", ["tf", "xla", "op", "op_rp"],
                  "Which of tf, xla, op, op_rp, op_int8_1, op_int8_1_rp, op_int8_2, op_int8_2_rp to time.")
flags.DEFINE_list("modes", None, "passes and/or per_call (default: passes on the CPU, both on the GPU).")
flags.DEFINE_list("lengths", ["fixed"], "Traffic: fixed, uniform and/or dataset:PATH (see benchmarks/lengths.py).")
flags.DEFINE_string("vocab_file", None, "The model's vocab.txt, for --lengths dataset:PATH.")
flags.DEFINE_string("lengths_task", "mrpc", "GLUE task of a dataset:PATH .tsv (cola, mnli, mrpc, xnli).")
flags.DEFINE_integer("passes", 0, "passes mode: encoder passes per timed call (0: 3 on CPU, 50 on GPU).")
flags.DEFINE_integer("calls", 0, "per_call mode: calls per timed repeat (0: 3 on CPU, 100 on GPU).")
flags.DEFINE_integer("repeats", 5, "Timed repeats per variant; the median is reported.")
flags.DEFINE_bool("warmup", True, "Warm the op variants up (BertEncoder.warmup) before timing.")
flags.DEFINE_string("json", None, "Write the results here as JSON.")
flags.DEFINE_integer("seed", 0, "Random seed for weights, inputs and lengths.")

VARIANTS = ("tf", "xla", "op", "op_rp", "op_int8_1", "op_int8_1_rp", "op_int8_2", "op_int8_2_rp")
MODES = ("passes", "per_call")


def build_variants(weights, dtype, names):
    import tensorflow as tf
    import fastbert_tf as fb
    n, nh = FLAGS.num_layer, FLAGS.head_num
    variables = {k: tf.Variable(tf.cast(v, dtype), trainable=False) for k, v in weights.items()}
    encoders = {}

    def ref(x, lens):
        return fb.reference.bert_encoder(x, lens, variables, n, nh, activation=FLAGS.activation)

    quantized = {}
    for name in names:
        rp = name.endswith("_rp")
        if name in ("tf", "xla"):
            encoders[name] = ref
        elif name.startswith("op_int8_"):
            mode = int(name.split("_")[2])
            if mode not in quantized:
                quantized[mode] = quantize_for_timing(weights, mode)
            qw, quant = quantized[mode]
            encoders[name] = fb.BertEncoder.from_int8_weights(qw, quant, mode, n, nh, dtype=dtype.name, remove_padding=rp,
                                                              activation=FLAGS.activation)
        else:
            encoders[name] = fb.BertEncoder.from_weights(weights, n, nh, dtype=dtype.name, remove_padding=rp,
                                                         activation=FLAGS.activation)
    return encoders


def quantize_for_timing(weights, mode):
    """The random weights quantized, ranges calibrated (max) on one random batch of 4 x 64 on the CPU:
    realistic scales, so that no value saturates everywhere; the timing does not depend on them."""
    import numpy as np
    import tensorflow as tf
    from checkpoint_tools.quantization import quantize_weights
    rng = np.random.default_rng(FLAGS.seed + 1)
    x = rng.standard_normal((4, 64, FLAGS.head_num * FLAGS.size_per_head)).astype(np.float32)
    with tf.device("/CPU:0"):
        return quantize_weights(weights, x, np.array([64, 50, 33, 17], np.int32), FLAGS.num_layer, FLAGS.head_num,
                                mode, activation=FLAGS.activation)


def first_call_ms(encoder, x, lens):
    """ms of the first, second and third call of a shape the runner has not seen (each waited for):
    direct launches (+ GEMM plans for new row counts), the CUDA-graph capture, a replay. Tracing is
    not counted: encoder.serve (unknown dims) is traced on a tiny shape first."""
    import tensorflow as tf
    from benchmarks.timing import wait_for
    with tf.device("/CPU:0"):
        tiny_lens = tf.constant([3], tf.int32)
    wait_for(encoder.serve(tf.cast(tf.ones([1, 3, x.shape[-1]]), x.dtype), tiny_lens))
    out = []
    for _ in range(3):
        start = time.perf_counter()
        wait_for(encoder.serve(x, lens))
        out.append((time.perf_counter() - start) * 1e3)
    return out


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf
    from benchmarks.lengths import Lengths, half_lengths
    from benchmarks.timing import make_loop, time_loops
    from fastbert_tf.encoder import as_dtype
    from fastbert_tf.weights import random_weights
    import fastbert_tf as fb

    if FLAGS.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise app.UsageError("--device gpu: TensorFlow sees no GPU")
    if FLAGS.device == "cpu":
        tf.config.set_visible_devices([], "GPU")
    unknown = set(FLAGS.variants) - set(VARIANTS)
    if unknown:
        raise app.UsageError(f"--variants: unknown {sorted(unknown)}; expected some of {list(VARIANTS)}")
    modes = FLAGS.modes or (["passes"] if FLAGS.device == "cpu" else list(MODES))
    if set(modes) - set(MODES):
        raise app.UsageError(f"--modes: unknown {sorted(set(modes) - set(MODES))}; expected some of {list(MODES)}")
    try:
        sources = [Lengths(spec, FLAGS.vocab_file, FLAGS.lengths_task) for spec in FLAGS.lengths]
    except ValueError as e:
        raise app.UsageError(str(e))
    if FLAGS.grid == "seed":
        grid = [(b, s) for b in (1, 8, 32) for s in (32, 128, 384)]
    else:
        grid = [(int(b), int(s)) for b in FLAGS.batch_sizes for s in FLAGS.seq_lens]
    gpu = FLAGS.device == "gpu"
    passes = FLAGS.passes or (50 if gpu else 3)
    calls = FLAGS.calls or (100 if gpu else 3)
    dtype = as_dtype(FLAGS.dtype)
    hidden = FLAGS.head_num * FLAGS.size_per_head
    rng = np.random.default_rng(FLAGS.seed)
    weights = random_weights(rng, FLAGS.num_layer, hidden, FLAGS.inter_size)
    device = "/GPU:0" if gpu else "/CPU:0"
    cpu_kernel = fb.cpu_gemm_kernel() if not gpu else None
    print(f"{device_name(FLAGS.device)}" + (f", CPU GEMM kernels: {cpu_kernel}, int8 {fb.cpu_int8_gemm_kernel()}"
                                            if cpu_kernel else ""), flush=True)
    results, first_calls = [], []
    ops_variants = [n for n in FLAGS.variants if n.startswith("op")]
    with tf.device(device):
        encoders = build_variants(weights, dtype, FLAGS.variants)
        for batch, seq_len in grid:
            x = tf.constant(rng.standard_normal((batch, seq_len, hidden)), dtype)
            if gpu:
                with tf.device("/CPU:0"):  # lengths come from the host, as in serving
                    half = tf.constant(half_lengths(batch, seq_len))
                first = {"batch": batch, "seq_len": seq_len}
                for name in ops_variants:
                    first[name] = first_call_ms(encoders[name], x, half)
                first_calls.append(first)
                print(f"B={batch} S={seq_len} first calls (ms: new shape, capture, replay): " +
                      ", ".join(f"{n} {' / '.join(f'{v:.2f}' for v in first[n])}" for n in ops_variants), flush=True)
            if FLAGS.warmup:
                for name in ops_variants:
                    encoders[name].warmup([batch], [seq_len])
            for mode in modes:
                per = passes if mode == "passes" else 1
                n_calls = 1 if mode == "passes" else calls
                loops = {name: make_loop(encoders[name], per, jit=name == "xla") for name in FLAGS.variants}
                for source in sources:
                    vectors = source.vectors(batch, seq_len, n_calls * FLAGS.repeats + 1, rng)
                    with tf.device("/CPU:0"):
                        lens = [tf.constant(v) for v in vectors]
                    for loop in loops.values():  # trace, compile; the first vector is the warm-up's
                        loop(x, lens[0]).numpy()
                    inputs = {name: (x, lens[1:]) for name in FLAGS.variants}
                    times = time_loops(loops, inputs, FLAGS.repeats, calls=n_calls, per_call_units=per)
                    row = {"batch": batch, "seq_len": seq_len, "mode": mode, "lengths": source.name,
                           "avg_len": float(np.mean(vectors[1:]))}
                    for name in FLAGS.variants:
                        row[name] = statistics.median(times[name])
                        row[name + "_all"] = times[name]
                    results.append(row)
                    print(format_row(row), flush=True)
            write_json(results, first_calls, modes, passes, calls, sources, cpu_kernel, hidden)
    print_table(results)
    if gpu and ops_variants:
        print("GPU caches:", fb.gpu_cache_stats())


def write_json(results, first_calls, modes, passes, calls, sources, cpu_kernel, hidden):
    """The results so far (written after every grid point: a run cut short keeps what it measured)."""
    import tensorflow as tf
    import fastbert_tf as fb
    gpu = FLAGS.device == "gpu"
    if FLAGS.json:
        meta = {"device": device_name(FLAGS.device), "host": platform.node(), "dtype": FLAGS.dtype,
                "num_layer": FLAGS.num_layer, "hidden": hidden, "head_num": FLAGS.head_num,
                "inter_size": FLAGS.inter_size, "activation": FLAGS.activation, "modes": modes,
                "passes": passes, "calls": calls, "lengths": {s.name: s.histogram() for s in sources},
                "loop": "passes: xla a compiled tf.while_loop, tf/op/op_rp unrolled in one tf.function; "
                        "per_call: a one-pass tf.function called back to back",
                "repeats": FLAGS.repeats, "warmup": FLAGS.warmup, "cpu_gemm_kernel": cpu_kernel,
                "cpu_int8_gemm_kernel": fb.cpu_int8_gemm_kernel() if not gpu else None,
                # float32 GEMMs of TF, XLA and the op on a GPU: TF32 while this is on (TF's default)
                "tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
                "tensorflow": tf.__version__, "build": {k: str(v) for k, v in tf.sysconfig.get_build_info().items()
                                                        if k in ("cuda_version", "cudnn_version")},
                "driver": gpu_driver() if gpu else None, "cpu_count": os.cpu_count(),
                "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                "gpu_caches": fb.gpu_cache_stats() if gpu else None}
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json)), exist_ok=True)
        with open(FLAGS.json, "w") as f:
            json.dump({"meta": meta, "results": results, "first_call_ms": first_calls}, f, indent=1)


def gpu_driver():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


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
    cols = [f"B={row['batch']:<3d} S={row['seq_len']:<4d} {row['mode']:8s} {row['lengths']:14s}"]
    for name in VARIANTS:
        if name in row:
            cols.append(f"{name} {row[name]:9.3f} ms")
    return "  ".join(cols)


def print_table(results):
    names = [n for n in VARIANTS if n in results[0]]
    base = [n for n in ("tf", "xla") if n in names]
    unit = {"passes": "ms per pass", "per_call": "ms per call"}
    head = f"{'B':>4} {'S':>5} {'mode':>8} {'lengths':>14} {'avg len':>7} " + " ".join(f"{n + ' ms':>10}" for n in names)
    if base:
        head += " " + " ".join(f"{n + ' x':>9}" for n in names if n.startswith("op"))
    print("\nmedians (" + ", ".join(f"{m}: {u}" for m, u in unit.items()) + ")" +
          ("; 'x' = speedup over the faster of " + "/".join(base) if base else ""))
    print(head)
    for r in results:
        line = (f"{r['batch']:>4} {r['seq_len']:>5} {r['mode']:>8} {r['lengths']:>14} {r['avg_len']:>7.1f} " +
                " ".join(f"{r[n]:>10.3f}" for n in names))
        if base:
            best = min(r[n] for n in base)
            line += " " + " ".join(f"{best / r[n]:>9.2f}" for n in names if n.startswith("op"))
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
