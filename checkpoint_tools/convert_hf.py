"""Hugging Face BERT -> Google BERT checkpoint, bert_config.json and vocab.txt.

    python -m checkpoint_tools.convert_hf --hf_dir ../shared/models/minilm-l6-mrpc --output_dir out/minilm

Reads model.safetensors or pytorch_model.bin (a torch zip archive, read without torch) and
config.json; writes, into output_dir (made whole in a temporary directory beside it and renamed
into place, checkpoint_tools/publish.py):
  bert_model.ckpt.*   Google's variable names: bert/embeddings/..., bert/encoder/layer_N/...,
                      bert/pooler/..., and the heads when present: output_weights/output_bias
                      (classifier, [num_labels, hidden]) and cls/squad/output_weights|bias (QA).
  bert_config.json    Google's fields plus layer_norm_eps. hidden_act is written explicitly:
                      Hugging Face's "gelu" is the erf form and becomes "gelu_erf"; "gelu_new" /
                      "gelu_pytorch_tanh" (tanh form, Google's "gelu") become "gelu_tanh".
  vocab.txt           copied.
  checkpoint          the state file naming bert_model.ckpt (so output_dir works as a checkpoint path).
  fastbert_output.json  the marker that makes output_dir this tool's (for --overwrite).
The input directory is only read. Refused: an output_dir that is, contains or lies inside hf_dir
(symlinks resolved), or that exists and is not this tool's earlier output; --overwrite replaces
only the latter.
"""
import collections
import json
import os
import pickle
import re
import shutil
import zipfile

import numpy as np
from absl import app, flags

from checkpoint_tools import cli, ckpt_io, publish  # cli before anything imports TensorFlow
from checkpoint_tools.cli import DataError
from fastbert_tf.weights import ENCODER_SCOPE, check_layer_count

FLAGS = flags.FLAGS
TOOL = "convert_hf"
CKPT = "bert_model.ckpt"


def define_flags():
    """Command-line flags; defined only when run as a program, so importing defines none."""
    flags.DEFINE_string("hf_dir", None, "Directory with config.json, vocab.txt and model.safetensors or pytorch_model.bin.")
    flags.DEFINE_string("output_dir", None, "Directory to create.")
    flags.DEFINE_bool("overwrite", False, "Replace output_dir if it is this tool's own earlier output.")
    cli.define_verbose()


HF_ACTIVATIONS = {"gelu": "gelu_erf", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "gelu_fast": "gelu_tanh"}

_LAYER_PARTS = [
    ("attention.self.query", "attention/self/query"),
    ("attention.self.key", "attention/self/key"),
    ("attention.self.value", "attention/self/value"),
    ("attention.output.dense", "attention/output/dense"),
    ("attention.output.LayerNorm", "attention/output/LayerNorm"),
    ("intermediate.dense", "intermediate/dense"),
    ("output.dense", "output/dense"),
    ("output.LayerNorm", "output/LayerNorm"),
]
_FIXED = {
    "embeddings.word_embeddings.weight": "bert/embeddings/word_embeddings",
    "embeddings.position_embeddings.weight": "bert/embeddings/position_embeddings",
    "embeddings.token_type_embeddings.weight": "bert/embeddings/token_type_embeddings",
    "embeddings.LayerNorm": "bert/embeddings/LayerNorm",
    "pooler.dense": "bert/pooler/dense",
}
_HEADS = {
    "classifier.weight": "output_weights", "classifier.bias": "output_bias",
    "qa_outputs.weight": "cls/squad/output_weights", "qa_outputs.bias": "cls/squad/output_bias",
    "cls.predictions.transform.dense.weight": "cls/predictions/transform/dense/kernel",
    "cls.predictions.transform.dense.bias": "cls/predictions/transform/dense/bias",
    "cls.predictions.transform.LayerNorm.weight": "cls/predictions/transform/LayerNorm/gamma",
    "cls.predictions.transform.LayerNorm.bias": "cls/predictions/transform/LayerNorm/beta",
    "cls.predictions.bias": "cls/predictions/output_bias",
    "cls.seq_relationship.weight": "cls/seq_relationship/output_weights",
    "cls.seq_relationship.bias": "cls/seq_relationship/output_bias",
}
# Tensors Google's checkpoints have no counterpart for (buffers, tied decoder weights).
_SKIP = re.compile(r"(position_ids|cls\.predictions\.decoder\.(weight|bias))$")


