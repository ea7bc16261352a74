"""Reading and safely writing name-based (Google-format) checkpoints for the checkpoint tools."""
import os
import shutil
import tempfile

import numpy as np


def read(prefix):
    """(reader, {name: shape}, {name: tf.DType}); ValueError if prefix is not a checkpoint."""
    import tensorflow as tf
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
        raise ValueError(f"cannot read checkpoint {prefix}: {e}") from None
    return reader, reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()


def checkpoint_bytes(prefix):
    d, base = os.path.split(os.path.abspath(prefix))
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith(base + "."))


def check_output(input_prefix, output_prefix, overwrite):
    if not output_prefix:
        raise ValueError("no output checkpoint given")
    if os.path.abspath(input_prefix) == os.path.abspath(output_prefix):
        raise ValueError("the output checkpoint must differ from the input checkpoint")
    if os.path.exists(output_prefix + ".index") and not overwrite:
        raise ValueError(f"{output_prefix} exists (pass --overwrite to replace it)")


def write(values, output_prefix):
    """Writes {name: numpy array} as a checkpoint at output_prefix, via a temporary directory
    beside it, so that a failure leaves no partial checkpoint and the input is never touched."""
    import tensorflow as tf
    out_dir, base = os.path.split(os.path.abspath(output_prefix))
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".ckpt_tool.", dir=out_dir)
    try:
        variables = {n: tf.Variable(np.asarray(v), name=n) for n, v in values.items()}
        tf.compat.v1.train.Saver(var_list=variables).save(None, os.path.join(tmp, base), write_meta_graph=False,
                                                          write_state=False)
        for f in os.listdir(tmp):
            os.replace(os.path.join(tmp, f), os.path.join(out_dir, f))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output_prefix
