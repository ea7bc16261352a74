"""checkpoint_tools.convert_hf: names, layouts, activation, both HF formats, safety, errors."""
import collections
import hashlib
import json
import os
import pickle
import shutil
import sys
import types
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from checkpoint_tools import convert_hf
from conftest import MINILM, needs_shared

pytestmark = needs_shared


def dir_hash(path):
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as f:
            h.update(name.encode() + f.read())
    return h.hexdigest()


def test_shared_model(tmp_path):
    before = dir_hash(MINILM)
    out = tmp_path / "m"
    summary = convert_hf.convert(MINILM, str(out))
    assert dir_hash(MINILM) == before  # input untouched
    assert summary["heads"] == ["output_weights"] and summary["layers"] == 6
    cfg = json.load(open(out / "bert_config.json"))
    assert cfg["hidden_act"] == "gelu_erf" and cfg["hidden_size"] == 384 and cfg["layer_norm_eps"] == 1e-12
    assert open(out / "vocab.txt").read() == open(os.path.join(MINILM, "vocab.txt")).read()
    hf = load_file(os.path.join(MINILM, "model.safetensors"))
    reader = tf.train.load_checkpoint(str(out / "bert_model.ckpt"))
    np.testing.assert_array_equal(reader.get_tensor("bert/encoder/layer_3/attention/self/key/kernel"),
                                  hf["bert.encoder.layer.3.attention.self.key.weight"].T)
    np.testing.assert_array_equal(reader.get_tensor("bert/encoder/layer_5/output/LayerNorm/gamma"),
                                  hf["bert.encoder.layer.5.output.LayerNorm.weight"])
    np.testing.assert_array_equal(reader.get_tensor("output_weights"), hf["classifier.weight"])
    np.testing.assert_array_equal(reader.get_tensor("bert/pooler/dense/kernel"), hf["bert.pooler.dense.weight"].T)
    names = set(reader.get_variable_to_shape_map())
    assert len(names) == 5 + 16 * 6 + 2 + 2


def fake_torch_bin(path, state):
    """Writes state (name -> float32 array) as torch.save would: a zip with a pickle whose tensors
    are torch._utils._rebuild_tensor_v2 calls on persistent storages (torch itself is not needed)."""
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass
    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    torch.FloatStorage = FloatStorage

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called here")
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils

    class Storage:
        def __init__(self, key, n):
            self.key, self.n = key, n

    class Tensor:
        def __init__(self, key, array):
            self.key, self.array = key, array

        def __reduce__(self):
            a = self.array
            strides = [s // a.itemsize for s in a.strides]
            return _rebuild_tensor_v2, (Storage(self.key, a.size), 0, a.shape, tuple(strides), False,
                                        collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, obj.key, "cpu", obj.n) if isinstance(obj, Storage) else None

    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        import io
        buf = io.BytesIO()
        arrays = {n: np.ascontiguousarray(a, np.float32) for n, a in state.items()}
        Pickler(buf, protocol=2).dump(collections.OrderedDict(
            (n, Tensor(str(i), a)) for i, (n, a) in enumerate(arrays.items())))
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", buf.getvalue())
            for i, a in enumerate(arrays.values()):
                z.writestr(f"archive/data/{i}", a.tobytes())
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_pytorch_bin_matches_safetensors(tmp_path):
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    for name in ("config.json", "vocab.txt"):
        shutil.copy(os.path.join(MINILM, name), hf_dir / name)
    state = load_file(os.path.join(MINILM, "model.safetensors"))
    fake_torch_bin(str(hf_dir / "pytorch_model.bin"), state)
    convert_hf.convert(str(hf_dir), str(tmp_path / "from_bin"))
    convert_hf.convert(MINILM, str(tmp_path / "from_st"))
    a = tf.train.load_checkpoint(str(tmp_path / "from_bin" / "bert_model.ckpt"))
    b = tf.train.load_checkpoint(str(tmp_path / "from_st" / "bert_model.ckpt"))
    assert a.get_variable_to_shape_map() == b.get_variable_to_shape_map()
    for name in a.get_variable_to_shape_map():
        np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name))


def test_refuses_bad_input(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="exists"):
        convert_hf.convert(MINILM, str(out))
    with pytest.raises(ValueError, match="is not a directory"):
        convert_hf.convert(str(tmp_path / "missing"), str(tmp_path / "o2"))
    hf = tmp_path / "hf"
    hf.mkdir()
    with pytest.raises(ValueError, match="config.json does not exist"):
        convert_hf.convert(str(hf), str(tmp_path / "o3"))
    shutil.copy(os.path.join(MINILM, "vocab.txt"), hf / "vocab.txt")
    cfg = json.load(open(os.path.join(MINILM, "config.json")))
    json.dump(dict(cfg, model_type="roberta"), open(hf / "config.json", "w"))
    with pytest.raises(ValueError, match="model_type 'roberta'"):
        convert_hf.convert(str(hf), str(tmp_path / "o4"))
    json.dump(dict(cfg, hidden_act="swish"), open(hf / "config.json", "w"))
    with pytest.raises(ValueError, match="hidden_act 'swish'"):
        convert_hf.convert(str(hf), str(tmp_path / "o5"))
    json.dump(cfg, open(hf / "config.json", "w"))
    with pytest.raises(ValueError, match="neither model.safetensors nor pytorch_model.bin"):
        convert_hf.convert(str(hf), str(tmp_path / "o6"))
    save_file({"bert.encoder.layer.0.attention.self.rotary.weight": np.ones((2, 2), np.float32)},
              str(hf / "model.safetensors"))
    with pytest.raises(ValueError, match="unexpected parameter 'bert.encoder.layer.0.attention.self.rotary.weight'"):
        convert_hf.convert(str(hf), str(tmp_path / "o7"))
    assert not any(".fastbert-" in p.name for p in tmp_path.iterdir())  # no temporaries left
