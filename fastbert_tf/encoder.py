"""BertEncoder: the FastBertEncoder op with its weights held as variables (a tf.Module)."""
import numpy as np
import tensorflow as tf

from fastbert_tf import ops
from fastbert_tf.weights import LAYER_WEIGHTS, check_weights, key

_DTYPES = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}
ACTIVATIONS = ("gelu_tanh", "gelu")


def as_dtype(dtype):
    """'float32' | 'float16' | 'bfloat16' (or the tf.DType) -> tf.DType; ValueError otherwise."""
    name = tf.as_dtype(dtype).name if isinstance(dtype, tf.DType) else str(dtype)
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[name]


def _check_options(activation, layer_norm_eps, q_scaling, int8_mode):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if not layer_norm_eps >= 0:
        raise ValueError(f"layer_norm_eps must be >= 0, got {layer_norm_eps!r}")
    if not q_scaling > 0:
        raise ValueError(f"q_scaling must be > 0, got {q_scaling!r}")
    if int8_mode not in (0, 1, 2):
        raise ValueError(f"int8_mode must be 0, 1 or 2, got {int8_mode!r}")


class BertEncoder(tf.Module):
    """Google BERT's encoder stack as one FastBertEncoder op.

    Build it with from_weights (a dict of numpy arrays keyed by Google BERT's names below
    'bert/encoder/'), then call enc(hidden_states [B, S, H], sequence_length [B]), eagerly or in a
    tf.function. Rows at or past a sequence's length come out as zeros. The variables are made once;
    calls pass them to the op without copies. `serve` is a tf.function with unknown batch and sequence
    dims, for tf.saved_model.save (reload after fastbert_tf.load_op_library()).
    """

    def __init__(self, layer_variables, *, num_layer, head_num, hidden, inter_size, dtype="float32",
                 remove_padding=False, activation="gelu_tanh", layer_norm_eps=1e-12, q_scaling=1.0,
                 int8_mode=0, quant_scales=(), name=None):
        super().__init__(name=name)
        _check_options(activation, layer_norm_eps, q_scaling, int8_mode)
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
        _check_options(activation, layer_norm_eps, q_scaling, int8_mode)
        if int8_mode:
            raise ValueError("int8_mode needs quantized weights and ranges: use BertEncoder.from_checkpoint "
                             "on a checkpoint written by checkpoint_tools/ckpt_quantization.py")
        tf_dtype = as_dtype(dtype)
        _check_options(activation, layer_norm_eps, q_scaling, int8_mode)
        weights, hidden, inter = check_weights(weights, num_layer, head_num)
        # One variable per kind with the layers stacked: 16 inputs per call instead of 16 * num_layer.
        variables = {}
        with tf.name_scope(name or "bert_encoder"):
            for op_name, var_name, _ in LAYER_WEIGHTS:
                stacked = np.stack([np.asarray(weights[key(layer, var_name)]) for layer in range(num_layer)])
                variables[op_name] = [tf.Variable(stacked.astype(tf_dtype.as_numpy_dtype), trainable=False,
                                                  name=op_name)]
        return cls(variables, num_layer=num_layer, head_num=head_num, hidden=hidden, inter_size=inter,
                   dtype=tf_dtype, remove_padding=remove_padding, activation=activation,
                   layer_norm_eps=layer_norm_eps, q_scaling=q_scaling, name=name)

    @classmethod
    def from_checkpoint(cls, path, num_layer=None, head_num=None, dtype="float32", remove_padding=False,
                        activation=None, layer_norm_eps=None, q_scaling=1.0, int8_mode=0, bert_config_file=None,
                        name=None):
        """The encoder of a Google-format BERT checkpoint (bert/encoder/...): float, or quantized by
        checkpoint_tools/ckpt_quantization.py when int8_mode is 1 or 2 (the mode must match).

        num_layer, head_num, activation and layer_norm_eps default to bert_config_file's, or to the
        bert_config.json beside the checkpoint.
        """
        import json
        from fastbert_tf import int8, modeling
        from fastbert_tf.weights import key as layer_key
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
        activation = activation or modeling.ACTIVATIONS.get(config.get("hidden_act", "gelu"), "gelu_tanh")
        layer_norm_eps = layer_norm_eps if layer_norm_eps is not None else config.get("layer_norm_eps", 1e-12)
        if not int8_mode:
            try:
                reader = tf.train.load_checkpoint(path)
            except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as e:
                raise ValueError(f"cannot read checkpoint {path}: {e}") from None
            if reader.has_tensor(int8.INT8_MODE_NAME):
                raise ValueError(f"{path} is quantized: pass its int8_mode")
            names = [n for n in reader.get_variable_to_shape_map() if n.startswith("bert/encoder/")
                     and not modeling.is_training_state(n) and "_quantizer/" not in n]
            weights = {n[len("bert/encoder/"):]: reader.get_tensor(n) for n in names}
            return cls.from_weights(weights, num_layer, head_num, dtype, remove_padding, activation,
                                    layer_norm_eps, q_scaling, name=name)
        _check_options(activation, layer_norm_eps, q_scaling, int8_mode)
        mode, layers, weights, scales = int8.read_int8_encoder(path, num_layer)
        if mode != int8_mode:
            raise ValueError(f"{path} was quantized for int8_mode {mode}, not {int8_mode}")
        weights, hidden, inter = check_weights(weights, num_layer, head_num)
        tf_dtype = as_dtype(dtype)
        variables = {}
        with tf.name_scope(name or "bert_encoder"):
            for op_name, var_name, shape in LAYER_WEIGHTS:
                stacked = np.stack([np.asarray(weights[layer_key(l, var_name)]) for l in range(num_layer)])
                value = stacked.astype(np.int8) if len(shape) == 2 else stacked.astype(tf_dtype.as_numpy_dtype)
                variables[op_name] = [tf.Variable(value, trainable=False, name=op_name)]
            quant = [tf.Variable(s, trainable=False, name=f"quant_scales_{i}") for i, s in enumerate(scales)]
        return cls(variables, num_layer=num_layer, head_num=head_num, hidden=hidden, inter_size=inter,
                   dtype=tf_dtype, remove_padding=remove_padding, activation=activation,
                   layer_norm_eps=layer_norm_eps, q_scaling=q_scaling, int8_mode=int8_mode, quant_scales=quant,
                   name=name)

    def __call__(self, hidden_states, sequence_length):
        hidden_states = tf.convert_to_tensor(hidden_states)
        if hidden_states.dtype != self.dtype:
            raise ValueError(f"hidden_states is {hidden_states.dtype.name}, this encoder is {self.dtype.name}")
        if hidden_states.shape.rank not in (None, 3):
            raise ValueError(f"hidden_states must be [batch, seq_len, {self.hidden}], got shape {hidden_states.shape}")
        if hidden_states.shape.rank == 3 and hidden_states.shape[-1] not in (None, self.hidden):
            raise ValueError(f"hidden_states' last dimension must be {self.hidden}, got shape {hidden_states.shape}")
        sequence_length = tf.convert_to_tensor(sequence_length)
        if not sequence_length.dtype.is_integer:
            raise ValueError(f"sequence_length must be integers, got {sequence_length.dtype.name}")
        return ops.fast_bert_encoder(
            hidden_states, tf.cast(sequence_length, tf.int32), self.layer_variables, self.quant_scales,
            num_layer=self.num_layer, head_num=self.head_num, size_per_head=self.size_per_head, inter_size=self.inter_size,
            remove_padding=self.remove_padding, activation=self.activation, layer_norm_eps=self.layer_norm_eps,
            q_scaling=self.q_scaling, int8_mode=self.int8_mode)
