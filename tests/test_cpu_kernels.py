"""The CPU encoder on each GEMM kernel this machine has (AVX2, AVX-512, AMX): the kernel is picked
once per process, so each runs the CPU encoder tests in a process of its own with
FASTBERT_CPU_ISA capping the choice."""
import os
import subprocess
import sys

import pytest

import fastbert_tf as fb

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = ["avx2", "avx512", "amx"]


def _env(kernel):
    return dict(os.environ, FASTBERT_CPU_ISA=kernel)


def _kernel_in_process(kernel):
    out = subprocess.run([sys.executable, "-c", "import fastbert_tf as fb; print(fb.cpu_gemm_kernel())"],
                         env=_env(kernel), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_kernel_is_reported():
    assert fb.cpu_gemm_kernel() in ("amx", "avx512", "avx2", "eigen")


@pytest.mark.parametrize("kernel", KERNELS)
def test_encoder_on_kernel(kernel):
    if kernel == fb.cpu_gemm_kernel():
        pytest.skip(f"{kernel} is this process's kernel: test_encoder.py runs on it here")
    got = _kernel_in_process(kernel)
    if got != kernel:
        pytest.skip(f"this CPU (or OS) does not run the {kernel} kernel; the best it has is {got}")
    # The float32 and reduced-precision comparisons and the fp32-level accuracy check, CPU only.
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          os.path.join(HERE, "test_encoder.py"), "-k", "cpu"],
                         env=_env(kernel), capture_output=True, text=True, timeout=1200, cwd=HERE)
    assert out.returncode == 0, f"{kernel}:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}"
    assert " passed" in out.stdout