def google_name(hf_name):
    """(Google name, transpose?) for a Hugging Face parameter name, or None to skip it."""
    if _SKIP.search(hf_name):
        return None
    if hf_name in _HEADS:  # heads keep HF's [out, in] except the MLM transform's Linear
        return _HEADS[hf_name], hf_name == "cls.predictions.transform.dense.weight"
    name = hf_name[len("bert."):] if hf_name.startswith("bert.") else hf_name
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))
    if name in _FIXED:
        return _FIXED[name], False
    layer = re.match(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", name)
    other = re.match(r"^(embeddings\.LayerNorm|pooler\.dense)\.(weight|bias)$", name)
    if layer and layer.group(2) in dict(_LAYER_PARTS):
        target, leaf = f"{ENCODER_SCOPE}layer_{layer.group(1)}/{dict(_LAYER_PARTS)[layer.group(2)]}", layer.group(3)
    elif other:
        target, leaf = _FIXED[other.group(1)], other.group(2)
    else:
        raise ValueError(f"unexpected parameter '{hf_name}': not part of a BERT encoder, pooler or known head")
    if target.endswith("LayerNorm"):
        return f"{target}/{'gamma' if leaf == 'weight' else 'beta'}", False
    return f"{target}/{'kernel' if leaf == 'weight' else 'bias'}", leaf == "weight"  # Linear is [out, in]


# ---------------------------------------------------------------- pytorch_model.bin without torch

class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype


def _numpy_dtype(storage_name):
    import tensorflow as tf
    table = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
             "BFloat16Storage": tf.bfloat16.as_numpy_dtype, "LongStorage": np.int64, "IntStorage": np.int32,
             "ByteStorage": np.uint8, "BoolStorage": np.bool_}
    if storage_name not in table:
        raise ValueError(f"pytorch_model.bin: unsupported storage {storage_name}")
    return table[storage_name]


def _rebuild_tensor(storage, offset, size, stride, *unused):
    data, dtype = storage
    itemsize = np.dtype(dtype).itemsize
    array = np.frombuffer(data, dtype=dtype)
    if not size:
        return array[offset].copy()
    return np.lib.stride_tricks.as_strided(array[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride)).copy()


class _TorchUnpickler(pickle.Unpickler):
    """Reads a torch zip checkpoint's state dict as numpy arrays, allowing only tensor classes."""

    def __init__(self, f, archive, prefix):
        super().__init__(f)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *unused: data
        if module == "torch" and name.endswith("Storage"):
            return _Storage(_numpy_dtype(name))
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"pytorch_model.bin: refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, storage, key = pid[0], pid[1], pid[2]
        if kind != "storage" or not isinstance(storage, _Storage):
            raise pickle.UnpicklingError(f"pytorch_model.bin: unexpected persistent id {pid!r}")
        return self.archive.read(f"{self.prefix}/data/{key}"), storage.dtype


def read_torch_bin(path):
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a torch zip archive (saved by torch < 1.6?); re-save it or use safetensors")
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if not pkl:
            raise ValueError(f"{path}: no data.pkl inside")
        prefix = pkl[0][:-len("/data.pkl")]
        with archive.open(pkl[0]) as f:
            state = _TorchUnpickler(f, archive, prefix).load()
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return dict(state)


def read_hf_weights(hf_dir):
    st = os.path.join(hf_dir, "model.safetensors")
    bin_path = os.path.join(hf_dir, "pytorch_model.bin")
    if os.path.exists(st):
        from safetensors.numpy import load_file
        return load_file(st)
    if os.path.exists(bin_path):
        return read_torch_bin(bin_path)
    raise ValueError(f"{hf_dir} has neither model.safetensors nor pytorch_model.bin")


# ---------------------------------------------------------------- conversion

