"""Loads libfastbert_ops.so and wraps its three ops."""
import ctypes
import os
import platform
import threading

import tensorflow as tf

_HERE = os.path.dirname(os.path.abspath(__file__))
_LIB_NAME = "libfastbert_ops.so"
_lock = threading.Lock()
_module = None


def library_path():
    """$FASTBERT_OPS_LIB, else the library inside the package (pip install / make lib)."""
    path = os.environ.get("FASTBERT_OPS_LIB") or os.path.join(_HERE, _LIB_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} does not exist: build it with `make lib` (or `pip install .`), or point "
            "FASTBERT_OPS_LIB at a built libfastbert_ops.so")
    return path


def _check_cpu(path):
    # The library is built for x86-64-v3 by default; loading it on an older CPU would die on an
    # illegal instruction instead of raising.
    flags_file = path + ".cpuflags"
    if platform.machine() != "x86_64" or not os.path.exists(flags_file):
        return
    with open(flags_file) as f:
        needed = set(f.read().split())
    have = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return
    missing = sorted(needed - have)
    if have and missing:
        raise RuntimeError(f"{path} was built for CPUs with {', '.join(sorted(needed))}; this CPU lacks "
                           f"{', '.join(missing)}. Rebuild with `make clean lib CPU_FLAGS=`.")


def _no_gradient(op_type):
    def grad(op, *grads):
        raise NotImplementedError(
            f"{op_type} has no gradient: fastbert_tf's ops are for inference. Train or fine-tune "
            "with the plain-TF encoder (fastbert_tf.reference.bert_encoder) and load the weights into "
            "the op afterwards.")
    return grad


@tf.autograph.experimental.do_not_convert
def load_op_library():
    """Loads the op library once per process and returns its module (idempotent, thread-safe)."""
    global _module
    with _lock:
        if _module is None:
            path = library_path()
            _check_cpu(path)
            module = tf.load_op_library(path)
            for op_type in ("FastBertEncoder", "RemovePadding", "RebuildPadding"):
                try:
                    tf.RegisterGradient(op_type)(_no_gradient(op_type))
                except KeyError:  # registered already by an earlier import of this file
                    pass
            _module = module
    return _module


def cpu_gemm_kernel(dtype="float32"):
    """The kernel the CPU encoder's GEMMs use in this process for `dtype`. float32 (and float16):
    "amx" (bf16 tiles on operands split into three bf16 parts, fp32-level results), "avx512",
    "avx2" or "eigen". bfloat16 computes in bfloat16 on AMX ("amx_bf16": one part) and, with
    $FASTBERT_CPU_BF16_DOT=1 on AVX512-BF16 CPUs, "avx512_bf16" (vdpbf16ps: slower than the float32
    kernel on Sapphire Rapids); elsewhere it is the float32 kernel's name (bfloat16 weights widened).
    Chosen once per process: the best the CPU and OS support, at most $FASTBERT_CPU_ISA (avx2,
    avx512 or amx)."""
    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
    lib = _c_library()
    lib.fastbert_cpu_gemm_kernel.restype = ctypes.c_char_p
    lib.fastbert_cpu_bf16_gemm_kernel.restype = ctypes.c_char_p
    name = lib.fastbert_cpu_bf16_gemm_kernel() if dtype == "bfloat16" else None
    return (name or lib.fastbert_cpu_gemm_kernel()).decode()


def cpu_int8_gemm_kernel():
    """The kernel the CPU int8 modes' integer GEMMs use in this process: "amx_int8" (tdpbssd tiles),
    "avx512_vnni" (vpdpbusd), "avx2" (pmaddwd) or "scalar"; all exact. Chosen once per process, the
    best the CPU and OS support, at most $FASTBERT_CPU_ISA (avx2 caps at avx2, avx512 at VNNI)."""
    lib = _c_library()
    lib.fastbert_cpu_int8_gemm_kernel.restype = ctypes.c_char_p
    return lib.fastbert_cpu_int8_gemm_kernel().decode()


def _c_library():
    load_op_library()
    return ctypes.CDLL(library_path())  # the library TF loaded (same path, same handle)


def row_buckets(capacity):
    """The row counts a remove_padding call of B * S = capacity rows runs over on the GPU, ascending:
    its token count rounded up to the next of these (64 rows up to 2048 tokens, then 1/32 of the next
    power of two). Calls whose token counts share a bucket replay one CUDA graph."""
    capacity = int(capacity)
    if capacity < 0:
        raise ValueError(f"capacity must be >= 0, got {capacity}")
    fn = _c_library().fastbert_row_buckets
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_int64), ctypes.c_int]
    n = fn(capacity, None, 0)
    out = (ctypes.c_int64 * max(n, 1))()
    fn(capacity, out, n)
    return [int(v) for v in out[:n]]


