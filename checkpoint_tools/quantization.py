"""Making quantized checkpoints: weight quantization, ranges from QAT checkpoints, post-training
calibration. The format and the rounding are fastbert_tf.int8's."""
import numpy as np

from fastbert_tf.int8 import MODE1_ACTIVATIONS, PER_CHANNEL, QUANT_ACTIVATIONS, quantize, scale_of
from fastbert_tf.weights import ENCODER_SCOPE, KERNEL_NAMES


def quantize_kernel(kernel, int8_mode, amax=None):
    """[in, out] float kernel -> (int8 kernel, float32 scales [out] (mode 1) or [1] (mode 2))."""
    kernel = np.asarray(kernel, np.float32)
    if amax is None:
        amax = np.abs(kernel).max(axis=0) if int8_mode == 1 else np.array([np.abs(kernel).max()], np.float32)
    amax = np.asarray(amax, np.float32).reshape(-1)
    if int8_mode == 2 and amax.size != 1:
        amax = np.array([amax.max()], np.float32)
    if int8_mode == 1 and amax.size == 1:
        amax = np.full(kernel.shape[1], amax[0], np.float32)
    scales = scale_of(amax)
    return quantize(kernel, scales[None, :] if int8_mode == 1 else scales[0]), scales


# ---------------------------------------------------------------- ranges from QAT checkpoints

# NVIDIA's TF BERT quantization names (below bert/encoder/layer_N/) -> our activations.
QAT_NAMES = {
    "qkv_input": ["attention/self/query/input_quantizer", "attention/self/key/input_quantizer",
                  "attention/self/value/input_quantizer"],
    "q": ["attention/self/matmul_q_input_quantizer"],
    "k": ["attention/self/matmul_k_input_quantizer"],
    "v": ["attention/self/matmul_v_input_quantizer"],
    "probs": ["attention/self/matmul_a_input_quantizer"],
    "attention_output_input": ["attention/output/dense/input_quantizer"],
    "attention_output_gemm": ["attention/output/dense/aftergemm_quantizer"],
    "intermediate_input": ["intermediate/dense/input_quantizer"],
    "intermediate_gemm": ["intermediate/dense/aftergemm_quantizer"],
    "output_input": ["output/dense/input_quantizer"],
    "output_gemm": ["output/dense/aftergemm_quantizer"],
}


def _qat_amax(reader, names):
    values = []
    for name in names:
        for suffix in ("quant_max", "quant_min"):
            if reader.has_tensor(f"{name}/{suffix}"):
                values.append(np.abs(np.asarray(reader.get_tensor(f"{name}/{suffix}"), np.float32)))
    if not values:
        return None
    return np.max(np.stack([np.broadcast_to(v, values[0].shape) for v in values]), axis=0)


def qat_ranges(reader, num_layer):
    """({layer: {activation: amax}}, {layer: {kernel: amax or None}}) from quantizer variables;
    activations without a quantizer are left out (probs defaults to 1.0)."""
    acts, kernels = {}, {}
    for layer in range(num_layer):
        base = f"{ENCODER_SCOPE}layer_{layer}/"
        acts[layer] = {}
        for name, qnames in QAT_NAMES.items():
            amax = _qat_amax(reader, [base + q for q in qnames])
            if amax is not None:
                acts[layer][name] = float(np.max(amax))
        acts[layer].setdefault("probs", 1.0)
        kernels[layer] = {k: _qat_amax(reader, [base + k.rsplit("/", 1)[0] + "/kernel_quantizer"]) for k in KERNEL_NAMES}
    return acts, kernels


def missing_ranges(acts, int8_mode):
    needed = MODE1_ACTIVATIONS if int8_mode == 1 else QUANT_ACTIVATIONS
    return sorted({(layer, n) for layer, a in acts.items() for n in needed if n not in a})


# ---------------------------------------------------------------- post-training calibration

