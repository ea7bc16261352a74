"""INT8 for FastBertEncoder: the quantized checkpoint format, the rounding, and loading a quantized
checkpoint (made by checkpoint_tools/ckpt_quantization.py) into the op.

Format (portable, independent of any GPU layout). Below bert/encoder/layer_N/:
  <kernel>            int8 [in, out], Google's layout, for the six kernels (query, key, value,
                      attention/output/dense, intermediate/dense, output/dense)
  <kernel>_scale      float32 [out] (int8_mode 1, per output channel) or [1] (int8_mode 2)
  quant/<name>_amax   float32 [], the activation ranges (QUANT_ACTIVATIONS); in int8_mode 2 the
                      three GEMM results of PER_CHANNEL have one range per output channel ([N])
and fastbert/int8_mode (int32 []). Everything else (embeddings, biases, LayerNorm, pooler, heads)
stays float. Values are symmetric: real = int8 * scale, scale = amax / 127; quantize() gives the
rounding (half to even of x * (1/scale) in float32, clamped to [-127, 127]) that the op uses.
"""
import os

import numpy as np

from fastbert_tf.weights import (ENCODER_SCOPE, KERNEL_NAMES, check_layer_count, checkpoint_layers, is_training_state,
                                key, open_checkpoint, read_tensor)

# In the order of tf_ops/common/quant_layout.h (QuantIndex).
QUANT_ACTIVATIONS = ("qkv_input", "q", "k", "v", "probs", "attention_output_input", "attention_output_gemm",
                     "intermediate_input", "intermediate_gemm", "output_input", "output_gemm")
MODE1_ACTIVATIONS = ("qkv_input", "attention_output_input", "intermediate_input", "output_input")
# Mode 2 rounds these GEMM results to int8 with one range per output channel.
PER_CHANNEL = ("attention_output_gemm", "intermediate_gemm", "output_gemm")
INT8_MODE_NAME = "fastbert/int8_mode"


def quantize(x, scale):
    """int8 of x with the op's rounding: rint(x * float32(1 / scale)) clamped to [-127, 127]."""
    x = np.asarray(x, np.float32)
    inv = np.float32(1.0) / np.asarray(scale, np.float32)
    return np.clip(np.rint(x * inv), -127, 127).astype(np.int8)


def dequantize(q, scale):
    return np.asarray(q, np.float32) * np.asarray(scale, np.float32)


def scale_of(amax):
    """amax -> scale (amax / 127); a zero range gets scale 1/127 (its values are all zero)."""
    amax = np.asarray(amax, np.float32)
    return np.where(amax > 0, amax, np.float32(1.0)) / np.float32(127.0)


def channels(name, hidden, inter):
    return inter if name == "intermediate_gemm" else hidden


def quant_layout(int8_mode, hidden, inter):
    """{name: (start, end)} of a layer's quant_scales vector after the activation scalars (mode 2's
    per-channel GEMM-result scales, then the kernels'), and its length; as QuantLayout in C++."""
    sizes = {}
    if int8_mode == 2:
        sizes.update({name: channels(name, hidden, inter) for name in PER_CHANNEL})
    h, i = (hidden, inter) if int8_mode == 1 else (1, 1)
    sizes.update({"attention/self/query/kernel": h, "attention/self/key/kernel": h, "attention/self/value/kernel": h,
                  "attention/output/dense/kernel": h, "intermediate/dense/kernel": i, "output/dense/kernel": h})
    offsets, at = {}, len(QUANT_ACTIVATIONS)
    for name, size in sizes.items():
        offsets[name] = (at, at + size)
        at += size
    return offsets, at


def quant_vector(act_amax, kernel_scales, int8_mode, hidden, inter):
    """One layer's quant_scales: activation scales, mode 2's per-channel GEMM-result scales, then
    the kernels' scales. act_amax holds scalars, or [channels] arrays for PER_CHANNEL in mode 2."""
    offsets, total = quant_layout(int8_mode, hidden, inter)
    vec = np.zeros(total, np.float32)
    for i, name in enumerate(QUANT_ACTIVATIONS):
        vec[i] = scale_of(np.max(act_amax[name]))
    for name, (a, b) in offsets.items():
        vec[a:b] = scale_of(act_amax[name]) if name in PER_CHANNEL else kernel_scales[name]
    return vec


# ---------------------------------------------------------------- reading quantized checkpoints

def read_int8_encoder(path, num_layer=None):
    """(int8_mode, num_layer, {key: int8 kernel or float vector}, [quant_scales per layer])."""
    reader, shapes, _ = open_checkpoint(path)

    def get(name):
        return read_tensor(reader, path, name)

    if not reader.has_tensor(INT8_MODE_NAME):
        raise ValueError(f"{path} is not a quantized checkpoint (no {INT8_MODE_NAME}); "
                         "make one with checkpoint_tools/ckpt_quantization.py")
    mode = int(get(INT8_MODE_NAME))
    if num_layer:
        check_layer_count(shapes, num_layer, f"checkpoint {path}")
    layers = num_layer or checkpoint_layers(shapes)
    hidden = shapes[ENCODER_SCOPE + key(0, 'attention/self/query/kernel')][0]
    inter = shapes[ENCODER_SCOPE + key(0, 'intermediate/dense/kernel')][1]
    weights, scales = {}, []
    for layer in range(layers):
        base = f"{ENCODER_SCOPE}layer_{layer}/"
        act = {n: np.asarray(get(base + f"quant/{n}_amax"), np.float32) for n in QUANT_ACTIVATIONS}
        kscales = {k: np.asarray(get(base + k + "_scale"), np.float32).reshape(-1) for k in KERNEL_NAMES}
        scales.append(quant_vector(act, kscales, mode, hidden, inter))
    for name in shapes:
        if (name.startswith(ENCODER_SCOPE + "layer_") and "/quant/" not in name and not name.endswith("_scale")
                and not is_training_state(name)):
            weights[name[len(ENCODER_SCOPE):]] = get(name)
    return mode, layers, weights, scales


def load_into_model(path, bert_model, int8_mode):
    """Puts a quantized checkpoint's encoder (int8 kernels, float vectors, quant_scales) into a
    fastbert_tf.modeling.BertModel built with the same int8_mode."""
    import tensorflow as tf
    mode, layers, weights, scales = read_int8_encoder(path, bert_model.config.num_hidden_layers)
    if mode != int8_mode:
        raise ValueError(f"{path} was quantized for int8_mode {mode}, not {int8_mode}")
    for name, var in bert_model.encoder_weights.items():
        if name not in weights:
            raise ValueError(f"{path} lacks '{ENCODER_SCOPE}{name}'")
        value = weights[name]
        if list(value.shape) != var.shape.as_list():
            raise ValueError(f"'{ENCODER_SCOPE}{name}' has shape {list(value.shape)}, the config gives {var.shape.as_list()}")
        var.assign(tf.cast(value, var.dtype))
    bert_model.quant_scales = [tf.Variable(s, trainable=False, name=f"quant_scales_{i}") for i, s in enumerate(scales)]
    return bert_model


def checkpoint_dir_config(path):
    """bert_config.json beside a checkpoint prefix, if there is one."""
    candidate = os.path.join(os.path.dirname(path), "bert_config.json")
    return candidate if os.path.exists(candidate) else None
