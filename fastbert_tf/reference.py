"""The BERT encoder in plain TensorFlow ops, Google BERT's math (post-LayerNorm).

The one reference implementation: the tests check the op against it (in float64), the benchmarks
time it as the "TF" and "TF-XLA" baselines, modeling.BertModel uses it for training, and the INT8
calibration observes its activations.
"""
import math

import tensorflow as tf

from fastbert_tf.weights import key


def gelu(x, activation="gelu_tanh"):
    """'gelu_tanh': Google BERT's tanh approximation; 'gelu': the erf form (Hugging Face's "gelu")."""
    if activation == "gelu_tanh":
        c = tf.cast(math.sqrt(2.0 / math.pi), x.dtype)
        return 0.5 * x * (1.0 + tf.tanh(c * (x + tf.cast(0.044715, x.dtype) * x * x * x)))
    if activation == "gelu":
        return 0.5 * x * (1.0 + tf.math.erf(x / tf.cast(math.sqrt(2.0), x.dtype)))
    raise ValueError(f"activation must be 'gelu_tanh' or 'gelu', got {activation!r}")


def layer_norm(x, gamma, beta, eps=1e-12):
    """LayerNorm over the last axis; statistics in float32 at least, as contrib's layer_norm gives."""
    compute = tf.float64 if x.dtype == tf.float64 else tf.float32
    xc = tf.cast(x, compute)
    mean, var = tf.nn.moments(xc, axes=[-1], keepdims=True)
    y = (xc - mean) * tf.math.rsqrt(var + tf.cast(eps, compute))
    return tf.cast(y, x.dtype) * tf.cast(gamma, x.dtype) + tf.cast(beta, x.dtype)


def attention_mask_adder(sequence_length, seq_len, dtype):
    """[B, 1, 1, S]: 0 on real keys, -10000 on padding (Google BERT's additive mask)."""
    mask = tf.sequence_mask(sequence_length, seq_len, dtype=dtype)
    return (1.0 - mask[:, tf.newaxis, tf.newaxis, :]) * tf.cast(-10000.0, dtype)


def bert_encoder(hidden_states, sequence_length, weights, num_layer, head_num, activation="gelu_tanh",
                 layer_norm_eps=1e-12, q_scaling=1.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                 training=False, observer=None):
    """Runs num_layer encoder layers on hidden_states [B, S, H] and zeros the padded rows.

    weights: mapping from keys such as 'layer_0/attention/self/query/kernel' to arrays, tensors or
    variables (cast to the dtype of hidden_states). observer(layer, name, tensor), if given, sees the
    activations that INT8 quantizes (fastbert_tf.int8.QUANT_ACTIVATIONS names them).
    """
    x = tf.convert_to_tensor(hidden_states)
    dtype = x.dtype
    sequence_length = tf.cast(sequence_length, tf.int32)
    shape = tf.shape(x)
    batch, seq_len = shape[0], shape[1]
    hidden = x.shape[-1]
    if hidden is None or hidden % head_num:
        raise ValueError(f"hidden_states' last dimension ({hidden}) must be known and divisible by head_num={head_num}")
    size_per_head = hidden // head_num
    scale = 1.0 / (math.sqrt(size_per_head) * q_scaling)
    adder = attention_mask_adder(sequence_length, seq_len, dtype)
    observe = observer or (lambda layer, name, t: None)

    def w(layer, name):
        return tf.cast(weights[key(layer, name)], dtype)

    def dense(inp, layer, scope):
        return tf.matmul(inp, w(layer, scope + "/kernel")) + w(layer, scope + "/bias")

    def heads(t):  # [B*S, H] -> [B, NH, S, D]
        return tf.transpose(tf.reshape(t, [batch, seq_len, head_num, size_per_head]), [0, 2, 1, 3])

    def dropout(t, rate):
        return tf.nn.dropout(t, rate=rate) if training and rate > 0 else t

    x2 = tf.reshape(x, [-1, hidden])
    for layer in range(num_layer):
        observe(layer, "qkv_input", x2)
        q = dense(x2, layer, "attention/self/query")
        k = dense(x2, layer, "attention/self/key")
        v = dense(x2, layer, "attention/self/value")
        observe(layer, "q", q)
        observe(layer, "k", k)
        observe(layer, "v", v)
        scores = tf.matmul(heads(q), heads(k), transpose_b=True) * tf.cast(scale, dtype) + adder
        observe(layer, "softmax_input", scores)
        probs = dropout(tf.nn.softmax(scores, axis=-1), attention_probs_dropout_prob)
        ctx = tf.reshape(tf.transpose(tf.matmul(probs, heads(v)), [0, 2, 1, 3]), [-1, hidden])
        observe(layer, "attention_output_input", ctx)
        attn = tf.matmul(ctx, w(layer, "attention/output/dense/kernel"))
        observe(layer, "attention_output_gemm", attn)
        attn = dropout(attn + w(layer, "attention/output/dense/bias"), hidden_dropout_prob)
        x1 = layer_norm(attn + x2, weights[key(layer, "attention/output/LayerNorm/gamma")],
                        weights[key(layer, "attention/output/LayerNorm/beta")], layer_norm_eps)
        observe(layer, "intermediate_input", x1)
        inter = tf.matmul(x1, w(layer, "intermediate/dense/kernel"))
        observe(layer, "intermediate_gemm", inter)
        inter = gelu(inter + w(layer, "intermediate/dense/bias"), activation)
        observe(layer, "output_input", inter)
        out = tf.matmul(inter, w(layer, "output/dense/kernel"))
        observe(layer, "output_gemm", out)
        out = dropout(out + w(layer, "output/dense/bias"), hidden_dropout_prob)
        x2 = layer_norm(out + x1, weights[key(layer, "output/LayerNorm/gamma")],
                        weights[key(layer, "output/LayerNorm/beta")], layer_norm_eps)
    out = tf.reshape(x2, [batch, seq_len, hidden])
    return out * tf.sequence_mask(sequence_length, seq_len, dtype=dtype)[:, :, tf.newaxis]
