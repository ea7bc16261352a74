import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import fastbert_tf as fb  # noqa: E402
from fastbert_tf import weights as weights_lib  # noqa: E402

GPUS = tf.config.list_physical_devices("GPU")
# float32 tests hold float32 accuracy: TensorFlow's TF32 default (which the op follows on the GPU)
# is switched off here; tests/test_encoder.py's TF32 test switches it on for itself.
tf.config.experimental.enable_tensor_float_32_execution(False)


def pytest_collection_modifyitems(config, items):
    if GPUS:
        return
    skip = pytest.mark.skip(reason="no GPU visible to TensorFlow")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def random_weights(rng, num_layer, hidden, inter):
    """Weights with BERT-like statistics but large enough that every path matters."""
    return weights_lib.random_weights(rng, num_layer, hidden, inter, kernel_std=None, vector_std=0.2)


def random_lengths(rng, batch, seq_len):
    """Mixed lengths that include 0 and S whenever the batch has room."""
    lens = rng.integers(0, seq_len + 1, batch)
    if batch >= 2:
        lens[0] = seq_len
        lens[-1] = 0
    if batch >= 3:
        lens[1] = rng.integers(1, seq_len + 1)
    return lens.astype(np.int32)


def rel_err(out, ref):
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    denom = np.linalg.norm(ref)
    return np.linalg.norm(out - ref) / (denom if denom > 0 else 1.0)


def reference(x, lens, weights, num_layer, head_num, activation="gelu_tanh", eps=1e-12, q_scaling=1.0):
    """fb.reference in float64 on the CPU."""
    with tf.device("/CPU:0"):
        w64 = {k: np.asarray(v, np.float64) for k, v in weights.items()}
        return fb.reference.bert_encoder(tf.constant(np.asarray(x, np.float64)), tf.constant(lens), w64, num_layer,
                                         head_num, activation=activation, layer_norm_eps=eps,
                                         q_scaling=q_scaling).numpy()


def padded_rows_are_zero(out, lens):
    out = np.asarray(out)
    return all(not np.any(out[b, lens[b]:]) for b in range(out.shape[0]))


TOL = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 3e-2}
NP_DTYPE = {"float32": np.float32, "float16": np.float16, "bfloat16": tf.bfloat16.as_numpy_dtype}


def _shared_dir():
    """The workplace's shared assets: $FASTBERT_SHARED, ../shared beside the checkout, or /work/shared."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.environ.get("FASTBERT_SHARED"), os.path.join(root, "..", "shared"), "/work/shared"):
        if candidate and os.path.isdir(os.path.join(candidate, "models", "minilm-l6-mrpc")):
            return os.path.abspath(candidate)
    return os.path.join(root, "..", "shared")


SHARED = _shared_dir()
MINILM = os.path.join(SHARED, "models", "minilm-l6-mrpc")
MRPC = os.path.join(SHARED, "data", "mrpc")
HAVE_SHARED = os.path.isdir(MINILM) and os.path.isdir(MRPC)
needs_shared = pytest.mark.skipif(not HAVE_SHARED, reason=f"shared model and data not found at {SHARED} "
                                  "(set FASTBERT_SHARED)")


@pytest.fixture(scope="session")
def converted_minilm(tmp_path_factory):
    """The shared MiniLM-L6 MRPC model converted to a Google checkpoint (once per session)."""
    if not HAVE_SHARED:
        pytest.skip(f"shared model and data not found at {SHARED} (set FASTBERT_SHARED)")
    from checkpoint_tools import convert_hf
    out = str(tmp_path_factory.mktemp("models") / "minilm")
    convert_hf.convert(MINILM, out)
    return out
