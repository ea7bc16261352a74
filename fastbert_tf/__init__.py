"""fastbert_tf: fast BERT inference ops for TensorFlow (CPU and CUDA).

    import fastbert_tf as fb
    enc = fb.BertEncoder.from_weights(weights, num_layer=12, head_num=12, dtype="float16")
    out = enc(hidden_states, sequence_length)
    packed, cu = fb.remove_padding(hidden_states, sequence_length)
    back = fb.rebuild_padding(packed, cu, max_seq_len)
"""
from fastbert_tf import reference
from fastbert_tf.encoder import BertEncoder
from fastbert_tf.ops import (cpu_gemm_kernel, cpu_int8_gemm_kernel, fast_bert_encoder, gpu_cache_stats,
                             load_op_library, rebuild_padding, remove_padding, row_buckets)

__all__ = ["BertEncoder", "cpu_gemm_kernel", "cpu_int8_gemm_kernel", "fast_bert_encoder", "gpu_cache_stats",
           "load_op_library", "rebuild_padding", "reference", "remove_padding", "row_buckets"]
__version__ = "0.1.0"

# Importing the package registers the ops, so a SavedModel holding FastBertEncoder loads after
# `import fastbert_tf` alone. Where the library is not built yet (a source checkout before
# `make lib`) or cannot load here (a CPU without the instructions it was built for), the first use
# raises the error that says why.
try:
    load_op_library()
except (FileNotFoundError, RuntimeError, ImportError, OSError):
    pass
except Exception as e:  # noqa: BLE001  tf.errors.NotFoundError (a broken build): reported on first use
    if type(e).__name__ != "NotFoundError":
        raise
