"""FP32 -> FP16 (or bfloat16) checkpoint conversion.

    python -m checkpoint_tools.ckpt_type_convert --init_checkpoint out/mrpc/model.ckpt-345 \\
        --fp16_checkpoint out/mrpc_fp16/model.ckpt

Casts every float32 variable to the target type, except what must stay float32: quantization
ranges and scales (names with quant, _amax, _scale) and optimizer state. Optimizer slots (adam_m,
adam_v, .../Adam...) are dropped unless --keep_optimizer_slots; integer variables (global_step)
are copied as they are. Variable names do not change. The output is written beside its final
place and moved there; the input is only read, and an output equal to the input, or one that
exists (without --overwrite), is refused. Prints what was converted, kept and dropped, and the
size before and after.
"""
import collections

import numpy as np
from absl import app, flags

from checkpoint_tools import ckpt_io
from fastbert_tf.weights import is_training_state

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags; defined only when run as a program, so importing defines none."""
    flags.DEFINE_string("init_checkpoint", None, "Input checkpoint prefix.")
    flags.DEFINE_string("fp16_checkpoint", None, "Output checkpoint prefix.")
    flags.DEFINE_enum("to", "float16", ["float16", "bfloat16"], "Target type.")
    flags.DEFINE_bool("keep_optimizer_slots", False, "Keep optimizer slots (as float32).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing output checkpoint.")


def keeps_float32(name):
    leaf = name.split("/")[-1]
    return "quant" in name or leaf.endswith("_amax") or leaf.endswith("_scale")


def convert(init_checkpoint, output, to="float16", keep_optimizer_slots=False, overwrite=False):
    import tensorflow as tf
    ckpt_io.check_output(init_checkpoint, output, overwrite)
    reader, shapes, dtypes = ckpt_io.read(init_checkpoint)
    target = tf.as_dtype(to).as_numpy_dtype
    values, counts = {}, collections.Counter()
    for name in sorted(shapes):
        if is_training_state(name) and name != "global_step":
            if not keep_optimizer_slots:
                counts["dropped"] += 1
                continue
            values[name] = reader.get_tensor(name)
            counts["kept"] += 1
            continue
        value = reader.get_tensor(name)
        if dtypes[name] == tf.float32 and not keeps_float32(name):
            values[name] = np.asarray(value).astype(target)
            counts["converted"] += 1
        else:
            values[name] = value
            counts["kept"] += 1
    ckpt_io.write(values, output)
    return {"converted": counts["converted"], "kept": counts["kept"], "dropped": counts["dropped"],
            "bytes_before": ckpt_io.checkpoint_bytes(init_checkpoint), "bytes_after": ckpt_io.checkpoint_bytes(output)}


def main(argv):
    del argv
    if not FLAGS.init_checkpoint or not FLAGS.fp16_checkpoint:
        raise app.UsageError("--init_checkpoint and --fp16_checkpoint are required")
    try:
        s = convert(FLAGS.init_checkpoint, FLAGS.fp16_checkpoint, FLAGS.to, FLAGS.keep_optimizer_slots, FLAGS.overwrite)
    except ValueError as e:
        raise app.UsageError(str(e))
    print(f"{FLAGS.fp16_checkpoint}: {s['converted']} variables converted to {FLAGS.to}, {s['kept']} kept, "
          f"{s['dropped']} optimizer slots dropped; {s['bytes_before'] / 2**20:.1f} MiB -> {s['bytes_after'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    define_flags()
    app.run(main)
