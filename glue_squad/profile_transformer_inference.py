"""TF encoder vs FastBertEncoder on a real checkpoint: median time per batch and the largest
difference between their outputs.

    python -m glue_squad.profile_transformer_inference --bert_config_file out/minilm/bert_config.json \\
        --init_checkpoint out/minilm/bert_model.ckpt --batch_size 8 --max_seq_length 128 --floatx float16

INT8: the TF baseline runs the float checkpoint (--init_checkpoint), the op the quantized one
(--int8_checkpoint, from checkpoint_tools/ckpt_quantization.py) with --int8_mode 1 or 2.
"""
from checkpoint_tools import cli  # first: quiets TensorFlow's start-up lines (unless --verbose)

import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from fastbert_tf import int8, modeling
from fastbert_tf.weights import ENCODER_SCOPE
from glue_squad.common import resolve_checkpoint

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags; defined only when run as a program, so importing defines none."""
    flags.DEFINE_string("bert_config_file", None, "bert_config.json of the model.")
    flags.DEFINE_string("init_checkpoint", None, "Google-format float checkpoint (the TF baseline; the op too "
                        "unless --int8_mode).")
    flags.DEFINE_string("int8_checkpoint", None, "With --int8_mode: the quantized checkpoint the op runs.")
    flags.DEFINE_integer("batch_size", 8, "Batch size.")
    flags.DEFINE_integer("max_seq_length", 128, "Padded sequence length.")
    flags.DEFINE_float("avg_seq_len_ratio", 1.0, "Real tokens per sequence, as a share of max_seq_length (mean).")
    flags.DEFINE_enum("floatx", "float32", ["float32", "float16", "bfloat16"], "Dtype.")
    flags.DEFINE_bool("remove_padding", False, "Op with padding removal.")
    flags.DEFINE_enum("device", "cpu", ["cpu", "gpu"], "Where to run.")
    flags.DEFINE_integer("num_iter", 20, "Timed calls (median reported).")
    flags.DEFINE_integer("int8_mode", 0, "INT8 mode for the op: 0, 1 or 2 (with --int8_checkpoint).")
    cli.define_verbose()


def main(argv):
    del argv
    for name in ("bert_config_file", "init_checkpoint"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    if FLAGS.int8_mode not in (0, 1, 2):
        raise app.UsageError(f"--int8_mode must be 0, 1 or 2, got {FLAGS.int8_mode}")
    if bool(FLAGS.int8_mode) != bool(FLAGS.int8_checkpoint):
        raise app.UsageError("--int8_mode 1/2 and --int8_checkpoint go together (the TF baseline runs "
                             "--init_checkpoint, the op the quantized --int8_checkpoint)")
    for name in ("init_checkpoint", "int8_checkpoint"):
        path = getattr(FLAGS, name)
        if path and not (tf.io.gfile.exists(path + ".index") or tf.io.gfile.isdir(path)):
            raise app.UsageError(f"--{name} {path} does not exist (give the prefix, e.g. .../model.ckpt)")
    if FLAGS.batch_size < 1 or FLAGS.max_seq_length < 1 or FLAGS.num_iter < 1:
        raise app.UsageError("--batch_size, --max_seq_length and --num_iter must be >= 1")
    if not 0 < FLAGS.avg_seq_len_ratio <= 1:
        raise app.UsageError("--avg_seq_len_ratio must be in (0, 1]")
    if FLAGS.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise app.UsageError("--device gpu: TensorFlow sees no GPU")
    config = modeling.BertConfig.from_json_file(FLAGS.bert_config_file)  # ValueError names the file: exit 1
    if FLAGS.max_seq_length > config.max_position_embeddings:
        raise app.UsageError(f"--max_seq_length above max_position_embeddings {config.max_position_embeddings}")
    ckpt = resolve_checkpoint(FLAGS.init_checkpoint)
    int8_ckpt = resolve_checkpoint(FLAGS.int8_checkpoint) if FLAGS.int8_mode else None
    rng = np.random.default_rng(0)
    b, s = FLAGS.batch_size, FLAGS.max_seq_length
    lens = np.clip(rng.normal(FLAGS.avg_seq_len_ratio * s, 0.1 * s, b).round(), 2, s).astype(np.int32)
    ids = rng.integers(1000, config.vocab_size, (b, s)).astype(np.int32)
    mask = (np.arange(s)[None, :] < lens[:, None]).astype(np.int32)
    with tf.device("/GPU:0" if FLAGS.device == "gpu" else "/CPU:0"):
        results = {}
        for name, fast in (("TF", False), ("op", True)):
            model = modeling.BertModel(config, False, floatx=FLAGS.floatx, use_fast_op=fast,
                                       remove_padding=FLAGS.remove_padding and fast,
                                       int8_mode=FLAGS.int8_mode if fast else 0)
            if fast and FLAGS.int8_mode:
                int8.load_into_model(int8_ckpt, model, FLAGS.int8_mode)
                variables = {n: v for n, v in model.variables_by_name.items() if not n.startswith(ENCODER_SCOPE)}
                modeling.load_checkpoint(int8_ckpt, variables, loaded_elsewhere=(ENCODER_SCOPE,))
            else:
                modeling.load_checkpoint(ckpt, model.variables_by_name)

            @tf.function
            def run(i, m, model=model):
                model(i, m)
                return model.get_sequence_output()

            out = run(ids, mask).numpy()
            times = []
            for _ in range(FLAGS.num_iter):
                start = time.perf_counter()
                run(ids, mask).numpy()
                times.append((time.perf_counter() - start) * 1e3)
            results[name] = (out.astype(np.float64), float(np.median(times)))
    diff = np.abs(results["TF"][0] - results["op"][0]).max()
    print(f"batch {b}, seq_len {s}, mean length {lens.mean():.1f}, {FLAGS.floatx}, remove_padding "
          f"{FLAGS.remove_padding}, int8_mode {FLAGS.int8_mode}, {FLAGS.device}")
    print(f"TF encoder: {results['TF'][1]:.2f} ms/batch; op: {results['op'][1]:.2f} ms/batch "
          f"({results['TF'][1] / results['op'][1]:.2f}x); max |diff| of sequence outputs {diff:.3e}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
