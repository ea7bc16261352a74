"""The structure the code relies on: one weight table, no import circles."""
import ast
import os

import fastbert_tf as fb
from fastbert_tf.weights import LAYER_WEIGHTS, OP_INPUT_NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_python_weight_list_is_the_ops_inputs():
    """fastbert_tf.weights.LAYER_WEIGHTS is pinned to FastBertEncoder's registered inputs, which
    tf_ops/common/layer_weights.def generates: same names, same order, kernels typed Tw."""
    from tensorflow.python.framework import op_def_registry
    fb.load_op_library()
    op = op_def_registry.get("FastBertEncoder")
    names = [a.name for a in op.input_arg]
    assert names[:2] == ["hidden_states", "sequence_length"] and names[-1] == "quant_scales"
    assert tuple(names[2:-1]) == OP_INPUT_NAMES
    for arg, (op_name, _, shape) in zip(op.input_arg[2:-1], LAYER_WEIGHTS):
        assert arg.type_attr == ("Tw" if len(shape) == 2 else "Tv"), op_name
        assert arg.number_attr == "num_weights"


def _imports(path, package):
    """fastbert_tf modules a file imports, at top level or inside functions."""
    tree = ast.parse(open(path).read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == package:
                out.update(f"{package}.{a.name}" for a in node.names)
            elif node.module.startswith(package + "."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith(package + "."))
    return out


def test_no_import_circle_in_the_package():
    package = "fastbert_tf"
    folder = os.path.join(ROOT, package)
    modules = {f"{package}.{f[:-3]}": os.path.join(folder, f) for f in os.listdir(folder)
               if f.endswith(".py") and f != "__init__.py"}
    graph = {m: {d for d in _imports(p, package) if d in modules and d != m} for m, p in modules.items()}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for d in graph[m]:
            assert state.get(d) != "open", "import circle: " + " -> ".join(path + [m, d])
            if d not in state:
                visit(d, path + [m])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [])
    # The op's own API never depends on the Google-BERT drop-in above it.
    for low in ("encoder", "ops", "weights", "reference", "int8"):
        assert f"{package}.modeling" not in graph[f"{package}.{low}"] and \
            f"{package}.bert_compat" not in graph[f"{package}.{low}"], low
