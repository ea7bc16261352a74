"""End to end on real data: convert_hf -> run_classifier_wrap on MRPC dev, run_squad_wrap on
SQuAD-format data built from real text; TF reference and op agree; clear errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import squad_data
from conftest import HAVE_SHARED, MINILM, MRPC
from glue_squad import squad_evaluate_v1_1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = json.load(open(os.path.join(MINILM, "reference.json")))["dev.tsv"]["accuracy"] if HAVE_SHARED else None


def run(module, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)


def classifier(model_dir, out, *extra, checkpoint=None):
    return run("glue_squad.run_classifier_wrap", "--task_name=mrpc", f"--data_dir={MRPC}",
               f"--vocab_file={model_dir}/vocab.txt", f"--bert_config_file={model_dir}/bert_config.json",
               f"--init_checkpoint={checkpoint or model_dir + '/bert_model.ckpt'}", "--max_seq_length=128",
               "--eval_batch_size=32", f"--output_dir={out}", *extra)


def results(out):
    res = {}
    for line in open(os.path.join(out, "eval_results.txt")):
        k, v = line.strip().split(" = ")
        res[k] = v
    return res


MODEL_DIR = []  # the converted model of this module's runs (set by mrpc_runs)


@pytest.fixture(scope="module")
def mrpc_runs(converted_minilm, tmp_path_factory):
    MODEL_DIR[:] = [converted_minilm]
    runs = {}
    for name, extra in {"tf": ["--use_fast_op=false"], "op": [], "op_fp16": ["--floatx=float16"],
                        "op_rp": ["--remove_padding"], "op_fp16_rp": ["--floatx=float16", "--remove_padding"]}.items():
        out = str(tmp_path_factory.mktemp(name))
        proc = classifier(converted_minilm, out, "--do_eval", *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = (results(out), np.loadtxt(os.path.join(out, "eval_predictions.txt"), dtype=int))
    return runs


def test_mrpc_float32_tf_and_op_identical(mrpc_runs):
    (tf_res, tf_pred), (op_res, op_pred) = mrpc_runs["tf"], mrpc_runs["op"]
    assert len(op_pred) == 408
    np.testing.assert_array_equal(tf_pred, op_pred)
    for res in (tf_res, op_res):
        assert abs(float(res["eval_accuracy"]) - REFERENCE) <= 0.003
        assert {"eval_f1", "eval_loss", "ms_per_example"} <= set(res)


@pytest.mark.parametrize("name", ["op_fp16", "op_rp", "op_fp16_rp"])
def test_mrpc_fp16_and_remove_padding(mrpc_runs, name):
    res, _ = mrpc_runs[name]
    assert abs(float(res["eval_accuracy"]) - REFERENCE) <= 0.003, res


def test_mrpc_fine_tune_then_evaluate_fast(converted_minilm, tmp_path):
    out = str(tmp_path / "train")
    proc = classifier(converted_minilm, out, "--do_train", "--do_eval", "--max_train_examples=96",
                      "--train_batch_size=16", "--num_train_epochs=1", "--learning_rate=1e-5", "--max_seq_length=64",
                      "--save_checkpoints_steps=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained 6 steps" in proc.stdout
    assert os.path.exists(os.path.join(out, "model.ckpt-6.index")) and os.path.exists(os.path.join(out, "model.ckpt-4.index"))
    res = results(out)
    assert res["use_fast_op"] == "True" and float(res["eval_accuracy"]) > 0.7  # evaluated with the op


def test_classifier_errors(converted_minilm, tmp_path):
    m = converted_minilm
    proc = classifier(m, str(tmp_path / "a"), "--do_eval", "--max_seq_length=600")
    assert proc.returncode != 0 and "above the model's max_position_embeddings 512" in proc.stderr
    proc = run("glue_squad.run_classifier_wrap", "--task_name=mrpc", f"--data_dir={MRPC}",
               f"--vocab_file={tmp_path}/none.txt", f"--bert_config_file={m}/bert_config.json",
               f"--output_dir={tmp_path}/b", "--do_eval")
    assert proc.returncode != 0 and "--vocab_file" in proc.stderr and "does not exist" in proc.stderr
    proc = classifier(m, str(tmp_path / "c"), "--do_eval", checkpoint=str(tmp_path / "missing.ckpt"))
    assert proc.returncode != 0 and "--init_checkpoint" in proc.stderr
    cfg = json.load(open(f"{m}/bert_config.json"))
    os.makedirs(tmp_path / "bad")
    json.dump(dict(cfg, intermediate_size=1024), open(tmp_path / "bad" / "bert_config.json", "w"))
    proc = run("glue_squad.run_classifier_wrap", "--task_name=mrpc", f"--data_dir={MRPC}", f"--vocab_file={m}/vocab.txt",
               f"--bert_config_file={tmp_path}/bad/bert_config.json", f"--init_checkpoint={m}/bert_model.ckpt",
               f"--output_dir={tmp_path}/d", "--do_eval")
    assert proc.returncode != 0 and "does bert_config_file match the checkpoint" in proc.stderr
    proc = classifier(m, str(tmp_path / "e"), "--do_eval", "--task_name=sst9")
    assert proc.returncode != 0 and "expected one of" in proc.stderr


def test_mrpc_mirrored_over_two_cpu_replicas_is_identical(mrpc_runs, tmp_path):
    """--strategy mirrored on two logical CPUs: each global batch cut in two slices, gathered back
    in input order: the single-device predictions and loss exactly."""
    out = str(tmp_path / "mirrored")
    proc = classifier(MODEL_DIR[0], out, "--do_eval", "--strategy=mirrored", "--num_cpu_replicas=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res, pred = results(out), np.loadtxt(os.path.join(out, "eval_predictions.txt"), dtype=int)
    op_res, op_pred = mrpc_runs["op"]
    np.testing.assert_array_equal(pred, op_pred)
    assert abs(float(res["eval_loss"]) - float(op_res["eval_loss"])) < 1e-6
    assert res["replicas"] == "2" and res["strategy"] == "mirrored"


def _free_ports(n):
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_mrpc_multi_worker_two_local_workers_is_identical(mrpc_runs, tmp_path):
    """MultiWorkerMirroredStrategy, two worker processes on this host (TF_CONFIG): the chief writes
    the single-device predictions; the other worker writes nothing."""
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs, outs = [], []
    for i in range(2):
        out = str(tmp_path / f"worker{i}")
        outs.append(out)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        args = ["--task_name=mrpc", f"--data_dir={MRPC}", f"--vocab_file={MODEL_DIR[0]}/vocab.txt",
                f"--bert_config_file={MODEL_DIR[0]}/bert_config.json",
                f"--init_checkpoint={MODEL_DIR[0]}/bert_model.ckpt", "--max_seq_length=128", "--eval_batch_size=32",
                f"--output_dir={out}", "--do_eval", "--strategy=multi_worker"]
        procs.append(subprocess.Popen([sys.executable, "-m", "glue_squad.run_classifier_wrap", *args], cwd=ROOT,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        logs = [p.communicate(timeout=900) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, logs):
        assert p.returncode == 0, err[-3000:]
    pred = np.loadtxt(os.path.join(outs[0], "eval_predictions.txt"), dtype=int)
    np.testing.assert_array_equal(pred, mrpc_runs["op"][1])
    assert results(outs[0])["replicas"] == "2"
    assert not os.path.exists(os.path.join(outs[1], "eval_predictions.txt"))


def test_strategy_flag_errors(converted_minilm, tmp_path):
    out = str(tmp_path / "x")
    cases = [(["--strategy=multi_worker"], "needs TF_CONFIG"), (["--num_gpus=2"], "need --strategy mirrored"),
             (["--strategy=mirrored"], "no GPU visible"), (["--strategy=mirrored", "--num_cpu_replicas=2", "--do_train"],
                                                           "--do_train runs on one device"),
             (["--strategy=mirrored", "--num_cpu_replicas=2", "--num_gpus=1"], "exclude each other")]
    for extra, text in cases:
        proc = classifier(converted_minilm, out, "--do_eval", *extra)
        assert proc.returncode == 2, (extra, proc.stderr[-2000:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], (extra, proc.stderr[-2000:])


def squad(model_dir, checkpoint, data, out, *extra):
    return run("glue_squad.run_squad_wrap", f"--predict_file={data}", f"--vocab_file={model_dir}/vocab.txt",
               f"--bert_config_file={model_dir}/bert_config.json", f"--init_checkpoint={checkpoint}",
               "--max_seq_length=128", "--doc_stride=64", "--max_query_length=24", "--do_predict",
               f"--output_dir={out}", *extra)


def test_squad_tf_and_op_same_predictions(converted_minilm, tmp_path):
    data = squad_data.squad_json(str(tmp_path / "squad.json"), n=30)
    ckpt = squad_data.add_qa_head(converted_minilm, str(tmp_path / "qa" / "model.ckpt"))
    outs = {}
    for name, extra in {"tf": ["--use_fast_op=false"], "op": [], "op_rp": ["--remove_padding"],
                        "op_mirrored": ["--strategy=mirrored", "--num_cpu_replicas=2"]}.items():
        out = str(tmp_path / name)
        proc = squad(converted_minilm, ckpt, data, out, *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[name] = json.load(open(os.path.join(out, "predictions.json")))
        assert os.path.exists(os.path.join(out, "nbest_predictions.json"))
    assert len(outs["tf"]) == 30
    assert outs["op"] == outs["tf"]
    assert outs["op_rp"] == outs["tf"]
    assert outs["op_mirrored"] == outs["tf"]  # two replicas, results gathered back in order
    scores = squad_evaluate_v1_1.evaluate(json.load(open(data))["data"], outs["op"])
    assert 0 <= scores["exact_match"] <= 100 and 0 <= scores["f1"] <= 100


def test_squad_errors(converted_minilm, tmp_path):
    m = converted_minilm
    bad = tmp_path / "bad.json"
    bad.write_text("{\"data\": [{\"nope\": 1}]}")
    proc = squad(m, f"{m}/bert_model.ckpt", str(bad), str(tmp_path / "o"))
    assert proc.returncode == 1 and "is not a SQuAD v1.1 json file" in proc.stderr
    data = squad_data.squad_json(str(tmp_path / "squad.json"), n=2)
    proc = squad(m, f"{m}/bert_model.ckpt", data, str(tmp_path / "o2"))  # no cls/squad head
    assert proc.returncode != 0 and "lacks 2 variable(s)" in proc.stderr and "cls/squad/output_" in proc.stderr


def test_squad_metric_official_behaviour():
    data = [{"paragraphs": [{"qas": [{"id": "a", "answers": [{"text": "The Eiffel Tower"}, {"text": "Eiffel"}]},
                                     {"id": "b", "answers": [{"text": "in 1889"}]},
                                     {"id": "c", "answers": [{"text": "Paris"}]}]}]}]
    scores = squad_evaluate_v1_1.evaluate(data, {"a": "eiffel tower!", "b": "1889"})
    assert scores["exact_match"] == pytest.approx(100 / 3)  # a exact after normalization, b no, c missing
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
