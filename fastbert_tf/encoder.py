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
