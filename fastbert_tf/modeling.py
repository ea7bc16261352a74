"""A drop-in for Google BERT's `modeling.BertModel`, with the encoder on FastBertEncoder.

Same constructor and accessors as Google's (`get_pooled_output`, `get_sequence_output`, ...) and the
same variable names (`bert/embeddings/word_embeddings`, `bert/encoder/layer_0/attention/self/query/
kernel`, ...), so an unmodified Google checkpoint loads (`load_checkpoint`). Embeddings and pooler are
plain TF; the encoder stack is one FastBertEncoder op (or `fb.reference` with use_fast_op=False,
which is differentiable and used for fine-tuning).

Sequence lengths are taken from `input_mask` (its row sums), so padding must be on the right, as
Google's feature conversion produces it.

It is a tf.Module for TF2: variables are made once, in the constructor; `model(input_ids, ...)` runs
it again (eagerly or in a tf.function). As in Google's code, passing input_ids to the constructor
runs the model on them right away.
"""
import copy
import json

import tensorflow as tf

from fastbert_tf import ops, reference
from fastbert_tf.encoder import as_dtype
from fastbert_tf.weights import (CONFIG_ACTIVATIONS, LAYER_WEIGHTS, check_layer_count, checkpoint_layers,
                                is_training_state, key, open_checkpoint, read_tensor)

