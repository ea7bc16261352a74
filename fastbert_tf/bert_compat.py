"""Google BERT's modules (the bert-tensorflow package) under TensorFlow 2.21.

    from fastbert_tf import bert_compat
    tokenization = bert_compat.load("tokenization")
    run_classifier = bert_compat.load("run_classifier")   # processors, convert_examples_to_features
    run_squad = bert_compat.load("run_squad")             # read_squad_examples, write_predictions

Google's code does not import on TF 2.21: it needs `tensorflow.contrib.layers`, `tf.flags` and Keras-2
`tf.layers.dense`, and defines its command-line flags in absl's global FLAGS, where they would clash
with our scripts' flags. `load` compiles each module from bert-tensorflow's own source with three
substitutions in the module's namespace only:

- `tf` is tf.compat.v1 except `tf.flags` (a private absl FlagValues per module, parsed with the
  defaults: set values with `module.FLAGS.name = value`) and `tf.layers.dense` (a get_variable-based
  dense that keeps Google's variable names `<name>/kernel`, `<name>/bias`);
- `from absl import flags` gives the same private flags;
- `tensorflow.contrib.layers` is a stand-in whose `layer_norm` is contrib's (variables
  `LayerNorm/gamma`, `LayerNorm/beta`, epsilon 1e-12 as Google's modeling.py uses it).
- `from bert import X` resolves to the loaded (shimmed) X.

Nothing is installed into `sys.modules` under TensorFlow's or bert's names, and TensorFlow's own
modules are not changed: the loaded modules are `fastbert_tf.bert_compat.<name>`.
"""
import csv
import importlib.util
import os
import re
import sys
import threading
import types

import tensorflow as tf
from absl import flags as absl_flags

_MODULES = ("tokenization", "modeling", "optimization", "run_classifier", "run_squad")
_loaded = {}
_lock = threading.RLock()


def _bert_dir():
    spec = importlib.util.find_spec("bert")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("bert-tensorflow is not installed (pip install bert-tensorflow==1.0.4)")
    return list(spec.submodule_search_locations)[0]


class _PrivateFlags(types.ModuleType):
    """absl.flags' DEFINE_* API bound to one FlagValues of the module's own."""

    def __init__(self, owner):
        super().__init__(f"{owner}.flags")
        self.FLAGS = absl_flags.FlagValues()
        for name in dir(absl_flags):
            if name.startswith("DEFINE"):
                setattr(self, name, self._bind(getattr(absl_flags, name)))

    def _bind(self, define):
        def bound(*args, **kwargs):
            kwargs.setdefault("flag_values", self.FLAGS)
            return define(*args, **kwargs)
        return bound

    def __getattr__(self, name):  # flags.mark_flag_as_required etc.
        return getattr(absl_flags, name)


def _dense(inputs, units, activation=None, name=None, kernel_initializer=None, use_bias=True, **unused):
    """tf.layers.dense with Google's variable names, built on tf.compat.v1.get_variable."""
    import tensorflow as tf
    v1 = tf.compat.v1
    with v1.variable_scope(name, default_name="dense"):
        width = inputs.shape[-1]
        kernel = v1.get_variable("kernel", [width, units], dtype=inputs.dtype, initializer=kernel_initializer)
        outputs = tf.tensordot(inputs, kernel, [[inputs.shape.rank - 1], [0]])
        if use_bias:
            bias = v1.get_variable("bias", [units], dtype=inputs.dtype, initializer=v1.zeros_initializer())
            outputs = outputs + bias
        return activation(outputs) if activation is not None else outputs


def _layer_norm(inputs, begin_norm_axis=-1, begin_params_axis=-1, scope=None, **unused):
    """contrib.layers.layer_norm as Google's modeling.py calls it (last axis, eps 1e-12)."""
    import tensorflow as tf
    v1 = tf.compat.v1
    with v1.variable_scope(scope, default_name="LayerNorm"):
        shape = [inputs.shape[-1]]
        beta = v1.get_variable("beta", shape, dtype=inputs.dtype, initializer=v1.zeros_initializer())
        gamma = v1.get_variable("gamma", shape, dtype=inputs.dtype, initializer=v1.ones_initializer())
        mean, variance = tf.nn.moments(inputs, [-1], keepdims=True)
        return tf.nn.batch_normalization(inputs, mean, variance, offset=beta, scale=gamma, variance_epsilon=1e-12)


