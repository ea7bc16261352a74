"""ckpt_type_convert (FP16) and ckpt_quantization (INT8): round trips, formats, safety, errors, and
MRPC accuracy of INT8 through run_classifier_wrap."""
import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

import fastbert_tf as fb
from checkpoint_tools import ckpt_io, ckpt_quantization, ckpt_type_convert, quantization
from conftest import MRPC
from fastbert_tf import int8, modeling
from test_glue_squad import REFERENCE, classifier, results, run


def save(values, prefix):
    """A plain name-based checkpoint (not a tool's output) of {name: array}."""
    return modeling.save_checkpoint({n: tf.Variable(np.asarray(v), name=n) for n, v in values.items()}, prefix)


def files_hash(prefix):
    d, base = os.path.split(prefix)
    h = hashlib.sha256()
    for f in sorted(os.listdir(d)):
        if f.startswith(base + "."):
            h.update(open(os.path.join(d, f), "rb").read())
    return h.hexdigest()


@pytest.fixture(scope="module")
def trained_like(converted_minilm, tmp_path_factory):
    """The converted model plus optimizer slots and a global_step, as a training run leaves them."""
    reader = tf.train.load_checkpoint(f"{converted_minilm}/bert_model.ckpt")
    values = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    for n in list(values)[:5]:
        values[n + "/adam_m"] = np.zeros_like(values[n])
        values[n + "/adam_v"] = np.ones_like(values[n])
    values["global_step"] = np.int64(345)
    prefix = str(tmp_path_factory.mktemp("trained") / "model.ckpt-345")
    save(values, prefix)
    return prefix


def test_fp16_round_trip(trained_like, converted_minilm, tmp_path):
    before = files_hash(trained_like)
    out = str(tmp_path / "fp16" / "model.ckpt")
    summary = ckpt_type_convert.convert(trained_like, out)
    assert files_hash(trained_like) == before
    assert summary["dropped"] == 10 and summary["converted"] == 105 and summary["kept"] == 1  # global_step
    assert summary["bytes_after"] < 0.55 * summary["bytes_before"]
    r32, r16 = tf.train.load_checkpoint(trained_like), tf.train.load_checkpoint(out)
    names16 = set(r16.get_variable_to_shape_map())
    assert names16 == {n for n in r32.get_variable_to_shape_map() if not n.endswith(("adam_m", "adam_v"))}
    assert r16.get_variable_to_dtype_map()["bert/encoder/layer_0/attention/self/query/kernel"] == tf.float16
    assert r16.get_tensor("global_step") == 345
    # the op on the FP16 checkpoint stays within fp16 tolerance of FP32
    cfg = f"{converted_minilm}/bert_config.json"
    e32 = fb.BertEncoder.from_checkpoint(trained_like, bert_config_file=cfg)
    e16 = fb.BertEncoder.from_checkpoint(out, bert_config_file=cfg, dtype="float16")
    x = np.random.default_rng(0).standard_normal((2, 16, 384)).astype(np.float32)
    lens = np.array([16, 9], np.int32)
    o32 = e32(tf.constant(x), lens).numpy()
    o16 = e16(tf.constant(x, tf.float16), lens).numpy().astype(np.float32)
    assert np.linalg.norm(o16 - o32) / np.linalg.norm(o32) < 1e-2
    with pytest.raises(ValueError, match="exists"):
        ckpt_type_convert.convert(trained_like, out)
    with pytest.raises(ValueError, match="contains the input"):
        ckpt_type_convert.convert(trained_like, trained_like, overwrite=True)
    kept = ckpt_type_convert.convert(trained_like, str(tmp_path / "slots" / "m.ckpt"), keep_optimizer_slots=True)
    assert kept["dropped"] == 0 and kept["kept"] == 11


def test_quantization_errors(trained_like, converted_minilm, tmp_path):
    config = modeling.BertConfig.from_json_file(f"{converted_minilm}/bert_config.json")
    out = str(tmp_path / "q" / "model.ckpt")
    with pytest.raises(ValueError, match="has no range for '.*' \\(layer 0\\) and 23 more: give calibration data"):
        ckpt_quantization.quantize_checkpoint(trained_like, out, 1, config)
    with pytest.raises(ValueError, match="int8_mode must be 1 or 2"):
        ckpt_quantization.quantize_checkpoint(trained_like, out, 3, config)
    other = str(tmp_path / "other" / "model.ckpt")
    save({"dense/kernel": np.ones((2, 2), np.float32)}, other)
    with pytest.raises(ValueError, match="is not a BERT checkpoint"):
        ckpt_quantization.quantize_checkpoint(other, out, 1, config)
    os.makedirs(os.path.dirname(out))
    open(out + ".index", "w").close()
    with pytest.raises(ValueError, match="exists and is not an output of this tool"):
        ckpt_quantization.quantize_checkpoint(trained_like, out, 1, config)
    assert not os.path.exists(out + ".data-00000-of-00001")
    proc = run("checkpoint_tools.ckpt_quantization", f"--init_checkpoint={trained_like}",
               f"--quantized_checkpoint={tmp_path}/cli/model.ckpt", "--int8_mode=2",
               f"--bert_config_file={converted_minilm}/bert_config.json")
    assert proc.returncode != 0 and "give calibration data" in proc.stderr