# bert_config.json's hidden_act -> FastBertEncoder activation. Google's "gelu" is the tanh form;
# Hugging Face's "gelu" is the erf form (convert_hf writes it as "gelu_erf").
class BertConfig:
    """Google BERT's configuration (bert_config.json), plus layer_norm_eps."""

    def __init__(self, vocab_size, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=16,
                 initializer_range=0.02, layer_norm_eps=1e-12, **extra):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        for k, v in extra.items():
            setattr(self, k, v)
        self.validate()

    def validate(self):
        if self.hidden_act not in CONFIG_ACTIVATIONS:
            raise ValueError(f"bert_config: hidden_act {self.hidden_act!r} is not supported; expected one of "
                             f"{sorted(CONFIG_ACTIVATIONS)} ('gelu' is Google's tanh form, 'gelu_erf' the exact one)")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"bert_config: {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"bert_config: hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")

    @property
    def activation(self):
        return CONFIG_ACTIVATIONS[self.hidden_act]

    @classmethod
    def from_dict(cls, d):
        if "vocab_size" not in d:
            raise ValueError("bert_config: missing 'vocab_size'")
        return cls(**d)

    @classmethod
    def from_json_file(cls, path):
        try:
            with open(path) as f:
                return cls.from_dict(json.load(f))
        except FileNotFoundError:
            raise ValueError(f"bert_config_file {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"bert_config_file {path} is not valid JSON: {e}") from None

    def to_dict(self):
        return copy.deepcopy(self.__dict__)


class BertModel(tf.Module):
    """Google BERT's BertModel on FastBertEncoder (see the module docstring).

    Extra arguments: floatx ('float32' | 'float16' | 'bfloat16': variables and activations),
    remove_padding, int8_mode (then load a quantized checkpoint's encoder with
    fastbert_tf.int8.load_into_model), use_fast_op (False: the plain-TF encoder, for training).
    """

    def __init__(self, config, is_training, input_ids=None, input_mask=None, token_type_ids=None,
                 use_one_hot_embeddings=False, scope=None, floatx="float32", remove_padding=False,
                 int8_mode=0, use_fast_op=True):
        super().__init__(name=scope or "bert")
        self.config = copy.deepcopy(config)
        if not is_training:
            self.config.hidden_dropout_prob = 0.0
            self.config.attention_probs_dropout_prob = 0.0
        self.is_training = is_training
        self.use_one_hot_embeddings = use_one_hot_embeddings
        self.dtype = as_dtype(floatx)
        self.remove_padding = remove_padding
        self.int8_mode = int(int8_mode)
        if self.int8_mode not in (0, 1, 2):
            raise ValueError(f"int8_mode must be 0, 1 or 2, got {int8_mode!r}")
        self.use_fast_op = use_fast_op
        self.scope = scope or "bert"
        self.quant_scales = []  # int8 modes: one float vector per layer (checkpoint_tools.quantization)
        self.observer = None  # observer(layer, name, tensor) for the plain-TF encoder (INT8 calibration)
        c = self.config
        self.variables_by_name = {}

        def var(name, shape, initializer="normal", dtype=None):
            full = f"{self.scope}/{name}"
            dtype = dtype or self.dtype
            if initializer == "normal":
                value = tf.random.truncated_normal(shape, stddev=c.initializer_range)
            elif initializer == "ones":
                value = tf.ones(shape)
            else:
                value = tf.zeros(shape)
            v = tf.Variable(tf.cast(value, dtype), name=full, trainable=True)
            self.variables_by_name[full] = v
            return v

        H, I = c.hidden_size, c.intermediate_size
        self.word_embeddings = var("embeddings/word_embeddings", [c.vocab_size, H])
        self.token_type_embeddings = var("embeddings/token_type_embeddings", [c.type_vocab_size, H])
        self.position_embeddings = var("embeddings/position_embeddings", [c.max_position_embeddings, H])
        self.embeddings_ln = (var("embeddings/LayerNorm/gamma", [H], "ones"),
                              var("embeddings/LayerNorm/beta", [H], "zeros"))
        sizes = {"H": H, "I": I}
        self.encoder_weights = {}  # 'layer_0/attention/self/query/kernel' -> variable
        for layer in range(c.num_hidden_layers):
            for _, name, shape in LAYER_WEIGHTS:
                init_kind = "normal" if len(shape) == 2 else ("ones" if name.endswith("gamma") else "zeros")
                kernel_int8 = self.int8_mode and len(shape) == 2
                self.encoder_weights[key(layer, name)] = var(
                    f"encoder/{key(layer, name)}", [sizes[d] for d in shape], "zeros" if kernel_int8 else init_kind,
                    dtype=tf.int8 if kernel_int8 else None)
        self.pooler = (var("pooler/dense/kernel", [H, H]), var("pooler/dense/bias", [H], "zeros"))
        if input_ids is not None:
            self(input_ids, input_mask, token_type_ids)

    # ---------------------------------------------------------------- forward

    def embeddings(self, input_ids, token_type_ids, training):
        c = self.config
        seq_len = tf.shape(input_ids)[1]
        if self.use_one_hot_embeddings:
            out = tf.matmul(tf.one_hot(input_ids, c.vocab_size, dtype=self.dtype), self.word_embeddings)
        else:
            out = tf.gather(self.word_embeddings, input_ids)
        out += tf.matmul(tf.one_hot(token_type_ids, c.type_vocab_size, dtype=self.dtype), self.token_type_embeddings)
        out += self.position_embeddings[tf.newaxis, :seq_len]
        out = reference.layer_norm(out, *self.embeddings_ln, eps=c.layer_norm_eps)
        if training and c.hidden_dropout_prob > 0:
            out = tf.nn.dropout(out, rate=c.hidden_dropout_prob)
        return out

    def encoder(self, embedding_output, sequence_length, training):
        c = self.config
        if not self.use_fast_op:
            return reference.bert_encoder(embedding_output, sequence_length, self.encoder_weights,
                                          c.num_hidden_layers, c.num_attention_heads, activation=c.activation,
                                          layer_norm_eps=c.layer_norm_eps,
                                          hidden_dropout_prob=c.hidden_dropout_prob if training else 0.0,
                                          attention_probs_dropout_prob=c.attention_probs_dropout_prob if training else 0.0,
                                          training=training, observer=self.observer)
        if self.int8_mode and len(self.quant_scales) != c.num_hidden_layers:
            raise ValueError("int8_mode needs the quantized weights: fastbert_tf.int8.load_into_model")
        lists = {op_name: [self.encoder_weights[key(l, name)] for l in range(c.num_hidden_layers)]
                 for op_name, name, _ in LAYER_WEIGHTS}
        return ops.fast_bert_encoder(
            embedding_output, sequence_length, lists, self.quant_scales, num_layer=c.num_hidden_layers,
            head_num=c.num_attention_heads, size_per_head=c.hidden_size // c.num_attention_heads,
            inter_size=c.intermediate_size, remove_padding=self.remove_padding, activation=c.activation,
            layer_norm_eps=c.layer_norm_eps, int8_mode=self.int8_mode)

    def __call__(self, input_ids, input_mask=None, token_type_ids=None, training=None):
        """Runs the model; returns the pooled output and keeps the others for the getters."""
        training = self.is_training if training is None else training
        if training and self.use_fast_op:
            raise ValueError("the fast op is for inference: build the model with use_fast_op=False to train")
        input_ids = tf.convert_to_tensor(input_ids)
        if input_ids.shape.rank != 2:
            raise ValueError(f"input_ids must be [batch, seq_len], got shape {input_ids.shape}")
        if input_ids.shape[1] is not None and input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {input_ids.shape[1]} is above the model's "
                             f"max_position_embeddings {self.config.max_position_embeddings}")
        if input_mask is None:
            input_mask = tf.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = tf.zeros_like(input_ids)
        sequence_length = sequence_lengths(input_mask)
        self.embedding_output = self.embeddings(input_ids, token_type_ids, training)
        self.sequence_output = self.encoder(self.embedding_output, sequence_length, training)
        first = self.sequence_output[:, 0]
        self.pooled_output = tf.tanh(tf.matmul(first, self.pooler[0]) + self.pooler[1])
        return self.pooled_output

    def get_pooled_output(self):
        return self.pooled_output

    def get_sequence_output(self):
        return self.sequence_output

    def get_embedding_output(self):
        return self.embedding_output

    def get_embedding_table(self):
        return self.word_embeddings


