"""The checkpoint tools and scripts under bad input: no data loss under any flags (symlinks, hard
links, parent/child paths, kills between steps, stale temporaries), one-line errors with exit code
2 (usage) or 1 (data), config/checkpoint consistency both ways, --help, quiet start-up."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from checkpoint_tools import publish
from conftest import MINILM, MRPC
from test_glue_squad import ROOT, run


def tree_hash(path):
    """sha256 over every file below path (names and bytes), following nothing."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            h.update(os.path.relpath(p, path).encode())
            with open(p, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def one_line_error(proc, code, *needles):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def leftovers(parent):
    return sorted(n for n in os.listdir(parent) if ".fastbert-" in n)


def convert(*args, env=None):
    return run("checkpoint_tools.ckpt_type_convert", *args) if env is None else run_env(
        "checkpoint_tools.ckpt_type_convert", env, *args)


def run_env(module, env, *args):
    full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", **env)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture()
def model_copy(converted_minilm, tmp_path):
    """A private copy of the converted model (the tests may try to damage it)."""
    d = tmp_path / "in" / "minilm"
    shutil.copytree(converted_minilm, d)
    return str(d)


# ------------------------------------------------------------------------- paths

def test_output_containing_the_input_is_refused(tmp_path):
    """convert_hf --hf_dir out/models/minilm --output_dir out --overwrite used to delete all of out/."""
    out = tmp_path / "out"
    src = out / "models" / "minilm"
    shutil.copytree(MINILM, src)
    before = tree_hash(out)
    for target in (out, src, src / "sub", tmp_path / "link"):
        if target.name == "link":
            os.symlink(src, target)
        p = run("checkpoint_tools.convert_hf", f"--hf_dir={src}", f"--output_dir={target}", "--overwrite")
        one_line_error(p, 2, "--output_dir")
    assert tree_hash(out) == before


def test_symlinked_output_never_writes_the_input(model_copy, tmp_path):
    """ckpt_type_convert / ckpt_quantization with the output reaching the input through a symlink."""
    before = tree_hash(model_copy)
    link = tmp_path / "link"
    os.symlink(model_copy, link)
    p = convert(f"--init_checkpoint={model_copy}/bert_model.ckpt", f"--fp16_checkpoint={link}/bert_model.ckpt",
                "--overwrite")
    one_line_error(p, 2, "--fp16_checkpoint", "input")
    p = run("checkpoint_tools.ckpt_quantization", f"--init_checkpoint={model_copy}/bert_model.ckpt",
            f"--quantized_checkpoint={link}/bert_model.ckpt", "--int8_mode=1", "--overwrite")
    one_line_error(p, 2, "--quantized_checkpoint")
    assert tree_hash(model_copy) == before


def test_overwrite_replaces_only_the_tools_own_output(model_copy, tmp_path):
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    p = convert(f"--init_checkpoint={model_copy}/bert_model.ckpt", f"--fp16_checkpoint={other}/model.ckpt",
                "--overwrite")
    one_line_error(p, 2, "not an output of this tool")
    assert (other / "notes.txt").read_text() == "keep me" and sorted(os.listdir(other)) == ["notes.txt"]
    out = tmp_path / "fp16"
    assert convert(f"--init_checkpoint={model_copy}/bert_model.ckpt", f"--fp16_checkpoint={out}/model.ckpt").returncode == 0
    # An output of another tool is not this tool's either.
    p = run("checkpoint_tools.ckpt_quantization", f"--init_checkpoint={model_copy}/bert_model.ckpt",
            f"--quantized_checkpoint={out}/model.ckpt", "--int8_mode=1", "--overwrite")
    one_line_error(p, 2, "written by ckpt_type_convert")
    one_line_error(convert(f"--init_checkpoint={model_copy}/bert_model.ckpt", f"--fp16_checkpoint={out}/model.ckpt"),
                   2, "--overwrite")
    first = tree_hash(out)
    p = convert(f"--init_checkpoint={model_copy}/bert_model.ckpt", f"--fp16_checkpoint={out}/model.ckpt",
                "--overwrite", "--to=bfloat16")
    assert p.returncode == 0, p.stderr
    assert tree_hash(out) != first
    reader = tf.train.load_checkpoint(str(out))  # the directory itself: the state file names the prefix
    assert reader.get_variable_to_dtype_map()["bert/pooler/dense/kernel"] == tf.bfloat16
    assert leftovers(tmp_path) == []


def test_hard_linked_output_is_the_input(model_copy, tmp_path):
    out = tmp_path / "fp16"
    assert convert(f"--init_checkpoint={model_copy}/bert_model.ckpt", f"--fp16_checkpoint={out}/model.ckpt").returncode == 0
    os.link(f"{model_copy}/bert_model.ckpt.index", out / "linked.index")
    before = tree_hash(model_copy)
    p = convert(f"--init_checkpoint={model_copy}/bert_model.ckpt", f"--fp16_checkpoint={out}/model.ckpt", "--overwrite")
    one_line_error(p, 2, "hard link")
    assert tree_hash(model_copy) == before


def test_publish_rules_in_process(tmp_path):
    """publish.Output directly: parent/child checks both ways, the marker, a clean failure."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    for dest, match in ((src, "is the input"), (tmp_path, "contains the input"), (src / "x", "inside the input")):
        with pytest.raises(ValueError, match=match):
            publish.Output("t", str(dest), [str(src)])
    out = publish.Output("t", str(tmp_path / "o"), [str(src)])
    with pytest.raises(RuntimeError):
        with out:
            (tmp_path / "o").exists()
            open(out.path("f"), "w").write("x")
            raise RuntimeError("fails while writing")
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []
    with publish.Output("t", str(tmp_path / "o"), [str(src)]) as out:
        open(out.path("f"), "w").write("x")
        out.publish([str(src)])
    marker = json.load(open(tmp_path / "o" / publish.MARKER))
    assert marker["tool"] == "t" and marker["files"] == ["f"]
    with pytest.raises(ValueError, match="written by t"):
        publish.Output("other", str(tmp_path / "o"), [str(src)], overwrite=True)


# ------------------------------------------------------------------------- kills and temporaries

@pytest.mark.parametrize("existing", [False, True])
def test_kill_before_publishing_leaves_the_destination_as_it_was(model_copy, tmp_path, existing):
    out = tmp_path / "fp16"
    args = [f"--init_checkpoint={model_copy}/bert_model.ckpt", f"--fp16_checkpoint={out}/model.ckpt", "--overwrite"]
    if existing:
        assert convert(*args).returncode == 0
    before = tree_hash(out) if existing else None
    p = convert(*args, env={"FASTBERT_TOOLS_KILL_AT": "written"})
    assert p.returncode == -9
    assert (tree_hash(out) == before) if existing else not out.exists()
    assert leftovers(tmp_path)  # the killed run's temporary and lock are left behind ...
    assert convert(*args).returncode == 0
    assert leftovers(tmp_path) == []  # ... and the next run deletes them
    assert tf.train.load_checkpoint(str(out / "model.ckpt")).get_tensor("bert/pooler/dense/bias").dtype == np.float16


def test_kill_after_the_exchange_leaves_the_new_output_complete(model_copy, tmp_path):
    out = tmp_path / "fp16"
    args = [f"--init_checkpoint={model_copy}/bert_model.ckpt", f"--fp16_checkpoint={out}/model.ckpt", "--overwrite"]
    assert convert(*args).returncode == 0
    p = convert(*args, "--to=bfloat16", env={"FASTBERT_TOOLS_KILL_AT": "exchanged"})
    assert p.returncode == -9
    reader = tf.train.load_checkpoint(str(out / "model.ckpt"))
    assert reader.get_variable_to_dtype_map()["bert/pooler/dense/bias"] == tf.bfloat16
    assert leftovers(tmp_path)  # the old output, not yet deleted
    assert convert(*args).returncode == 0 and leftovers(tmp_path) == []


def test_convert_hf_state_file_names_the_published_checkpoint(converted_minilm):
    assert open(os.path.join(converted_minilm, "checkpoint")).read().startswith('model_checkpoint_path: "bert_model.ckpt"')
    assert tf.train.latest_checkpoint(converted_minilm) == os.path.join(converted_minilm, "bert_model.ckpt")


# ------------------------------------------------------------------------- bad data

def truncated_copy(model_copy, tmp_path, which):
    d = tmp_path / f"trunc_{which}"
    shutil.copytree(model_copy, d)
    f = d / ("bert_model.ckpt.index" if which == "index" else "bert_model.ckpt.data-00000-of-00001")
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2])
    return str(d)


@pytest.mark.parametrize("which", ["data", "index"])
def test_truncated_checkpoint_is_one_line(model_copy, tmp_path, which):
    d = truncated_copy(model_copy, tmp_path, which)
    p = convert(f"--init_checkpoint={d}/bert_model.ckpt", f"--fp16_checkpoint={tmp_path}/o/model.ckpt")
    line = one_line_error(p, 1, f"{d}/bert_model.ckpt")
    if which == "data":
        assert "variable '" in line
    assert not (tmp_path / "o").exists()
    p = run("glue_squad.run_classifier_wrap", "--task_name=mrpc", f"--data_dir={MRPC}", f"--vocab_file={d}/vocab.txt",
            f"--bert_config_file={d}/bert_config.json", f"--init_checkpoint={d}/bert_model.ckpt",
            f"--output_dir={tmp_path}/ev", "--do_eval", "--max_seq_length=32")
    one_line_error(p, 1, "bert_model.ckpt")


def test_malformed_tsv_names_file_and_line(converted_minilm, tmp_path):
    data = tmp_path / "mrpc"
    data.mkdir()
    lines = open(os.path.join(MRPC, "dev.tsv"), encoding="utf-8").read().splitlines()
    lines[3] = "1\tjust two fields"
    (data / "dev.tsv").write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    args = ["--task_name=mrpc", f"--data_dir={data}", f"--vocab_file={converted_minilm}/vocab.txt",
            f"--bert_config_file={converted_minilm}/bert_config.json",
            f"--init_checkpoint={converted_minilm}/bert_model.ckpt", f"--output_dir={tmp_path}/ev", "--do_eval",
            "--max_seq_length=32"]
    one_line_error(run("glue_squad.run_classifier_wrap", *args), 1, "dev.tsv:4", "malformed")
    lines[3] = lines[4].replace(lines[4].split("\t")[0], "maybe", 1)
    (data / "dev.tsv").write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    one_line_error(run("glue_squad.run_classifier_wrap", *args), 1, "dev.tsv:4", "'maybe'")


def test_layer_count_mismatch_both_ways(converted_minilm, tmp_path):
    """A config with fewer layers than the checkpoint used to run a truncated model (exit 0)."""
    config = json.load(open(os.path.join(converted_minilm, "bert_config.json")))
    for layers in (4, 8):
        path = tmp_path / f"config_{layers}.json"
        path.write_text(json.dumps(dict(config, num_hidden_layers=layers)))
        p = run("glue_squad.run_classifier_wrap", "--task_name=mrpc", f"--data_dir={MRPC}",
                f"--vocab_file={converted_minilm}/vocab.txt", f"--bert_config_file={path}",
                f"--init_checkpoint={converted_minilm}/bert_model.ckpt", f"--output_dir={tmp_path}/ev", "--do_eval",
                "--max_seq_length=32")
        one_line_error(p, 1, "layer" if layers == 4 else "lacks")
        p = run("checkpoint_tools.ckpt_quantization", f"--init_checkpoint={converted_minilm}/bert_model.ckpt",
                f"--quantized_checkpoint={tmp_path}/q{layers}/model.ckpt", "--int8_mode=1",
                f"--bert_config_file={path}")
        one_line_error(p, 1, "6 encoder layers", f"num_hidden_layers is {layers}")


# ------------------------------------------------------------------------- the command line

@pytest.mark.parametrize("module,own", [
    ("glue_squad.run_classifier_wrap", ["--floatx", "--remove_padding", "--init_checkpoint", "--task_name",
                                        "--allow_unused_variables", "--verbose"]),
    ("glue_squad.run_squad_wrap", ["--floatx", "--remove_padding", "--init_checkpoint", "--predict_file"]),
    ("checkpoint_tools.ckpt_quantization", ["--init_checkpoint", "--quantized_checkpoint", "--calib_method"]),
    ("checkpoint_tools.ckpt_type_convert", ["--init_checkpoint", "--fp16_checkpoint", "--overwrite"]),
    ("checkpoint_tools.convert_hf", ["--hf_dir", "--output_dir"]),
    ("glue_squad.profile_transformer_inference", ["--int8_checkpoint", "--int8_mode", "--floatx"]),
])
def test_help_lists_own_flags(module, own):
    p = run(module, "--help")
    assert p.returncode == 0 and "Traceback" not in p.stderr
    text = p.stdout.replace("--[no]", "--")
    for flag in own:
        assert flag in text, (flag, text[-3000:])


def test_unknown_flag_and_quiet_start_up(converted_minilm, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    p = subprocess.run([sys.executable, "-m", "checkpoint_tools.ckpt_type_convert", "--no_such_flag=1"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    one_line_error(p, 2, "no_such_flag")
    p = subprocess.run([sys.executable, "-m", "checkpoint_tools.ckpt_type_convert",
                        f"--init_checkpoint={converted_minilm}/bert_model.ckpt",
                        f"--fp16_checkpoint={tmp_path}/o/model.ckpt"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stderr.strip() == "", p.stderr  # no oneDNN / CPU-feature / cuInit / deprecation lines


def test_profile_int8(converted_minilm, tmp_path):
    """--int8_mode used to be unusable: the float baseline rejected the quantized checkpoint."""
    q = tmp_path / "q" / "model.ckpt"
    p = run("checkpoint_tools.ckpt_quantization", f"--init_checkpoint={converted_minilm}/bert_model.ckpt",
            f"--quantized_checkpoint={q}", "--int8_mode=1", f"--calib_data={MRPC}", "--calib_task=mrpc",
            f"--vocab_file={converted_minilm}/vocab.txt", "--calib_batches=2", "--max_seq_length=64")
    assert p.returncode == 0, p.stderr
    base = ["glue_squad.profile_transformer_inference", f"--bert_config_file={converted_minilm}/bert_config.json",
            f"--init_checkpoint={converted_minilm}/bert_model.ckpt", "--batch_size=2", "--max_seq_length=32",
            "--num_iter=2"]
    p = run(*base, "--int8_mode=1", f"--int8_checkpoint={q}")
    assert p.returncode == 0, p.stderr
    assert "int8_mode 1" in p.stdout and "max |diff|" in p.stdout
    diff = float(p.stdout.split("max |diff| of sequence outputs")[1].split()[0])
    assert 0 < diff < 10.0  # int8 differs from float, but not wildly
    one_line_error(run(*base, "--int8_mode=1"), 2, "--int8_checkpoint")


# ------------------------------------------------------------------------- the Python API

def test_import_registers_the_ops():
    code = ("import fastbert_tf\nfrom tensorflow.python.framework import op_def_registry\n"
            "assert op_def_registry.get('FastBertEncoder') is not None\nprint('ok')")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""))
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


def test_int64_lengths_are_range_checked():
    import fastbert_tf as fb
    from conftest import random_weights
    rng = np.random.default_rng(3)
    w = random_weights(rng, 1, 64, 128)
    with tf.device("/CPU:0"):
        enc = fb.BertEncoder.from_weights(w, num_layer=1, head_num=4)
        x = rng.standard_normal((2, 8, 64)).astype(np.float32)
        ok32 = enc(x, np.array([8, 3], np.int32)).numpy()
        ok64 = enc(x, np.array([8, 3], np.int64)).numpy()
        np.testing.assert_array_equal(ok32, ok64)
        with pytest.raises(tf.errors.InvalidArgumentError, match="int32 range"):
            enc(x, np.array([8, 2**32 + 3], np.int64))
        with pytest.raises(tf.errors.InvalidArgumentError, match="negative"):
            enc(x, np.array([8, -1], np.int64))
        with pytest.raises(tf.errors.InvalidArgumentError, match="int32 range"):
            fb.remove_padding(x, np.array([8, 2**32 + 3], np.int64))


# ------------------------------------------------------------------------- fuzz

@pytest.fixture(scope="module")
def fuzz_world(converted_minilm, tmp_path_factory):
    """An input model, a truncated copy, a foreign directory, and links to them."""
    root = tmp_path_factory.mktemp("fuzz")
    model = root / "in" / "minilm"
    shutil.copytree(converted_minilm, model)
    trunc = root / "trunc"
    shutil.copytree(converted_minilm, trunc)
    data = trunc / "bert_model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    (root / "foreign").mkdir()
    (root / "foreign" / "keep.txt").write_text("keep")
    os.symlink(model, root / "link_to_input")
    os.symlink(root / "in", root / "link_to_parent")
    return root, model, trunc


INPUTS = ["model", "model_dir", "trunc", "missing", "a_file"]
OUTPUTS = ["fresh", "input_dir", "parent", "inside_input", "link_to_input", "link_to_parent", "foreign", "empty",
           "file", "root"]


def _path(root, model, trunc, kind):
    return {"model": f"{model}/bert_model.ckpt", "model_dir": str(model), "trunc": f"{trunc}/bert_model.ckpt",
            "missing": f"{root}/nope/model.ckpt", "a_file": f"{model}/vocab.txt",
            "fresh": f"{root}/out_{os.getpid()}/model.ckpt", "input_dir": f"{model}/model.ckpt",
            "parent": f"{root}/in/model.ckpt", "inside_input": f"{model}/sub/model.ckpt",
            "link_to_input": f"{root}/link_to_input/bert_model.ckpt",
            "link_to_parent": f"{root}/link_to_parent/minilm/bert_model.ckpt", "foreign": f"{root}/foreign/m.ckpt",
            "empty": "", "file": f"{model}/vocab.txt/m.ckpt", "root": "/model.ckpt"}[kind]


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tool=st.sampled_from(["ckpt_type_convert", "ckpt_quantization", "convert_hf"]),
       src=st.sampled_from(INPUTS), dst=st.sampled_from(OUTPUTS), overwrite=st.booleans(),
       extra=st.lists(st.sampled_from(["--to=bfloat16", "--keep_optimizer_slots", "--int8_mode=2", "--int8_mode=3",
                                       "--calib_method=mse", "--no_such_flag", "stray", "--percentile=0"]),
                      max_size=3))
def test_fuzz_flags_and_paths(fuzz_world, tool, src, dst, overwrite, extra):
    """Any flags and paths: exit code 0, 1 or 2, never a traceback, the inputs byte-identical."""
    root, model, trunc = fuzz_world
    # The tool's inputs (convert_hf reads the shared model; the converted copy is its output kind).
    protected = [MINILM if tool == "convert_hf" else root / "in", trunc, root / "foreign"]
    before = [tree_hash(p) for p in protected]
    out = _path(root, model, trunc, dst)
    if tool == "convert_hf":
        args = [f"--hf_dir={MINILM if src == 'model' else _path(root, model, trunc, src)}",
                f"--output_dir={os.path.dirname(out) if out else ''}"]
    else:
        flag = "--fp16_checkpoint" if tool == "ckpt_type_convert" else "--quantized_checkpoint"
        args = [f"--init_checkpoint={_path(root, model, trunc, src)}", f"{flag}={out}"]
        if tool == "ckpt_quantization" and not any(e.startswith("--int8_mode") for e in extra):
            args.append("--int8_mode=1")
    p = run(f"checkpoint_tools.{tool}", *args, *(["--overwrite"] if overwrite else []), *extra)
    assert p.returncode in (0, 1, 2), (args, extra, p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr, (args, extra, p.stderr[-3000:])
    assert [tree_hash(p) for p in protected] == before, (args, extra)
    shutil.rmtree(f"{root}/out_{os.getpid()}", ignore_errors=True)