class _TFProxy(types.ModuleType):
    """tf.compat.v1 with the module's private flags and a name-preserving tf.layers.dense."""

    def __init__(self, owner, private_flags):
        super().__init__(f"{owner}.tf")
        import tensorflow as tf
        self._v1 = tf.compat.v1
        self.flags = private_flags
        self.layers = types.SimpleNamespace(dense=_dense)

    def __getattr__(self, name):
        return getattr(self._v1, name)


_SUBSTITUTIONS = (
    (re.compile(r"^import tensorflow\.compat\.v1 as tf$", re.M), "tf = __fastbert_tf__"),
    (re.compile(r"^import tensorflow as tf$", re.M), "tf = __fastbert_tf__"),
    (re.compile(r"^from absl import flags$", re.M), "flags = __fastbert_flags__"),
    (re.compile(r"^from tensorflow\.contrib import layers as contrib_layers$", re.M),
     "contrib_layers = __fastbert_contrib_layers__"),
    (re.compile(r"^from bert import (\w+)$", re.M), r"\1 = __fastbert_load__('\1')"),
)


def load(name):
    """Returns Google BERT's module `name` (one of tokenization, modeling, optimization,
    run_classifier, run_squad), importable under TF 2.21; loaded once per process."""
    if name not in _MODULES:
        raise ValueError(f"bert_compat.load: unknown module {name!r}; expected one of {_MODULES}")
    with _lock:
        if name in _loaded:
            return _loaded[name]
        path = os.path.join(_bert_dir(), name + ".py")
        with open(path, encoding="utf-8") as f:
            source = f.read()
        for pattern, replacement in _SUBSTITUTIONS:
            source = pattern.sub(replacement, source)
        module = types.ModuleType(f"{__name__}.{name}")
        module.__file__ = path
        private = _PrivateFlags(module.__name__)
        module.__dict__.update(
            __fastbert_tf__=_TFProxy(module.__name__, private), __fastbert_flags__=private,
            __fastbert_contrib_layers__=types.SimpleNamespace(layer_norm=_layer_norm),
            __fastbert_load__=load)
        exec(compile(source, path, "exec"), module.__dict__)
        private.FLAGS.mark_as_parsed()  # defaults are readable without parsing a command line
        module.FLAGS = private.FLAGS
        _loaded[name] = module
        sys.modules[module.__name__] = module  # for pickling and tracebacks; not a bert/tf name
        return module


def glue_processors():
    """Google's GLUE processors by task name ({'cola': ColaProcessor, ...}): the one table the wrap
    script, the calibration tool and the benchmark's dataset lengths share."""
    rc = load("run_classifier")
    return {"cola": rc.ColaProcessor, "mnli": rc.MnliProcessor, "mrpc": rc.MrpcProcessor, "xnli": rc.XnliProcessor}


def read_examples(processor, split, data_dir):
    """processor.get_<split>_examples(data_dir) ('train', 'dev' or 'test'), with bad input as one
    ValueError naming the file and line: a missing or undecodable file, a line with too few
    fields, a label that is not one of processor.get_labels()."""
    read = {}
    original = processor._read_tsv

    def reading(input_file, quotechar=None):
        if not tf.io.gfile.exists(input_file):
            raise ValueError(f"{input_file} does not exist")
        try:
            read["lines"] = original(input_file, quotechar)
        except (UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"{input_file}: not a UTF-8 TSV file ({e})") from None
        read["file"] = input_file
        return read["lines"]

    processor._read_tsv = reading  # an instance attribute over Google's classmethod, for this call
    try:
        examples = getattr(processor, f"get_{split}_examples")(data_dir)
    except (IndexError, KeyError, TypeError) as e:
        if "lines" not in read:
            raise
        lines = read["lines"]
        lo, hi = 1, len(lines)  # the shortest prefix of lines whose conversion fails
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                processor._create_examples(lines[:mid], split)
                lo = mid + 1
            except (IndexError, KeyError, TypeError):
                hi = mid
        raise ValueError(f"{read['file']}:{lo}: malformed line ({len(lines[lo - 1])} tab-separated fields; "
                         f"{type(e).__name__}: {e})") from None
    finally:
        del processor._read_tsv
    labels = set(processor.get_labels())
    for ex in examples if split != "test" else ():
        if ex.label not in labels:
            line = ex.guid.rsplit("-", 1)[-1]
            where = f"{read.get('file', data_dir)}:{int(line) + 1}" if line.isdigit() else f"{data_dir} ({ex.guid})"
            raise ValueError(f"{where}: label {ex.label!r} is not one of {sorted(labels)}")
    return examples
