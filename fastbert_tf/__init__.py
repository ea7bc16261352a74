"""fastbert_tf: fast BERT inference ops for TensorFlow (CPU and CUDA).

    import fastbert_tf as fb
    enc = fb.BertEncoder.from_weights(weights, num_layer=12, head_num=12, dtype="float16")
    out = enc(hidden_states, sequence_length)
    packed, cu = fb.remove_padding(hidden_states, sequence_length)
    back = fb.rebuild_padding(packed, cu, max_seq_len)
"""
from fastbert_tf import reference
from fastbert_tf.encoder import BertEncoder
from fastbert_tf.ops import (cpu_gemm_kernel, fast_bert_encoder, gpu_cache_stats, load_op_library, rebuild_padding,
                             remove_padding, row_buckets)

__all__ = ["BertEncoder", "cpu_gemm_kernel", "fast_bert_encoder", "gpu_cache_stats", "load_op_library",
           "rebuild_padding", "reference", "remove_padding", "row_buckets"]
__version__ = "0.1.0"
