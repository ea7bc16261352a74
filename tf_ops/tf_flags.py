"""Prints make variables for building against the installed TensorFlow (used by the Makefile)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

print("TF_COMPILE_FLAGS :=", " ".join(tf.sysconfig.get_compile_flags()))
print("TF_LINK_FLAGS :=", " ".join(tf.sysconfig.get_link_flags()))
print("TF_INCLUDE :=", tf.sysconfig.get_include())
print("TF_LIB_DIR :=", tf.sysconfig.get_lib())
