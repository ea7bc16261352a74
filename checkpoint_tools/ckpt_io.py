"""Reading name-based (Google-format) checkpoints and writing the tools' output checkpoints.

A tool's output checkpoint prefix DIR/NAME owns its directory DIR: the directory is written whole
and published by checkpoint_tools.publish (marker file, one rename, never over anything else),
holding NAME.index, NAME.data-*, a `checkpoint` state file naming NAME (relative, so the directory
itself can be given as --init_checkpoint), the marker, and copies of the bert_config.json /
vocab.txt the tool used.
"""
import glob
import os
import shutil

import numpy as np

from checkpoint_tools import publish
from checkpoint_tools.cli import DataError
from fastbert_tf.weights import open_checkpoint, read_tensor


def resolve(path):
    """A checkpoint prefix, or a directory whose `checkpoint` state file names one."""
    import tensorflow as tf
    if os.path.isdir(path):
        try:
            latest = tf.train.latest_checkpoint(path)
        except (tf.errors.OpError, ValueError, TypeError):
            latest = None
        if not latest:
            raise DataError(f"{path} is a directory without a readable `checkpoint` state file: give the "
                            "checkpoint prefix (e.g. .../model.ckpt)")
        return latest
    return path


def read(prefix):
    """(reader, {name: shape}, {name: tf.DType}) of a checkpoint prefix (or directory); DataError
    naming the prefix for a missing, truncated or foreign one."""
    prefix = resolve(prefix)
    if not os.path.exists(prefix + ".index"):
        raise DataError(f"checkpoint {prefix}: {prefix}.index does not exist (give the prefix, e.g. .../model.ckpt)")
    try:
        return open_checkpoint(prefix)
    except ValueError as e:
        raise DataError(str(e)) from None


def tensor(reader, prefix, name):
    """One variable's value; DataError naming the variable when the data file is truncated."""
    try:
        return read_tensor(reader, prefix, name)
    except ValueError as e:
        raise DataError(str(e)) from None


def files(prefix):
    """The files of a checkpoint prefix (index and data shards)."""
    return sorted(glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*"))


def checkpoint_bytes(prefix):
    return sum(os.path.getsize(f) for f in files(prefix))


def output(tool, prefix, inputs, overwrite, flag):
    """The publish.Output for an output prefix; ValueError naming the flag for an unusable one."""
    if not prefix:
        raise ValueError(f"{flag} is required")
    out_dir, base = os.path.split(prefix)
    if not base or base in (".", ".."):
        raise ValueError(f"{flag} {prefix} must end in a file name prefix, e.g. out/model_fp16/model.ckpt")
    return publish.Output(tool, out_dir or ".", inputs, overwrite, flag)


def write(values, out, base):
    """Writes {name: numpy array} as checkpoint `base` into the output's temporary directory,
    with a `checkpoint` state file naming it."""
    import tensorflow as tf
    variables = {n: tf.Variable(np.asarray(v), name=n) for n, v in values.items()}
    tf.compat.v1.train.Saver(var_list=variables).save(None, out.path(base), write_meta_graph=False,
                                                      write_state=False)
    write_state_file(out, base)


def write_state_file(out, base):
    with open(out.path("checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{base}"\nall_model_checkpoint_paths: "{base}"\n')


def copy_into(out, path, name):
    if path and os.path.isfile(path):
        shutil.copyfile(path, out.path(name))
