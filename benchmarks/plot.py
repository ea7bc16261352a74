"""PNG plots of benchmark results.

    python -m benchmarks.plot --kind speedup --json benchmarks/results/h200_int8_passes.json --out speedup.png
    python -m benchmarks.plot --kind breakdown --json benchmarks/results/h200_breakdown.json --out breakdown.png

speedup: each variant's speedup over XLA (the faster of tf/xla where both ran) at every grid point
and length source of a benchmarks.bench JSON, one panel per mode (passes, per_call).
breakdown: the per-layer kernel time of each stage (tests/cuda/check_runner.py breakdown JSON),
a stacked bar per shape and remove_padding setting.
"""
import json
import os

from checkpoint_tools import cli  # first: keeps TensorFlow's start-up lines quiet

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("kind", None, ["speedup", "breakdown"], "Which plot.")
flags.DEFINE_string("json", None, "The result JSON: benchmarks.bench (speedup) or check_runner breakdown.")
flags.DEFINE_string("out", None, "The PNG to write.")
flags.DEFINE_integer("num_layer", 12, "breakdown: layers of the model (the JSON holds per-call times).")
flags.DEFINE_list("shapes", ["8x128", "32x384"], "breakdown: the BxS shapes to draw.")
FLAGS = flags.FLAGS


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise app.UsageError(f"--json={path}: cannot read ({e.strerror})")
    except json.JSONDecodeError as e:
        raise cli.DataError(f"{path}: not JSON (line {e.lineno}: {e.msg})")


def speedup_table(results):
    """{mode: (labels, {variant: [speedup per label]})} over the baseline (min of tf/xla)."""
    out = {}
    for r in results:
        base = [r[v] for v in ("tf", "xla") if isinstance(r.get(v), (int, float))]
        if not base:
            continue
        base = min(base)
        variants = [k for k, v in r.items() if k.startswith("op") and not k.endswith("_all")
                    and isinstance(v, (int, float))]
        labels, series = out.setdefault(r["mode"], ([], {}))
        labels.append(f"{r['batch']}x{r['seq_len']}\n{r['lengths'].split(':')[0]}")
        for v in variants:
            series.setdefault(v, [None] * (len(labels) - 1)).append(base / r[v])
        for v, vals in series.items():
            if len(vals) < len(labels):
                vals.append(None)
    return out


def plot_speedup(data, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "results" not in data or "meta" not in data:
        raise cli.DataError("speedup: the JSON is not a benchmarks.bench result (no 'results'/'meta')")
    table = speedup_table(data["results"])
    if not table:
        raise cli.DataError("speedup: no result has a tf or xla time to compare against")
    meta = data["meta"]
    fig, axes = plt.subplots(len(table), 1, figsize=(max(8, 0.9 * max(len(t[0]) for t in table.values())),
                                                      4.2 * len(table)), squeeze=False)
    for ax, (mode, (labels, series)) in zip(axes[:, 0], sorted(table.items())):
        width = 0.8 / max(1, len(series))
        for i, (variant, vals) in enumerate(sorted(series.items())):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
            ax.bar(xs, [v or 0 for v in vals], width, label=variant)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("speedup over XLA")
        ax.set_title(f"{meta.get('device', '?')}, {meta.get('dtype', '?')}, {mode} "
                     f"({meta.get('time', '')})", fontsize=9)
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_breakdown(data, out, num_layer, shapes):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in data.get("rows", []) if f"{r['batch']}x{r['seq_len']}" in shapes]
    if not rows:
        raise cli.DataError(f"breakdown: no rows for shapes {','.join(shapes)} (the JSON has "
                             f"{sorted({str(r['batch']) + 'x' + str(r['seq_len']) for r in data.get('rows', [])})})")
    stages = sorted({s for r in rows for s in r["stages_ms"]})
    labels = [f"{r['batch']}x{r['seq_len']}\n{'rp' if r['remove_padding'] else 'padded'}" for r in rows]
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(rows), 5))
    bottom = [0.0] * len(rows)
    for s in stages:
        vals = [1e3 * r["stages_ms"].get(s, 0.0) / num_layer for r in rows]  # us per layer
        ax.bar(range(len(rows)), vals, 0.6, bottom=bottom, label=s)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels)
    ax.set_ylabel("kernel time per layer (us)")
    ax.set_title(f"{data.get('device', '?')}, {data.get('dtype', '?')}: per-layer stages", fontsize=9)
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv):
    del argv
    for name in ("kind", "json", "out"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    if not FLAGS.out.endswith(".png"):
        raise app.UsageError(f"--out={FLAGS.out}: the plot is a PNG (name it .png)")
    if os.path.abspath(FLAGS.out) == os.path.abspath(FLAGS.json):
        raise app.UsageError("--out: would overwrite --json")
    data = _load(FLAGS.json)
    if FLAGS.kind == "speedup":
        plot_speedup(data, FLAGS.out)
    else:
        if FLAGS.num_layer < 1:
            raise app.UsageError("--num_layer must be >= 1")
        plot_breakdown(data, FLAGS.out, FLAGS.num_layer, FLAGS.shapes)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.define_verbose()
    cli.run(main)
