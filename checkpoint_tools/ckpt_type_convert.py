"""FP32 -> FP16 (or bfloat16) checkpoint conversion.

    python -m checkpoint_tools.ckpt_type_convert --init_checkpoint out/minilm/bert_model.ckpt \\
        --fp16_checkpoint out/minilm_fp16/model.ckpt

Casts every float32 variable to the target type, except what must stay float32: quantization
ranges and scales (names with quant, _amax, _scale) and optimizer state. Optimizer slots (adam_m,
adam_v, .../Adam...) are dropped unless --keep_optimizer_slots; integer variables (global_step)
are copied as they are. Variable names do not change.

The output prefix's directory (out/minilm_fp16 above) is the tool's own: it is written whole in a
temporary directory beside it and renamed into place (checkpoint_tools/publish.py), with a
`checkpoint` state file and copies of the bert_config.json and vocab.txt found beside the input.
The input is only read. Refused: an output directory that is, contains or lies inside an input
(symlinks and hard links resolved), or that exists and is not this tool's earlier output;
--overwrite replaces only the latter. Prints what was converted, kept and dropped, and the size
before and after.
"""
import collections
import os

import numpy as np
from absl import app, flags

from checkpoint_tools import cli, ckpt_io  # cli before anything imports TensorFlow (quiets its start-up)
from fastbert_tf.weights import is_training_state

FLAGS = flags.FLAGS
TOOL = "ckpt_type_convert"


def define_flags():
    """Command-line flags; defined only when run as a program, so importing defines none."""
    flags.DEFINE_string("init_checkpoint", None, "Input checkpoint prefix (or a directory with a checkpoint file).")
    flags.DEFINE_string("fp16_checkpoint", None, "Output checkpoint prefix, in a directory of its own.")
    flags.DEFINE_enum("to", "float16", ["float16", "bfloat16"], "Target type.")
    flags.DEFINE_bool("keep_optimizer_slots", False, "Keep optimizer slots (as float32).")
    flags.DEFINE_bool("overwrite", False, "Replace this tool's own earlier output directory.")
    cli.define_verbose()


def keeps_float32(name):
    leaf = name.split("/")[-1]
    return "quant" in name or leaf.endswith("_amax") or leaf.endswith("_scale")


def convert(init_checkpoint, output, to="float16", keep_optimizer_slots=False, overwrite=False):
    """Writes the converted checkpoint; ValueError for an unusable output path (checked before
    anything is read), DataError for an unreadable input."""
    import tensorflow as tf
    prefix = ckpt_io.resolve(init_checkpoint)
    beside = [os.path.join(os.path.dirname(prefix), n) for n in ("bert_config.json", "vocab.txt")]
    inputs = ckpt_io.files(prefix) + [p for p in beside if os.path.isfile(p)]
    out = ckpt_io.output(TOOL, output, inputs, overwrite, "--fp16_checkpoint")
    reader, shapes, dtypes = ckpt_io.read(prefix)
    target = tf.as_dtype(to).as_numpy_dtype
    values, counts = {}, collections.Counter()
    for name in sorted(shapes):
        if is_training_state(name) and name != "global_step" and not keep_optimizer_slots:
            counts["dropped"] += 1
            continue
        value = ckpt_io.tensor(reader, prefix, name)
        if dtypes[name] == tf.float32 and not keeps_float32(name) and not is_training_state(name):
            values[name] = np.asarray(value).astype(target)
            counts["converted"] += 1
        else:
            values[name] = value
            counts["kept"] += 1
    base = os.path.basename(output)
    with out:
        ckpt_io.write(values, out, base)
        for path in beside:
            ckpt_io.copy_into(out, path, os.path.basename(path))
        published = out.publish(inputs)
    written = os.path.join(published, base)
    return {"converted": counts["converted"], "kept": counts["kept"], "dropped": counts["dropped"],
            "bytes_before": ckpt_io.checkpoint_bytes(prefix), "bytes_after": ckpt_io.checkpoint_bytes(written),
            "prefix": written}


def main(argv):
    del argv
    for name in ("init_checkpoint", "fp16_checkpoint"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    if not os.path.exists(FLAGS.init_checkpoint) and not os.path.exists(FLAGS.init_checkpoint + ".index"):
        raise app.UsageError(f"--init_checkpoint {FLAGS.init_checkpoint}: neither a checkpoint prefix (no .index "
                             "file) nor a directory")
    try:
        s = convert(FLAGS.init_checkpoint, FLAGS.fp16_checkpoint, FLAGS.to, FLAGS.keep_optimizer_slots, FLAGS.overwrite)
    except cli.DataError:
        raise
    except ValueError as e:  # the output path
        raise app.UsageError(str(e))
    print(f"{s['prefix']}: {s['converted']} variables converted to {FLAGS.to}, {s['kept']} kept, "
          f"{s['dropped']} optimizer slots dropped; {s['bytes_before'] / 2**20:.1f} MiB -> {s['bytes_after'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
