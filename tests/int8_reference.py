"""The INT8 encoder of int8_mode 1 and 2 in numpy: integer GEMMs in int64, everything else in
float64, the rounding of fastbert_tf.int8.quantize. An independent check of the op's int8 path."""
import math

import numpy as np

from fastbert_tf import int8
from fastbert_tf.weights import key


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu(x, activation):
    if activation == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def encoder(x, lens, weights, quant, num_layer, head_num, int8_mode, activation="gelu_tanh", eps=1e-12):
    """x [B, S, H] float; weights: int8 kernels and float vectors by key; quant: per-layer vectors."""
    b, s, h = x.shape
    d = h // head_num
    inter = weights[key(0, "intermediate/dense/kernel")].shape[1]
    offsets, _ = int8.quant_layout(int8_mode, h, inter)
    act = {n: i for i, n in enumerate(int8.QUANT_ACTIVATIONS)}
    mask = np.arange(s)[None, :] < np.asarray(lens)[:, None]
    x = np.asarray(x, np.float64).reshape(b * s, h)

    def q(v, scale):
        return int8.quantize(v, scale).astype(np.int64)

    for layer in range(num_layer):
        sc = quant[layer]

        def w(name):
            return np.asarray(weights[key(layer, name)])

        def wscale(name):
            a, e = offsets[name + "/kernel"]
            return sc[a:e].astype(np.float32)

        def gemm(aq, a_scale, name, requant=None):
            acc = aq @ w(name + "/kernel").astype(np.int64)
            out = acc.astype(np.float32) * (np.float32(a_scale) * wscale(name))
            if requant is not None:
                out = int8.dequantize(int8.quantize(out, requant), requant)
            return out.astype(np.float64)

        xq = q(x, sc[act["qkv_input"]])
        if int8_mode == 1:
            qkv = [gemm(xq, sc[0], f"attention/self/{n}") + w(f"attention/self/{n}/bias") for n in ("query", "key", "value")]
            residual = x
        else:
            qkv = [q(gemm(xq, sc[0], f"attention/self/{n}") + w(f"attention/self/{n}/bias"), sc[act[n[0]]])
                   for n in ("query", "key", "value")]
            residual = int8.dequantize(xq, sc[0]).astype(np.float64)
        ctx = np.zeros((b * s, h))
        for bi in range(b):
            n = int(lens[bi])
            if n == 0:
                continue
            rows = slice(bi * s, bi * s + n)
            for hi in range(head_num):
                cols = slice(hi * d, hi * d + d)
                qm, km, vm = (t[rows, cols] for t in qkv)
                if int8_mode == 1:
                    scores = qm @ km.T / (math.sqrt(d))
                else:
                    scores = (qm @ km.T).astype(np.float32) * np.float32(sc[act["q"]] * sc[act["k"]]) / math.sqrt(d)
                p = np.exp(scores - scores.max(-1, keepdims=True))
                p /= p.sum(-1, keepdims=True)
                if int8_mode == 1:
                    ctx[rows, cols] = p @ vm
                else:
                    ctx[rows, cols] = (q(p, sc[act["probs"]]) @ vm).astype(np.float32) * \
                        np.float32(sc[act["probs"]] * sc[act["v"]])
        m2 = int8_mode == 2

        def per_channel(name):
            a, e = offsets[name]
            return sc[a:e].astype(np.float32)

        attn = gemm(q(ctx, sc[act["attention_output_input"]]), sc[act["attention_output_input"]],
                    "attention/output/dense", per_channel("attention_output_gemm") if m2 else None)
        x1 = _layer_norm(attn + w("attention/output/dense/bias") + residual, w("attention/output/LayerNorm/gamma"),
                         w("attention/output/LayerNorm/beta"), eps)
        x1q = q(x1, sc[act["intermediate_input"]])
        residual = int8.dequantize(x1q, sc[act["intermediate_input"]]).astype(np.float64) if m2 else x1
        inter_out = gemm(x1q, sc[act["intermediate_input"]], "intermediate/dense",
                         per_channel("intermediate_gemm") if m2 else None)
        inter_out = _gelu(inter_out + w("intermediate/dense/bias"), activation)
        out = gemm(q(inter_out, sc[act["output_input"]]), sc[act["output_input"]], "output/dense",
                   per_channel("output_gemm") if m2 else None)
        x = _layer_norm(out + w("output/dense/bias") + residual, w("output/LayerNorm/gamma"),
                        w("output/LayerNorm/beta"), eps)
    return (x.reshape(b, s, h) * mask[:, :, None])
