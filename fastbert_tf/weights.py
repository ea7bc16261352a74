"""Google BERT's encoder variable names, and the checks every entry point applies to a weight dict.

Keys are the names below ``bert/encoder/``, e.g. ``layer_0/attention/self/query/kernel``; kernels are
``[in, out]`` as in Google's checkpoints.
"""
import re

import numpy as np

ENCODER_SCOPE = "bert/encoder/"

# The op's activations, and what a bert_config.json's hidden_act means in them: Google's "gelu" is
# the tanh form; Hugging Face's "gelu" (exact, erf) is written "gelu_erf" by convert_hf.
OP_ACTIVATIONS = ("gelu_tanh", "gelu")
CONFIG_ACTIVATIONS = {"gelu": "gelu_tanh", "gelu_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
                      "gelu_pytorch_tanh": "gelu_tanh", "gelu_erf": "gelu", "gelu_exact": "gelu"}

# (op input name, variable name below layer_N/, shape as (rows, cols) in units of "H"/"I", or (cols,))
LAYER_WEIGHTS = (
    ("query_kernel", "attention/self/query/kernel", ("H", "H")),
    ("query_bias", "attention/self/query/bias", ("H",)),
    ("key_kernel", "attention/self/key/kernel", ("H", "H")),
    ("key_bias", "attention/self/key/bias", ("H",)),
    ("value_kernel", "attention/self/value/kernel", ("H", "H")),
    ("value_bias", "attention/self/value/bias", ("H",)),
    ("attention_output_kernel", "attention/output/dense/kernel", ("H", "H")),
    ("attention_output_bias", "attention/output/dense/bias", ("H",)),
    ("attention_layernorm_gamma", "attention/output/LayerNorm/gamma", ("H",)),
    ("attention_layernorm_beta", "attention/output/LayerNorm/beta", ("H",)),
    ("intermediate_kernel", "intermediate/dense/kernel", ("H", "I")),
    ("intermediate_bias", "intermediate/dense/bias", ("I",)),
    ("output_kernel", "output/dense/kernel", ("I", "H")),
    ("output_bias", "output/dense/bias", ("H",)),
    ("output_layernorm_gamma", "output/LayerNorm/gamma", ("H",)),
    ("output_layernorm_beta", "output/LayerNorm/beta", ("H",)),
)
OP_INPUT_NAMES = tuple(op_name for op_name, _, _ in LAYER_WEIGHTS)
KERNEL_NAMES = tuple(name for op_name, name, shape in LAYER_WEIGHTS if len(shape) == 2)

_LAYER_RE = re.compile(r"^layer_(\d+)/")


def is_training_state(name):
    """Optimizer slots and step counters in a checkpoint: not model weights."""
    last = name.split("/")[-1]
    return (name == "global_step" or last in ("adam_m", "adam_v") or "/Adam" in name or last.startswith("Momentum")
            or "/LAMB" in name)


def first_line(e):
    """The first line of an exception's message (TensorFlow's run over several)."""
    text = getattr(e, "message", None) or str(e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def open_checkpoint(path):
    """(reader, {name: shape}, {name: dtype}) of a name-based checkpoint; ValueError naming the
    path for a missing, truncated or foreign one (TF raises OpError, ValueError or IndexError)."""
    import tensorflow as tf
    try:
        reader = tf.train.load_checkpoint(path)
        return reader, reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError, IndexError) as e:
        raise ValueError(f"cannot read checkpoint {path}: {first_line(e)}") from None


def read_tensor(reader, path, name):
    """One variable of an open checkpoint; ValueError naming it when the .data file is truncated."""
    import tensorflow as tf
    try:
        return reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError) as e:
        raise ValueError(f"checkpoint {path}: variable '{name}' cannot be read ({first_line(e)}): is the "
                         ".data file truncated?") from None


def checkpoint_layers(names):
    """The encoder layer count of a checkpoint's (or model's) variable names: 1 + the largest N of
    'bert/encoder/layer_N/...' (0 when there is none)."""
    found = [int(m.group(1)) for n in names if n.startswith(ENCODER_SCOPE)
             for m in [_LAYER_RE.match(n[len(ENCODER_SCOPE):])] if m]
    return max(found) + 1 if found else 0


def check_layer_count(names, num_layer, source):
    """ValueError when the checkpoint `source` (variable names `names`) has another number of
    encoder layers than the config's num_hidden_layers."""
    have = checkpoint_layers(names)
    if have != num_layer:
        raise ValueError(f"{source} has {have} encoder layers (bert/encoder/layer_0..{have - 1}) but the config's "
                         f"num_hidden_layers is {num_layer}: does bert_config_file belong to this checkpoint?")