# ---------------------------------------------------------------- checkpoints

def load_checkpoint(path, variables, allow_unused=False, loaded_elsewhere=()):
    """Assigns checkpoint values to variables by Google name ({name: tf.Variable}, names without ':0').

    Checks the model and the checkpoint against each other both ways. ValueError, naming the
    variable, for: a missing, truncated or unreadable checkpoint; a variable the checkpoint lacks; a
    shape or kind (int8) mismatch; and, unless allow_unused, a checkpoint variable under 'bert/'
    (embeddings, encoder, pooler) that the model does not use, as a checkpoint with more layers
    than the config has. Names starting with a prefix in loaded_elsewhere are read by another
    loader (int8.load_into_model). Returns the other unused names (task heads, e.g.
    cls/predictions/...; optimizer slots and global_step are not listed).
    """
    reader, shapes, dtypes = open_checkpoint(path)
    missing = sorted(n for n in variables if n not in shapes)
    if missing:
        raise ValueError(f"checkpoint {path} lacks {len(missing)} variable(s) the model needs, e.g. '{missing[0]}'")
    unused = sorted(n for n in shapes if n not in variables and not is_training_state(n)
                    and not any(n.startswith(p) for p in loaded_elsewhere))
    model_part = [n for n in unused if n.startswith("bert/")]
    if model_part and not allow_unused:
        have, want = checkpoint_layers(shapes), checkpoint_layers(variables)
        if want and have != want:
            check_layer_count(shapes, want, f"checkpoint {path}")
        raise ValueError(f"checkpoint {path} has {len(model_part)} variable(s) the model does not use, e.g. "
                         f"'{model_part[0]}': does bert_config_file match the checkpoint?")
    for name, v in variables.items():
        if list(shapes[name]) != v.shape.as_list():
            raise ValueError(f"checkpoint variable '{name}' has shape {list(shapes[name])} but the config gives "
                             f"{v.shape.as_list()}: does bert_config_file match the checkpoint?")
        if dtypes[name] == tf.int8 and v.dtype != tf.int8:
            raise ValueError(f"checkpoint variable '{name}' is int8 (a quantized checkpoint): use int8_mode")
        v.assign(tf.cast(read_tensor(reader, path, name), v.dtype))
    return [n for n in unused if not n.startswith("bert/")]


def model_variables(model, extra=None):
    """{Google name: variable} of a BertModel plus extra variables (e.g. a task head)."""
    out = dict(model.variables_by_name)
    for v in (extra or {}).values():
        out[v.name.split(":")[0]] = v
    return out


def save_checkpoint(variables, path):
    """Writes a Google-format (name-based) checkpoint of {name: variable}; returns its prefix."""
    saver = tf.compat.v1.train.Saver(var_list=dict(variables), max_to_keep=None)
    return saver.save(None, path, write_meta_graph=False)


def head_variable(name, shape, dtype, stddev=0.02, zeros=False):
    """A task-head variable with a Google name (e.g. 'output_weights', 'cls/squad/output_bias')."""
    init = tf.zeros(shape) if zeros else tf.random.truncated_normal(shape, stddev=stddev)
    return tf.Variable(tf.cast(init, dtype), name=name)


def sequence_lengths(input_mask):
    """What BertModel passes as sequence_length: the row sums of a right-padded input_mask.

    Summed on the CPU: the op reads the lengths on the host, and a mask fed from the host (tf.data,
    numpy) then never visits the GPU, so the op does not wait for a device-to-host copy."""
    with tf.device("/CPU:0"):
        return tf.reduce_sum(tf.cast(input_mask, tf.int32), axis=1)


__all__ = ["BertConfig", "BertModel", "head_variable", "load_checkpoint", "model_variables", "save_checkpoint",
           "sequence_lengths"]
