"""The README's command blocks (the Google-BERT and the FP16/INT8 sections) run as written, in
order, on the shared model: `../shared` points at the shared assets, SQuAD-format files are
generated from real text (squad_data), and a few flags are appended (absl: the last value wins) to
keep CI short. A command that no longer works, or a block that names a file no earlier step made,
fails here."""
import os
import re
import shlex
import subprocess
import sys

import pytest

import squad_data
from conftest import HAVE_SHARED, SHARED
from test_glue_squad import ROOT

README = os.path.join(ROOT, "README.md")
SECTIONS = ("## Google BERT on TensorFlow 2.21", "## FP16 and INT8 checkpoints")
SMALL = {  # appended per module: small sizes, same code paths
    "glue_squad.run_squad_wrap": ["--max_seq_length=128", "--max_train_examples=32", "--num_train_epochs=1",
                                  "--train_batch_size=8", "--doc_stride=64"],
    "checkpoint_tools.ckpt_quantization": ["--calib_batches=4"],
    "glue_squad.run_classifier_wrap": ["--max_seq_length=64"],
}


def readme_commands():
    text = open(README, encoding="utf-8").read()
    commands = []
    for title in SECTIONS:
        body = text[text.index(title) + len(title):]
        body = body[:body.index("\n## ")]
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            if lines[i].startswith("    python -m "):
                cmd = lines[i].strip()
                while cmd.endswith("\\"):
                    i += 1
                    cmd = cmd[:-1] + " " + lines[i].strip()
                commands.append(cmd)
            i += 1
    return commands


def test_readme_has_the_blocks():
    cmds = readme_commands()
    modules = [shlex.split(c)[2] for c in cmds]
    assert modules == ["checkpoint_tools.convert_hf", "glue_squad.run_classifier_wrap", "glue_squad.run_squad_wrap",
                       "glue_squad.squad_evaluate_v1_1", "checkpoint_tools.ckpt_type_convert",
                       "checkpoint_tools.ckpt_quantization", "glue_squad.run_classifier_wrap"]
    assert not any(re.search(r"(^| )(M/|\.\.\.)", c) for c in cmds), "placeholders in a README command"


@pytest.mark.skipif(not HAVE_SHARED, reason=f"shared model and data not found at {SHARED}")
def test_readme_commands_run(tmp_path):
    work = tmp_path / "work"
    (work / "squad").mkdir(parents=True)
    squad_data.squad_json(str(work / "squad" / "train-v1.1.json"), n=24, seed=1)
    squad_data.squad_json(str(work / "squad" / "dev-v1.1.json"), n=12, seed=2)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), CUDA_VISIBLE_DEVICES="")
    for cmd in readme_commands():
        args = [a.replace("../shared", SHARED, 1) if a.startswith("../shared") else a for a in shlex.split(cmd)]
        assert args[:2] == ["python", "-m"]
        args = [sys.executable, *args[1:], *SMALL.get(args[2], [])]
        p = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=1200)
        assert p.returncode == 0, (cmd, p.stderr[-3000:])
        assert "Traceback" not in p.stderr
    assert os.path.isfile(work / "out" / "mrpc_int8" / "eval_results.txt")
    assert os.path.isfile(work / "out" / "squad" / "predictions.json")
