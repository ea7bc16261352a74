"""BertEncoder: the FastBertEncoder op with its weights held as variables (a tf.Module)."""
import json

import numpy as np
import tensorflow as tf

from fastbert_tf import int8, ops
from fastbert_tf.weights import (CONFIG_ACTIVATIONS, ENCODER_SCOPE, LAYER_WEIGHTS, OP_ACTIVATIONS, check_weights,
                                 is_training_state, stack_layers)

_DTYPES = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}


def as_dtype(dtype):
    """'float32' | 'float16' | 'bfloat16' (or the tf.DType) -> tf.DType; ValueError otherwise."""
    name = tf.as_dtype(dtype).name if isinstance(dtype, tf.DType) else str(dtype)
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[name]


def _variables(stacked, name):
    """One variable per weight kind ([num_layer, ...]): 16 inputs per call, not 16 * num_layer."""
    with tf.name_scope(name or "bert_encoder"):
        return {op_name: [tf.Variable(value, trainable=False, name=op_name)] for op_name, value in stacked.items()}


class BertEncoder(tf.Module):
    """Google BERT's encoder stack as one FastBertEncoder op.

    Build it with from_weights (a dict of numpy arrays keyed by Google BERT's names below
    'bert/encoder/') or from_checkpoint, then call enc(hidden_states [B, S, H], sequence_length [B]),
    eagerly or in a tf.function. Rows at or past a sequence's length come out as zeros. The variables
    are made once; calls pass them to the op without copies. `serve` is a tf.function with unknown
    batch and sequence dims, for tf.saved_model.save (reload after `import fastbert_tf`, which registers the ops).
    """

    def __init__(self, layer_variables, *, num_layer, head_num, hidden, inter_size, dtype="float32",
                 remove_padding=False, activation="gelu_tanh", layer_norm_eps=1e-12, q_scaling=1.0,
                 int8_mode=0, quant_scales=(), name=None):
        super().__init__(name=name)
        if activation not in OP_ACTIVATIONS:
            raise ValueError(f"activation must be one of {OP_ACTIVATIONS}, got {activation!r}")
        if not layer_norm_eps >= 0:
            raise ValueError(f"layer_norm_eps must be >= 0, got {layer_norm_eps!r}")
        if not q_scaling > 0:
            raise ValueError(f"q_scaling must be > 0, got {q_scaling!r}")
        if int8_mode not in (0, 1, 2):
            raise ValueError(f"int8_mode must be 0, 1 or 2, got {int8_mode!r}")
        if bool(int8_mode) != bool(len(quant_scales)):
            raise ValueError("int8_mode 1/2 take a quantized checkpoint: use BertEncoder.from_checkpoint on one "
                             "written by checkpoint_tools/ckpt_quantization.py")
        self.dtype = as_dtype(dtype)
        self.num_layer = int(num_layer)
        self.head_num = int(head_num)
        self.hidden = int(hidden)
        self.size_per_head = self.hidden // self.head_num
        self.inter_size = int(inter_size)
        self.remove_padding = bool(remove_padding)
        self.activation = activation
        self.layer_norm_eps = float(layer_norm_eps)
        self.q_scaling = float(q_scaling)
        self.int8_mode = int(int8_mode)
        # op input name -> [one stacked variable] or a list of per-layer variables
        self.layer_variables = {n: list(v) for n, v in layer_variables.items()}
        self.quant_scales = list(quant_scales)
        ops.load_op_library()
        self.serve = tf.function(self.__call__, input_signature=[
            tf.TensorSpec([None, None, self.hidden], self.dtype, name="hidden_states"),
            tf.TensorSpec([None], tf.int32, name="sequence_length")])

    @classmethod
    def from_weights(cls, weights, num_layer, head_num, dtype="float32", remove_padding=False,
                     activation="gelu_tanh", layer_norm_eps=1e-12, q_scaling=1.0, int8_mode=0, name=None):
        """weights: {'layer_0/attention/self/query/kernel': array [H, H], ...} (see fastbert_tf.weights).

        Missing or extra keys, wrong shapes or a layer count that does not match raise ValueError.
        int8_mode 1/2 take a quantized checkpoint: use from_checkpoint.
        """
        tf_dtype = as_dtype(dtype)
        weights, hidden, inter = check_weights(weights, num_layer, head_num)
        np_dtype = tf_dtype.as_numpy_dtype
        return cls(_variables(stack_layers(weights, num_layer, np_dtype, np_dtype), name), num_layer=num_layer,
                   head_num=head_num, hidden=hidden, inter_size=inter, dtype=tf_dtype, remove_padding=remove_padding,
                   activation=activation, layer_norm_eps=layer_norm_eps, q_scaling=q_scaling, int8_mode=int8_mode,
                   name=name)

    @classmethod
    def from_checkpoint(cls, path, num_layer=None, head_num=None, dtype="float32", remove_padding=False,
                        activation=None, layer_norm_eps=None, q_scaling=1.0, int8_mode=0, bert_config_file=None,
                        name=None):
        """The encoder of a Google-format BERT checkpoint (bert/encoder/...): float, or quantized by
        checkpoint_tools/ckpt_quantization.py when int8_mode is 1 or 2 (the mode must match).

        num_layer, head_num, activation and layer_norm_eps default to bert_config_file's, or to the
        bert_config.json beside the checkpoint.
        """
        config_file = bert_config_file or int8.checkpoint_dir_config(path)
        config = {}
        if config_file:
            with open(config_file) as f:
                config = json.load(f)
        num_layer = num_layer or config.get("num_hidden_layers")
        head_num = head_num or config.get("num_attention_heads")
        if not num_layer or not head_num:
            raise ValueError("from_checkpoint: give num_layer and head_num, or a bert_config.json "
                             f"(none found beside {path})")
        activation = activation or CONFIG_ACTIVATIONS.get(config.get("hidden_act", "gelu"), "gelu_tanh")
        layer_norm_eps = layer_norm_eps if layer_norm_eps is not None else config.get("layer_norm_eps", 1e-12)
        if not int8_mode:
            try:
                reader = tf.train.load_checkpoint(path)
            except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
                raise ValueError(f"cannot read checkpoint {path}: {e}") from None
            if reader.has_tensor(int8.INT8_MODE_NAME):
                raise ValueError(f"{path} is quantized: pass its int8_mode")
            names = [n for n in reader.get_variable_to_shape_map() if n.startswith(ENCODER_SCOPE)
                     and not is_training_state(n) and "_quantizer/" not in n]
            weights = {n[len(ENCODER_SCOPE):]: reader.get_tensor(n) for n in names}
            return cls.from_weights(weights, num_layer, head_num, dtype, remove_padding, activation,
                                    layer_norm_eps, q_scaling, name=name)
        mode, layers, weights, scales = int8.read_int8_encoder(path, num_layer)
        if mode != int8_mode:
            raise ValueError(f"{path} was quantized for int8_mode {mode}, not {int8_mode}")
        return cls.from_int8_weights(weights, scales, int8_mode, num_layer, head_num, dtype, remove_padding,
                                     activation, layer_norm_eps, q_scaling, name=name)

    @classmethod
    def from_int8_weights(cls, weights, quant_scales, int8_mode, num_layer, head_num, dtype="float32",
                          remove_padding=False, activation="gelu_tanh", layer_norm_eps=1e-12, q_scaling=1.0,
                          name=None):
        """An int8 encoder from quantized weights (int8 kernels, float vectors; keys as in
        from_weights) and one quant_scales vector per layer (fastbert_tf.int8.quant_vector), as
        checkpoint_tools/ckpt_quantization.py writes them."""
        weights, hidden, inter = check_weights(weights, num_layer, head_num)
        tf_dtype = as_dtype(dtype)
        variables = _variables(stack_layers(weights, num_layer, np.int8, tf_dtype.as_numpy_dtype), name)
        with tf.name_scope(name or "bert_encoder"):
            quant = [tf.Variable(np.asarray(s, np.float32), trainable=False, name=f"quant_scales_{i}")
                     for i, s in enumerate(quant_scales)]
        return cls(variables, num_layer=num_layer, head_num=head_num, hidden=hidden, inter_size=inter,
                   dtype=tf_dtype, remove_padding=remove_padding, activation=activation,
                   layer_norm_eps=layer_norm_eps, q_scaling=q_scaling, int8_mode=int8_mode, quant_scales=quant,
                   name=name)

    def warmup(self, batch_sizes, seq_lens, fn=None):
        """Runs every GPU shape a server will see up to the given sizes, so that served calls replay.

        A call of a shape (and, with remove_padding, a row bucket: fastbert_tf.row_buckets) the GPU
        runner has not seen runs with direct launches, and its second call captures a CUDA graph
        (README: first-call cost); later calls of that shape replay the graph whatever their lengths.
        This makes those two calls for each B in batch_sizes, S in seq_lens and, with remove_padding,
        each row bucket of B * S, largest first (the scratch buffer is sized once). fn: the callable to
        warm (default: the encoder itself; the graphs are shared by every caller of the same weights).
        Returns the number of calls made. On the CPU (which keeps no per-shape state) it makes one call
        per shape.
        """
        fn = fn or self
        device = next(iter(self.layer_variables.values()))[0].device
        on_gpu = "GPU" in device.upper()
        batch_sizes = [int(b) for b in batch_sizes]
        seq_lens = [int(s) for s in seq_lens]
        if any(b < 1 for b in batch_sizes) or any(s < 1 for s in seq_lens):
            raise ValueError(f"warmup: batch sizes and sequence lengths must be >= 1, got {batch_sizes}, {seq_lens}")
        calls = 0
        for b in sorted(set(batch_sizes), reverse=True):
            for s in sorted(set(seq_lens), reverse=True):
                with tf.device(device):
                    x = tf.cast(tf.random.normal([b, s, self.hidden]), self.dtype)
                for lengths in ops.warmup_lengths(b, s, every_bucket=self.remove_padding and on_gpu):
                    with tf.device("/CPU:0"):  # host lengths, as the op reads them
                        lengths = tf.constant(lengths)
                    for _ in range(2 if on_gpu else 1):
                        with tf.device(device):
                            fn(x, lengths)
                        calls += 1
        return calls

    def __call__(self, hidden_states, sequence_length):
        hidden_states = tf.convert_to_tensor(hidden_states)
        if hidden_states.dtype != self.dtype:
            raise ValueError(f"hidden_states is {hidden_states.dtype.name}, this encoder is {self.dtype.name}")
        if hidden_states.shape.rank not in (None, 3):
            raise ValueError(f"hidden_states must be [batch, seq_len, {self.hidden}], got shape {hidden_states.shape}")
        if hidden_states.shape.rank == 3 and hidden_states.shape[-1] not in (None, self.hidden):
            raise ValueError(f"hidden_states' last dimension must be {self.hidden}, got shape {hidden_states.shape}")
        return ops.fast_bert_encoder(
            hidden_states, ops.as_int32(sequence_length), self.layer_variables, self.quant_scales,
            num_layer=self.num_layer, head_num=self.head_num, size_per_head=self.size_per_head, inter_size=self.inter_size,
            remove_padding=self.remove_padding, activation=self.activation, layer_norm_eps=self.layer_norm_eps,
            q_scaling=self.q_scaling, int8_mode=self.int8_mode)