def test_qat_ranges_are_used(converted_minilm, tmp_path):
    """A checkpoint with NVIDIA's quantizer variables quantizes without calibration data."""
    reader = tf.train.load_checkpoint(f"{converted_minilm}/bert_model.ckpt")
    values = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    rng = np.random.default_rng(0)
    expected = {}
    for layer in range(6):
        base = f"bert/encoder/layer_{layer}/"
        for name, qnames in quantization.QAT_NAMES.items():
            amax = np.float32(rng.uniform(1, 5))
            expected[layer, name] = amax
            for q in qnames:
                values[base + q + "/quant_max"] = amax
                values[base + q + "/quant_min"] = -amax
    prefix = str(tmp_path / "qat" / "model.ckpt")
    save(values, prefix)
    config = modeling.BertConfig.from_json_file(f"{converted_minilm}/bert_config.json")
    out = str(tmp_path / "int8" / "model.ckpt")
    ckpt_quantization.quantize_checkpoint(prefix, out, 2, config)
    r = tf.train.load_checkpoint(out)
    assert not any("_quantizer" in n for n in r.get_variable_to_shape_map())
    assert r.get_tensor(int8.INT8_MODE_NAME) == 2
    for (layer, name), amax in expected.items():
        got = r.get_tensor(f"bert/encoder/layer_{layer}/quant/{name}_amax")
        np.testing.assert_allclose(got, amax)  # per-channel names broadcast the per-tensor QAT range
    assert r.get_variable_to_dtype_map()["bert/encoder/layer_3/output/dense/kernel"] == tf.int8


@pytest.fixture(scope="module")
def int8_checkpoints(trained_like, converted_minilm, tmp_path_factory):
    """FP32 -> FP16 -> INT8 (PTQ on 200 MRPC train examples), through the command lines."""
    d = tmp_path_factory.mktemp("int8")
    fp16 = str(d / "fp16" / "model.ckpt")
    proc = run("checkpoint_tools.ckpt_type_convert", f"--init_checkpoint={trained_like}", f"--fp16_checkpoint={fp16}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = {}
    for mode in (1, 2):
        out[mode] = str(d / f"mode{mode}" / "model.ckpt")
        proc = run("checkpoint_tools.ckpt_quantization", f"--init_checkpoint={fp16}", f"--quantized_checkpoint={out[mode]}",
                   f"--int8_mode={mode}", f"--bert_config_file={converted_minilm}/bert_config.json",
                   f"--calib_data={MRPC}", "--calib_task=mrpc", f"--vocab_file={converted_minilm}/vocab.txt",
                   "--calib_batches=25", "--calib_batch_size=8")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "qkv_input_amax" in proc.stdout  # the summary
    return out


@pytest.mark.parametrize("mode,allowed", [(1, 0.010), (2, 0.020)])
def test_mrpc_int8_accuracy(int8_checkpoints, converted_minilm, tmp_path, mode, allowed):
    out = str(tmp_path / "eval")
    proc = classifier(converted_minilm, out, "--do_eval", f"--int8_mode={mode}", checkpoint=int8_checkpoints[mode])
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = results(out)
    assert res["int8_mode"] == str(mode)
    assert abs(float(res["eval_accuracy"]) - REFERENCE) <= allowed, res


def test_wrong_mode_is_refused(int8_checkpoints, converted_minilm, tmp_path):
    proc = classifier(converted_minilm, str(tmp_path / "e"), "--do_eval", "--int8_mode=2", checkpoint=int8_checkpoints[1])
    assert proc.returncode != 0 and "quantized for int8_mode 1, not 2" in proc.stderr
    proc = classifier(converted_minilm, str(tmp_path / "f"), "--do_eval", checkpoint=int8_checkpoints[1])
    assert proc.returncode != 0 and "int8" in proc.stderr
