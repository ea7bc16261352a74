"""The benchmark CLI runs end to end on a tiny model (no timing asserted: numbers come from runs of
the real command, never from tests) and rejects bad flags."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "benchmarks.bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_bench_writes_every_variant(tmp_path):
    out = tmp_path / "r.json"
    p = bench("--num_layer=1", "--head_num=2", "--size_per_head=32", "--inter_size=128", "--batch_sizes=1,3",
              "--seq_lens=8", "--passes=2", "--repeats=2", f"--json={out}")
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.load(open(out))
    assert data["meta"]["passes"] == 2 and "unrolled" in data["meta"]["loop"]
    assert [(r["batch"], r["seq_len"]) for r in data["results"]] == [(1, 8), (3, 8)]
    for r in data["results"]:
        for name in ("tf", "xla", "op", "op_rp"):
            assert len(r[name + "_all"]) == 2 and all(t > 0 for t in r[name + "_all"])
    assert "speedup over the faster of tf/xla" in p.stdout


def test_bench_rejects_unknown_variant():
    p = bench("--variants=op,fast")
    assert p.returncode != 0 and "unknown ['fast']" in p.stderr