class Calibrator:
    """Collects |activation| statistics of the float model over real tokens.

    'max': the largest |x|. 'percentile': the given percentile of |x|. 'mse': the range that
    minimizes the expected squared error of int8 rounding plus clipping over the observed values.
    The last two use a histogram over [0, max], so they need the max first: run the data twice,
    calling start_histograms() between. PER_CHANNEL activations get each channel's max.
    """

    BINS = 8192

    def __init__(self, method="max", percentile=99.99):
        if method not in ("max", "percentile", "mse"):
            raise ValueError(f"calib_method must be 'max', 'percentile' or 'mse', got {method!r}")
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        self.method, self.percentile = method, percentile
        self.max = {}
        self.channel_max = {}
        self.hist = None
        self.mask = None

    def set_mask(self, mask):
        """The current batch's real rows ([B * S] bools)."""
        self.mask = np.asarray(mask, bool).reshape(-1)

    def start_histograms(self):
        self.hist = {k: np.zeros(self.BINS, np.int64) for k in self.max}

    def __call__(self, layer, name, tensor):
        if name not in QUANT_ACTIVATIONS:
            return
        x = np.abs(np.asarray(tensor, np.float32))
        x = x[self.mask] if self.mask is not None and x.shape[0] == self.mask.size else x
        k = (layer, name)
        if name in PER_CHANNEL:  # per-channel maxima, on the first pass only
            if self.hist is None and x.size:
                col = x.reshape(-1, x.shape[-1]).max(axis=0)
                self.channel_max[k] = np.maximum(self.channel_max.get(k, 0.0), col)
            return
        if self.hist is None:
            self.max[k] = max(self.max.get(k, 0.0), float(x.max()) if x.size else 0.0)
        else:
            top = self.max[k] or 1.0
            idx = np.minimum((x.reshape(-1) / top * self.BINS).astype(np.int64), self.BINS - 1)
            self.hist[k] += np.bincount(idx, minlength=self.BINS)

    def _mse_range(self, hist, top):
        centers = (np.arange(self.BINS) + 0.5) / self.BINS * top
        best, best_err = top, None
        for amax in np.linspace(top / 64, top, 256):
            step = amax / 127.0
            err = np.where(centers > amax, (centers - amax) ** 2, step * step / 12.0)
            total = float(np.dot(hist, err))
            if best_err is None or total < best_err:
                best, best_err = amax, total
        return best

    def ranges(self):
        out = {}
        for (layer, name), top in self.max.items():
            amax = top
            hist = self.hist[(layer, name)] if self.hist is not None else None
            if hist is not None and hist.sum() and self.method == "percentile":
                cdf = np.cumsum(hist) / hist.sum()
                amax = (np.searchsorted(cdf, self.percentile / 100.0) + 1) / self.BINS * top
            elif hist is not None and hist.sum() and self.method == "mse":
                amax = self._mse_range(hist, top)
            out.setdefault(layer, {})[name] = float(amax)
        for (layer, name), amax in self.channel_max.items():
            out.setdefault(layer, {})[name] = np.asarray(amax, np.float32)
        for layer in out:
            out[layer]["probs"] = 1.0  # softmax outputs are in [0, 1]
        return out




# ---------------------------------------------------------------- float weights in memory

def quantize_weights(weights, x, lens, num_layer, head_num, int8_mode, method="max", activation="gelu_tanh"):
    """Float encoder weights (fastbert_tf.weights keys) calibrated on one batch x [B, S, H] with
    lengths lens through the plain-TF reference: (int8 weights with the float vectors, one
    quant_scales vector per layer), what BertEncoder.from_int8_weights takes. For tests and
    benchmarks; checkpoints go through ckpt_quantization.py."""
    import tensorflow as tf
    from fastbert_tf import int8, reference
    from fastbert_tf.weights import key
    lens = np.asarray(lens, np.int32)
    cal = Calibrator(method)
    cal.set_mask(np.arange(x.shape[1])[None, :] < lens[:, None])
    reference.bert_encoder(tf.constant(x, tf.float32), lens, weights, num_layer, head_num, activation=activation,
                           observer=cal)
    if method != "max":
        cal.start_histograms()
        reference.bert_encoder(tf.constant(x, tf.float32), lens, weights, num_layer, head_num,
                               activation=activation, observer=cal)
    acts = cal.ranges()
    hidden = np.asarray(weights[key(0, "attention/self/query/kernel")]).shape[0]
    inter = np.asarray(weights[key(0, "intermediate/dense/kernel")]).shape[1]
    qw, quant = dict(weights), []
    for layer in range(num_layer):
        for name in QUANT_ACTIVATIONS:  # a batch without real tokens observes nothing
            acts.setdefault(layer, {}).setdefault(name, 1.0)
        scales = {}
        for name in KERNEL_NAMES:
            qw[key(layer, name)], scales[name] = quantize_kernel(weights[key(layer, name)], int8_mode)
        quant.append(int8.quant_vector(acts[layer], scales, int8_mode, hidden, inter))
    return qw, quant
