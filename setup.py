"""pip install . builds libfastbert_ops.so (CPU, plus CUDA when nvcc is found) with the Makefile
against the TensorFlow of the installing interpreter, and ships it inside fastbert_tf/."""
import os
import subprocess
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildOpLibrary(build_py):
    def run(self):
        if not os.environ.get("FASTBERT_SKIP_BUILD"):
            subprocess.check_call(["make", "lib", f"PYTHON={sys.executable}"],
                                  cwd=os.path.dirname(os.path.abspath(__file__)))
        super().run()


setup(
    name="fastbert_tf",
    version="0.1.0",
    description="Fast BERT inference ops for TensorFlow 2.21 (CPU and CUDA)",
    packages=find_packages(include=["fastbert_tf*", "checkpoint_tools*", "glue_squad*", "benchmarks*"]),
    package_data={"fastbert_tf": ["libfastbert_ops.so"]},
    python_requires=">=3.9",
    install_requires=["tensorflow==2.21.*", "numpy", "absl-py", "bert-tensorflow==1.0.4", "safetensors", "tqdm"],
    cmdclass={"build_py": BuildOpLibrary},
)
