"""tf.distribute with the op: MirroredStrategy over two logical CPUs, and over one GPU split in two,
gives exactly what one device computes for the same slices (on the CPU also exactly the whole-batch
output; on the GPU that is within the dtype's tolerance: cuBLAS picks algorithms by row count).
tests/distribute_check.py runs in a fresh process each time."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def check(kind, dtype, rp):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if kind == "CPU":
        env["CUDA_VISIBLE_DEVICES"] = ""
    out = subprocess.run([sys.executable, os.path.join(HERE, "distribute_check.py"), kind, dtype,
                          "rp" if rp else "padded"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "max |mirrored - single, same slices| = 0.000e+00" in out.stdout


@pytest.mark.parametrize("rp", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_mirrored_two_logical_cpus(dtype, rp):
    check("CPU", dtype, rp)


@pytest.mark.gpu
@pytest.mark.parametrize("rp", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_mirrored_one_gpu_split_in_two(dtype, rp):
    check("GPU", dtype, rp)
