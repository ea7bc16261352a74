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


def plot(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "benchmarks.plot", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_plots_from_committed_results(tmp_path):
    """The README's PNGs come from these commands: a speedup plot of a bench JSON and a per-layer
    breakdown of a check_runner JSON, both real PNG files."""
    results = os.path.join(ROOT, "benchmarks", "results")
    for kind, src in (("speedup", "h200_int8_passes.json"), ("breakdown", "h200_breakdown.json")):
        out = tmp_path / f"{kind}.png"
        r = plot("--kind", kind, "--json", os.path.join(results, src), "--out", str(out))
        assert r.returncode == 0, r.stderr[-2000:]
        with open(out, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert out.stat().st_size > 10_000


def test_plot_bad_inputs_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    cases = [(["--kind", "speedup", "--json", str(tmp_path / "missing.json"), "--out", str(tmp_path / "a.png")],
              2, "missing.json"),
             (["--kind", "speedup", "--json", str(bad), "--out", str(tmp_path / "a.png")], 1, "not JSON"),
             (["--kind", "breakdown", "--json", os.path.join(ROOT, "benchmarks", "results", "h200_int8_passes.json"),
               "--out", str(tmp_path / "a.png")], 1, "no rows"),
             (["--kind", "speedup", "--json", str(bad), "--out", str(bad)], 2, "--out"),
             (["--kind", "speedup", "--json", str(bad)], 2, "--out is required")]
    for args, code, text in cases:
        r = plot(*args)
        assert r.returncode == code, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], (args, r.stderr)
    assert bad.read_text() == "{not json"  # never overwritten


def test_throughput_over_replicas(tmp_path):
    """benchmarks.throughput on two logical CPUs: a row per sequence length and replica count with
    sequences/s for padded and remove_padding, and the scaling efficiency against one replica."""
    out = tmp_path / "tp.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--device=cpu", "--replicas=1,2", "--batch=3",
                        "--seq_lens=24", "--num_layer=1", "--head_num=2", "--size_per_head=32", "--inter_size=128",
                        "--dtype=float32", "--requests=4", "--repeats=2", f"--json={out}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.load(open(out))
    assert [(row["seq_len"], row["replicas"]) for row in data["results"]] == [(24, 1), (24, 2)]
    for row in data["results"]:
        for name in ("op", "op_rp"):
            assert row[name + "_seq_per_s"] > 0 and len(row[name + "_all"]) == 2
        assert 1 <= row["avg_len"] <= 24
    assert data["results"][0]["op_efficiency"] == 1.0
    bad = subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--device=cpu", "--replicas=0"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