def google_config(hf):
    if hf.get("model_type", "bert") != "bert":
        raise ValueError(f"config.json: model_type {hf.get('model_type')!r} is not 'bert'")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("config.json: only absolute position embeddings are supported")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise ValueError("config.json: decoder/cross-attention BERTs are not supported")
    act = hf.get("hidden_act", "gelu")
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"config.json: hidden_act {act!r} is not supported (expected one of {sorted(HF_ACTIVATIONS)})")
    out = {k: hf[k] for k in ("attention_probs_dropout_prob", "hidden_dropout_prob", "hidden_size",
                              "initializer_range", "intermediate_size", "max_position_embeddings",
                              "num_attention_heads", "num_hidden_layers", "type_vocab_size", "vocab_size")
           if k in hf}
    missing = {"hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size"} - set(out)
    if missing:
        raise ValueError(f"config.json lacks {sorted(missing)}")
    out["hidden_act"] = HF_ACTIVATIONS[act]
    out["layer_norm_eps"] = hf.get("layer_norm_eps", 1e-12)
    if hf.get("num_labels") or hf.get("id2label"):
        out["num_labels"] = hf.get("num_labels", len(hf.get("id2label", {})))
    out["hf_hidden_act"] = act  # provenance
    return out


def convert_weights(hf_weights):
    out = {}
    for name, value in hf_weights.items():
        mapped = google_name(name)
        if mapped is None:
            continue
        target, transpose = mapped
        value = np.asarray(value)
        out[target] = np.ascontiguousarray(value.T if transpose else value).astype(np.float32)
    return out


def convert(hf_dir, output_dir, overwrite=False):
    """Converts; ValueError for unusable paths (checked before anything is read), DataError for
    input that does not convert (its file named)."""
    if not os.path.isdir(hf_dir):
        raise ValueError(f"--hf_dir {hf_dir} is not a directory")
    out = publish.Output(TOOL, output_dir, [hf_dir], overwrite, "--output_dir")
    config_path = os.path.join(hf_dir, "config.json")
    vocab_path = os.path.join(hf_dir, "vocab.txt")
    for path in (config_path, vocab_path):
        if not os.path.isfile(path):
            raise ValueError(f"--hf_dir {hf_dir}: {path} does not exist")
    try:
        with open(config_path) as f:
            config = google_config(json.load(f))
    except json.JSONDecodeError as e:
        raise DataError(f"{config_path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except ValueError as e:
        raise DataError(str(e)) from None
    try:
        weights = convert_weights(read_hf_weights(hf_dir))
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, KeyError) as e:
        raise DataError(f"{hf_dir}: the weights cannot be read ({e})") from None
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    for layer in range(layers):
        name = f"{ENCODER_SCOPE}layer_{layer}/attention/self/query/kernel"
        if name not in weights:
            raise DataError(f"{hf_dir}: the weights lack '{name}' for config.json's num_hidden_layers={layers}")
        if weights[name].shape != (h, h):
            raise DataError(f"{hf_dir}: '{name}' has shape {weights[name].shape}, config.json says hidden_size {h}")
    try:
        check_layer_count(weights, layers, f"{hf_dir} (its weights)")
    except ValueError as e:
        raise DataError(str(e)) from None
    with out:
        write_checkpoint(weights, out)
        with open(out.path("bert_config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
        shutil.copyfile(vocab_path, out.path("vocab.txt"))
        out.publish([hf_dir])
    heads = [n for n in ("output_weights", "cls/squad/output_weights") if n in weights]
    return {"variables": len(weights), "layers": layers, "hidden_act": config["hidden_act"], "heads": heads}


def write_checkpoint(weights, out):
    import tensorflow as tf
    variables = {name: tf.Variable(value, name=name) for name, value in weights.items()}
    tf.compat.v1.train.Saver(var_list=variables).save(None, out.path(CKPT), write_meta_graph=False, write_state=False)
    ckpt_io.write_state_file(out, CKPT)


def main(argv):
    del argv
    if not FLAGS.hf_dir or not FLAGS.output_dir:
        raise app.UsageError("--hf_dir and --output_dir are required")
    try:
        summary = convert(FLAGS.hf_dir, FLAGS.output_dir, FLAGS.overwrite)
    except DataError:
        raise
    except ValueError as e:  # the paths
        raise app.UsageError(str(e))
    print(f"wrote {FLAGS.output_dir}: {summary['variables']} variables, {summary['layers']} layers, "
          f"hidden_act {summary['hidden_act']}, heads {summary['heads'] or 'none'}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