def warmup_lengths(batch, seq_len, every_bucket=True):
    """Length vectors ([batch] int32) that reach every GPU row bucket of batch * seq_len tokens,
    largest first (one vector of full lengths if not every_bucket): what warm-ups call with."""
    import numpy as np
    out = []
    for tokens in (row_buckets(batch * seq_len)[::-1] if every_bucket else [batch * seq_len]):
        lengths = np.zeros([batch], np.int32)  # `tokens` real tokens: full sequences, then the rest
        lengths[:tokens // seq_len] = seq_len
        if tokens % seq_len:
            lengths[tokens // seq_len] = tokens % seq_len
        out.append(lengths)
    return out


def gpu_cache_stats():
    """The GPU runner's caches, one dict per (GPU, stream) context used so far in this process:
    scratch bytes, pinned bytes, GEMM plans, CUDA graph keys and executables, with their bounds
    (`*_max`) and counters (replays, captures, direct calls, evictions). [] without CUDA."""
    import json
    lib = _c_library()
    if not hasattr(lib, "fastbert_gpu_cache_stats"):
        return []
    fn = lib.fastbert_gpu_cache_stats
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char_p, ctypes.c_int]
    size = 1 << 14
    while True:  # the text can grow between calls (a new context)
        buf = ctypes.create_string_buffer(size)
        need = fn(buf, size)
        if need <= size:
            return json.loads(buf.value.decode())
        size = need * 2


def as_int32(values, what="sequence_length"):
    """Integer lengths (any integer dtype) as the int32 the ops take. Values outside int32 are an
    InvalidArgument error naming `what` (a plain cast would wrap 2**32 + 5 to 5); the ops check the
    rest (0 <= length <= S)."""
    t = tf.convert_to_tensor(values)
    if not t.dtype.is_integer:
        raise ValueError(f"{what} must be integers, got {t.dtype.name}")
    if t.dtype == tf.int32:
        return t
    checks = [tf.debugging.assert_less_equal(t, tf.cast(2**31 - 1, t.dtype), message=f"{what} above int32 range")]
    if not t.dtype.is_unsigned:
        checks.append(tf.debugging.assert_greater_equal(t, tf.cast(0, t.dtype), message=f"{what} is negative"))
    with tf.control_dependencies(checks):
        return tf.cast(t, tf.int32)


@tf.autograph.experimental.do_not_convert
def remove_padding(hidden_states, sequence_length, name=None):
    """[B, S, H] + lengths [B] -> (packed [T, H], cu_seqlens [B + 1] int32), T = sum(lengths)."""
    lib = load_op_library()
    return lib.remove_padding(hidden_states, as_int32(sequence_length), name=name)


@tf.autograph.experimental.do_not_convert
def rebuild_padding(packed, cu_seqlens, max_seq_len, name=None):
    """Inverse of remove_padding: packed [T, H] -> [B, max_seq_len, H] with zeros in the padding."""
    lib = load_op_library()
    return lib.rebuild_padding(packed, as_int32(cu_seqlens, "cu_seqlens"), as_int32(max_seq_len, "max_seq_len"),
                               name=name)


def _is_variable(t):
    return isinstance(t, tf.Variable) and hasattr(t, "handle")


@tf.autograph.experimental.do_not_convert
def fast_bert_encoder(hidden_states, sequence_length, layer_weights, quant_scales=(), *, num_layer, head_num,
                      size_per_head, inter_size, remove_padding=False, activation="gelu_tanh",
                      layer_norm_eps=1e-12, q_scaling=1.0, int8_mode=0, name=None):
    """The raw op. layer_weights maps each name of weights.OP_INPUT_NAMES to a list of num_layer
    per-layer tensors or to a one-element list holding them stacked ([num_layer, ...]); tensors or
    resource variables. When every weight is a resource variable the op reads them itself (no
    ReadVariableOp per weight per call)."""
    lib = load_op_library()
    from fastbert_tf.weights import OP_INPUT_NAMES
    hidden_states = tf.convert_to_tensor(hidden_states)
    lists = {n: list(layer_weights[n]) for n in OP_INPUT_NAMES}
    quant_scales = list(quant_scales)
    as_resources = all(_is_variable(t) for n in OP_INPUT_NAMES for t in lists[n]) and \
        all(_is_variable(t) for t in quant_scales)
    kwargs = {}
    for n in OP_INPUT_NAMES:
        want = tf.int8 if (int8_mode and n.endswith("_kernel")) else hidden_states.dtype
        for layer, t in enumerate(lists[n]):
            if t.dtype.base_dtype != want:
                raise ValueError(f"{n}[{layer}] is {t.dtype.base_dtype.name}; with hidden_states "
                                 f"{hidden_states.dtype.name} and int8_mode={int8_mode} it must be {want.name}")
        kwargs[n] = [t.handle if as_resources else tf.convert_to_tensor(t) for t in lists[n]]
    quant = [t.handle if as_resources else tf.convert_to_tensor(t) for t in quant_scales]
    return lib.fast_bert_encoder(
        hidden_states=hidden_states, sequence_length=as_int32(sequence_length), quant_scales=quant,
        num_layer=num_layer, head_num=head_num, size_per_head=size_per_head, inter_size=inter_size, remove_padding=remove_padding,
        activation=activation, layer_norm_eps=layer_norm_eps, q_scaling=q_scaling, int8_mode=int8_mode,
        name=name, **kwargs)
