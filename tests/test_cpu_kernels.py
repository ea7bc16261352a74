"""The CPU encoder on each GEMM kernel this machine has (float: AVX2, AVX-512, AMX; int8: AVX2,
AVX512-VNNI, AMX-INT8): the kernels are picked once per process, so each family runs its tests in a
process of its own with FASTBERT_CPU_ISA capping the choice."""
import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import fastbert_tf as fb
from fastbert_tf import ops

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = ["avx2", "avx512", "amx"]
INT8_KERNEL = {"avx2": "avx2", "avx512": "avx512_vnni", "amx": "amx_int8"}  # what each cap wants


def _env(kernel, base=None):
    return dict(base or os.environ, FASTBERT_CPU_ISA=kernel)


def _kernels_in_process(kernel, base_env=None):
    out = subprocess.run([sys.executable, "-c", "import fastbert_tf as fb; print(fb.cpu_gemm_kernel(), "
                          "fb.cpu_int8_gemm_kernel(), fb.cpu_gemm_kernel('bfloat16'))"],
                         env=_env(kernel, base_env), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1].split()


def _pytest_in_process(kernel, *args, env=None):
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args],
                         env=_env(kernel, env), capture_output=True, text=True, timeout=1200, cwd=HERE)
    assert out.returncode == 0, f"{kernel}:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}"
    assert " passed" in out.stdout


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []


def test_kernel_is_reported():
    assert fb.cpu_gemm_kernel() in ("amx", "avx512", "avx2", "eigen")
    assert fb.cpu_int8_gemm_kernel() in ("amx_int8", "avx512_vnni", "avx2", "scalar")
    assert fb.cpu_gemm_kernel("bfloat16") in ("amx_bf16", "avx512_bf16", "avx512", "avx2", "eigen")
    with pytest.raises(ValueError, match="dtype must be"):
        fb.cpu_gemm_kernel("int8")


def test_bfloat16_on_amx_computes_in_bfloat16():
    """bfloat16 GEMMs run as one bfloat16 tile product on AMX (their accuracy: test_encoder.py's
    test_cpu_bfloat16_accuracy_beats_tensorflow_bfloat16, run on every kernel by test_encoder_on_kernel)."""
    got, _, bf16 = _kernels_in_process("amx")
    if got != "amx":
        pytest.skip(f"this CPU (or OS) does not run the amx kernel; the best it has is {got}")
    assert bf16 == "amx_bf16"


def test_bfloat16_dot_kernel():
    """The opt-in vdpbf16ps kernel (FASTBERT_CPU_BF16_DOT=1, avx512 class): chosen when asked for on a
    CPU with AVX512-BF16, and the CPU bfloat16 encoder tests pass on it."""
    env = dict(os.environ, FASTBERT_CPU_BF16_DOT="1")
    got = _kernels_in_process("avx512", env)
    if got[0] != "avx512":
        pytest.skip(f"this CPU (or OS) does not run the avx512 kernel; the best it has is {got[0]}")
    if "avx512_bf16" not in _cpu_flags():
        assert got[2] == "avx512", "no AVX512-BF16: bfloat16 weights widened for the float32 kernel"
        pytest.skip("this CPU has no AVX512-BF16: the vdpbf16ps kernel cannot run here")
    assert got[2] == "avx512_bf16"
    _pytest_in_process("avx512", os.path.join(HERE, "test_encoder.py"), "-k", "cpu and bfloat16", env=env)


@pytest.mark.parametrize("kernel", KERNELS)
def test_encoder_on_kernel(kernel):
    if kernel == fb.cpu_gemm_kernel():
        pytest.skip(f"{kernel} is this process's kernel: test_encoder.py runs on it here")
    got = _kernels_in_process(kernel)[0]
    if got != kernel:
        pytest.skip(f"this CPU (or OS) does not run the {kernel} kernel; the best it has is {got}")
    # The float32 and reduced-precision comparisons and the fp32-level accuracy check, CPU only.
    _pytest_in_process(kernel, os.path.join(HERE, "test_encoder.py"), "-k", "cpu")


@pytest.mark.parametrize("kernel", KERNELS)
def test_int8_on_kernel(kernel):
    want = INT8_KERNEL[kernel]
    if want == fb.cpu_int8_gemm_kernel():
        pytest.skip(f"{want} is this process's int8 kernel: test_int8.py and the igemm test run on it here")
    got = _kernels_in_process(kernel)[1]
    if got != want:
        pytest.skip(f"this CPU (or OS) does not run the {want} int8 kernel; the best it has is {got}")
    _pytest_in_process(kernel, os.path.join(HERE, "test_int8.py"), os.path.join(HERE, "test_cpu_kernels.py"),
                       "-k", "not gpu and not on_kernel")


# Edges of every kernel's blocking: m around 12 (VNNI rows) and 32 (AMX), n around 32, k around 4,
# 64 (a k block) and 512, and the empty products.
IGEMM_SHAPES = [(1, 1, 1), (0, 5, 7), (5, 0, 7), (4, 6, 0), (3, 5, 7), (12, 32, 64), (13, 33, 65), (31, 31, 63),
                (32, 32, 64), (33, 64, 128), (7, 129, 1000), (100, 200, 300), (65, 96, 513), (1, 768, 768),
                (64, 3072, 64), (45, 40, 3072)]


@pytest.mark.parametrize("shape", IGEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_igemm_exact(shape):
    """The int8 GEMM of the CPU int8 modes against numpy's int64 product: bit-exact, with the extreme
    values (-128, 127) included, on 1 and 2 threads."""
    m, n, k = shape
    lib = ops._c_library()
    fn = lib.fastbert_cpu_igemm
    fn.argtypes = [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 3 + [ctypes.c_int]
    rng = np.random.default_rng(m * 1_000_003 + n * 1009 + k)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    if a.size:
        a.flat[0] = -128
        a.flat[-1] = 127
    if b.size:
        b.flat[0] = -128
        b.flat[-1] = -128
    ref = a.astype(np.int64) @ b.astype(np.int64)
    for threads in (1, 2):
        c = np.full((m, n), 0x5A5A5A5A, np.int32)  # every entry must be written
        assert fn(m, n, k, a.ctypes.data, b.ctypes.data, c.ctypes.data, threads) == 0
        np.testing.assert_array_equal(c, ref, err_msg=f"{fb.cpu_int8_gemm_kernel()}, {threads} threads")