def stack_layers(weights, num_layer, kernel_dtype, vector_dtype):
    """{op input name: [num_layer, ...] array}: each weight kind's layers stacked (one input per
    kind instead of num_layer), kernels cast to kernel_dtype and vectors to vector_dtype."""
    out = {}
    for op_name, name, shape in LAYER_WEIGHTS:
        stacked = np.stack([np.asarray(weights[key(layer, name)]) for layer in range(num_layer)])
        out[op_name] = stacked.astype(kernel_dtype if len(shape) == 2 else vector_dtype)
    return out


def key(layer, name):
    """The weight-dict key of variable ``name`` (e.g. 'attention/self/query/kernel') of a layer."""
    return f"layer_{layer}/{name}"


def strip_scope(weights):
    """Accepts keys with or without the leading 'bert/encoder/'."""
    return {(k[len(ENCODER_SCOPE):] if k.startswith(ENCODER_SCOPE) else k): v for k, v in weights.items()}


def infer_sizes(weights):
    """(hidden, inter_size) from layer 0's kernels."""
    for required in (key(0, "attention/self/query/kernel"), key(0, "intermediate/dense/kernel")):
        if required not in weights:
            raise ValueError(f"weights: missing key '{required}'")
    q = tuple(np.shape(weights[key(0, "attention/self/query/kernel")]))
    inter = tuple(np.shape(weights[key(0, "intermediate/dense/kernel")]))
    if len(q) != 2 or q[0] != q[1]:
        raise ValueError(f"weights['{key(0, 'attention/self/query/kernel')}'] must be [H, H], got {list(q)}")
    if len(inter) != 2:
        raise ValueError(f"weights['{key(0, 'intermediate/dense/kernel')}'] must be [H, I], got {list(inter)}")
    return int(q[0]), int(inter[1])


def check_weights(weights, num_layer, head_num=None, extra_ok=()):
    """Validates a weight dict; returns (dict without the scope prefix, hidden, inter_size).

    Raises ValueError naming the key for a missing or extra key, a wrong shape, or a layer count
    that does not match num_layer. Keys in extra_ok (exact names) are allowed beside the weights.
    """
    if not isinstance(num_layer, (int, np.integer)) or num_layer < 1:
        raise ValueError(f"num_layer must be a positive integer, got {num_layer!r}")
    weights = strip_scope(dict(weights))
    hidden, inter = infer_sizes(weights)
    sizes = {"H": hidden, "I": inter}
    expected = set()
    for layer in range(num_layer):
        for _, name, shape in LAYER_WEIGHTS:
            k = key(layer, name)
            expected.add(k)
            if k not in weights:
                raise ValueError(f"weights: missing key '{k}' (num_layer={num_layer})")
            want = [sizes[d] for d in shape]
            got = list(np.shape(weights[k]))
            if got != want:
                raise ValueError(f"weights['{k}'] has shape {got}, expected {want} (hidden={hidden}, "
                                 f"inter_size={inter})")
    extra = sorted(k for k in weights if k not in expected and k not in extra_ok)
    if extra:
        layers = sorted({int(m.group(1)) for m in map(_LAYER_RE.match, extra) if m})
        if layers and max(layers) >= num_layer:
            raise ValueError(f"weights hold layer_{max(layers)} but num_layer={num_layer}: "
                             f"unexpected key '{extra[0]}'")
        raise ValueError(f"weights: unexpected key '{extra[0]}'" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    if head_num is not None:
        if not isinstance(head_num, (int, np.integer)) or head_num < 1:
            raise ValueError(f"head_num must be a positive integer, got {head_num!r}")
        if hidden % head_num:
            raise ValueError(f"hidden size {hidden} is not divisible by head_num={head_num}")
        if (hidden // head_num) % 2:
            raise ValueError(f"size_per_head = {hidden} / {head_num} = {hidden // head_num} must be even")
    return weights, hidden, inter


def random_weights(rng, num_layer, hidden, inter, kernel_std=0.02, vector_std=0.1):
    """Random float32 encoder weights with BERT-like statistics (for examples, tests, benchmarks).

    kernel_std=None scales each kernel by 1/sqrt(fan_in); LayerNorm gammas are 1 + vector_std * N(0, 1).
    """
    sizes = {"H": hidden, "I": inter}
    weights = {}
    for layer in range(num_layer):
        for _, name, shape in LAYER_WEIGHTS:
            s = [sizes[d] for d in shape]
            if len(s) == 2:
                w = rng.standard_normal(s) * (kernel_std if kernel_std is not None else 1.0 / np.sqrt(s[0]))
            elif name.endswith("gamma"):
                w = 1.0 + vector_std * rng.standard_normal(s)
            else:
                w = vector_std * rng.standard_normal(s)
            weights[key(layer, name)] = w.astype(np.float32)
    return weights
