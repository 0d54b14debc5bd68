"""The model path (`build`, heads, callbacks, optimizers) needs no TensorFlow.

The lent GPU machines run Keras on JAX without TensorFlow (`benchmarks/gpu_check.py`).
Three layers of proof:

- statically, the model-path modules import TensorFlow and use `tf.` only inside the
  functions listed in `TF_ONLY`, each a TensorFlow-only branch;
- at run time under the TensorFlow backend (always runs): a subprocess that records
  which zoo-transfer function imports `tensorflow` while it builds, compiles with
  `transfer_optimizer`, and fits with `GradualUnfreezing` and `ProgressiveResizing`
  over `ResizableArrays`: only the `TF_ONLY` branches may;
- with TensorFlow made unimportable, on the JAX backend (and on Keras' numpy backend,
  which imports jax too): needs jax in this environment, so it skips without it.
  `transfer_optimizer` and `GradualUnfreezing` work there too: the optimizer's
  `stateless_apply` updates the bound model's trainable variables only.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from no_tensorflow import no_tensorflow_env

ROOT = Path(__file__).resolve().parents[1]

# Modules a model goes through from `build` to `fit` with the callbacks.
MODEL_PATH = (
    "recipes/__init__.py",
    "recipes/_build.py",
    "recipes/_keras_apps.py",
    "recipes/stages.py",
    "recipes/_weights.py",
    "recipes/digitnet.py",
    "recipes/_situations.py",
    "registry/_card.py",
    "registry/_registry.py",
    "zoo_transfer/__init__.py",
    "zoo_transfer/callbacks.py",
    "zoo_transfer/optimizers.py",
)
# (module file, function): the TensorFlow-only branches the model path may contain.
TF_ONLY = {
    ("zoo_transfer/data/arrays.py", "dataset"),  # ResizableArrays.dataset on the TF backend
    # the L2-SP penalty's replica share under tf.distribute (returns 1.0 on other backends)
    ("zoo_transfer/optimizers.py", "_replica_share"),
}
HAS_JAX = importlib.util.find_spec("jax") is not None


def _tf_uses(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, enclosing function or '<module>', what) for every TensorFlow use in `tree`."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = child.name
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "tensorflow":
                        found.append((child.lineno, scope, f"import {alias.name}"))
            elif isinstance(child, ast.ImportFrom):
                if (child.module or "").split(".")[0] == "tensorflow":
                    found.append((child.lineno, scope, f"from {child.module} import"))
            elif (
                isinstance(child, ast.Attribute)
                and isinstance(child.value, ast.Name)
                and child.value.id in ("tf", "tensorflow")
            ):
                found.append((child.lineno, scope, f"{child.value.id}.{child.attr}"))
            visit(child, inner)

    visit(tree, "<module>")
    return found


def _parse(relpath: str) -> ast.Module:
    return ast.parse((ROOT / relpath).read_text(), relpath)


def test_the_scanner_finds_tensorflow_uses():
    source = (
        "import tensorflow as tf\n"
        "def f():\n"
        "    from tensorflow import data\n"
        "    return tf.constant(1)\n"
        "x = keras.ops.add(1, 2)  # not TensorFlow\n"
    )
    assert _tf_uses(ast.parse(source)) == [
        (1, "<module>", "import tensorflow"),
        (3, "f", "from tensorflow import"),
        (4, "f", "tf.constant"),
    ]


@pytest.mark.parametrize("relpath", MODEL_PATH)
def test_model_path_module_uses_no_tensorflow(relpath):
    uses = [u for u in _tf_uses(_parse(relpath)) if (relpath, u[1]) not in TF_ONLY]
    assert uses == [], f"{relpath} uses TensorFlow outside the TF_ONLY functions: {uses}"


def test_resizable_arrays_uses_tensorflow_only_in_its_tf_branch():
    relpath = "zoo_transfer/data/arrays.py"
    wanted = {"ResizableArrays", "_array_batches_class"}
    nodes = [n for n in _parse(relpath).body if getattr(n, "name", None) in wanted]
    assert {n.name for n in nodes} == wanted
    uses = [u for n in nodes for u in _tf_uses(n) if (relpath, u[1]) not in TF_ONLY]
    assert uses == []
    assert [u[1] for n in nodes for u in _tf_uses(n)] != []  # the TF branch was scanned
    # ...and the branch that does use TensorFlow is guarded by the backend check
    dataset = next(
        f
        for n in nodes
        if n.name == "ResizableArrays"
        for f in n.body
        if getattr(f, "name", None) == "dataset"
    )
    assert "keras.backend.backend() != 'tensorflow'" in ast.unparse(dataset)


# ---------------------------------------------------------------------------------------
# At run time

PROGRAM = r"""
import json, sys

import builtins
import keras
import numpy as np

tf_imports = set()
real_import = builtins.__import__


def audited_import(name, globals=None, locals=None, fromlist=(), level=0):
    caller = (globals or {{}}).get("__name__", "")
    if name.split(".")[0] == "tensorflow" and caller.split(".")[0] == "zoo_transfer":
        tf_imports.add((caller, sys._getframe(1).f_code.co_name))
    return real_import(name, globals, locals, fromlist, level)


builtins.__import__ = audited_import

import zoo_transfer
from zoo_transfer.callbacks import GradualUnfreezing, ProgressiveResizing
from zoo_transfer.data import ResizableArrays
from zoo_transfer.optimizers import transfer_optimizer

out = {{"backend": keras.backend.backend()}}
keras.utils.set_random_seed(0)
digits = zoo_transfer.build("digitnet", 5)
side = digits.input_shape[1]
out["digitnet"] = list(digits.predict(np.zeros((2, side, side, 3), "float32"), verbose=0).shape)

if {fit!r}:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 40, 36, 3)).astype("float32")
    y = rng.integers(0, 3, 16)
    train = ResizableArrays(x, y, size=32, batch_size=8)
    model = zoo_transfer.build("digitnet", 3, input_shape=(None, None, 3))
    callbacks = [ProgressiveResizing({{0: 32, 1: 40, 2: 48}}, train, verbose=0)]
    try:
        optimizer = transfer_optimizer(model, "adam", learning_rate=1e-3, l2_sp=0.01)
        callbacks.append(GradualUnfreezing({{1: 1}}, verbose=0))
    except zoo_transfer.BuildArgumentError as err:  # the JAX backend
        out["transfer_optimizer_error"] = str(err)
        optimizer = "adam"
    model.compile(optimizer, "sparse_categorical_crossentropy")
    history = model.fit(train.dataset(), epochs=3, verbose=0, callbacks=callbacks)
    out["image_size"] = history.history["image_size"]
    out["trainable_params"] = history.history.get("trainable_params")
    out["loss_finite"] = bool(np.all(np.isfinite(history.history["loss"])))
    out["batch"] = list(train.batch(0)[0].shape)
out["tf_imports"] = sorted(map(list, tf_imports))
out["tensorflow_loaded"] = "tensorflow" in sys.modules
print("RESULT=" + json.dumps(out))
"""


def _run(backend: str, block: bool, fit: bool) -> dict:
    # blocked: `import tensorflow` fails (tests/jax/site/sitecustomize.py)
    env = no_tensorflow_env(backend) if block else dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(fit=fit)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT=")][-1]
    return json.loads(line[len("RESULT=") :])


def _check_fit(out: dict) -> None:
    assert out["digitnet"] == [2, 5]
    assert out["image_size"] == [32, 40, 48]
    assert out["loss_finite"]
    assert out["batch"] == [8, 48, 48, 3]  # the source ends at the last scheduled size


def test_model_path_imports_tensorflow_only_in_tf_branches():
    out = _run("tensorflow", block=False, fit=True)
    assert out["backend"] == "tensorflow"
    _check_fit(out)
    frozen, unfrozen, last = out["trainable_params"]
    assert unfrozen > frozen and last == unfrozen  # GradualUnfreezing acted in epoch 1
    # On the TF backend only the TF branches import TensorFlow: ResizableArrays.dataset
    # and the L2-SP penalty's replica share.
    assert out["tf_imports"] == [
        ["zoo_transfer.data.arrays", "dataset"],
        ["zoo_transfer.optimizers", "_replica_share"],
    ]
    assert {
        ("zoo_transfer/data/arrays.py", "dataset"),
        ("zoo_transfer/optimizers.py", "_replica_share"),
    } == TF_ONLY


@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed in this environment")
def test_fit_on_jax_without_tensorflow():
    out = _run("jax", block=True, fit=True)
    assert out["backend"] == "jax"
    _check_fit(out)
    assert "transfer_optimizer_error" not in out  # it works on JAX, with L2-SP
    frozen, unfrozen, last = out["trainable_params"]
    assert unfrozen > frozen and last == unfrozen  # GradualUnfreezing acted in epoch 1
    assert out["tf_imports"] == []
    assert out["tensorflow_loaded"] is False


@pytest.mark.skipif(
    not HAS_JAX, reason="Keras' numpy backend imports jax (keras/src/backend/numpy/math.py)"
)
def test_build_and_predict_on_numpy_without_tensorflow():
    out = _run("numpy", block=True, fit=False)
    assert out["backend"] == "numpy"
    assert out["digitnet"] == [2, 5]
    assert out["tensorflow_loaded"] is False


# ---------------------------------------------------------------------------------------
# ResizableArrays, the TensorFlow-free resizable source


def _arrays(n=20, h=30, w=26, **kwargs):
    from zoo_transfer.data import ResizableArrays

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, h, w, 3)).astype("float32")
    y = np.arange(n)
    return ResizableArrays(x, y, **kwargs), x, y


def test_resizable_arrays_batches_at_the_set_size():
    source, x, y = _arrays(size=16, batch_size=8)
    assert len(source) == 2  # 20 // 8: the partial batch is dropped
    images, labels = source.batch(1)
    assert images.shape == (8, 16, 16, 3) and images.dtype == np.float32
    source.set_size(24)
    images, labels2 = source.batch(1)
    assert images.shape == (8, 24, 24, 3)
    assert list(labels2) == list(labels)  # same epoch, same order
    # a constant image stays constant through the resize, in range
    flat = np.full((8, 30, 26, 3), 77.0, "float32")
    from zoo_transfer.data import ResizableArrays

    const = ResizableArrays(flat, np.zeros(8), size=12, batch_size=8, shuffle=False)
    np.testing.assert_allclose(const.batch(0)[0], 77.0, atol=1e-3)
    with pytest.raises(IndexError, match="out of range"):
        source.batch(2)


def test_resizable_arrays_at_the_source_size_is_the_source():
    source, x, y = _arrays(h=16, w=16, size=16, batch_size=4, shuffle=False)
    images, labels = source.batch(2)
    np.testing.assert_array_equal(images, x[8:12])
    np.testing.assert_array_equal(labels, y[8:12])


def test_resizable_arrays_shuffle_is_seeded_and_changes_per_epoch():
    a, _, _ = _arrays(size=8, batch_size=10, seed=3)
    b, _, _ = _arrays(size=8, batch_size=10, seed=3)
    first = np.concatenate([a.batch(i)[1] for i in range(len(a))])
    assert sorted(first) == list(range(20))  # a permutation of every image
    assert list(first) != list(range(20))
    assert list(first) == list(np.concatenate([b.batch(i)[1] for i in range(len(b))]))
    a.next_epoch()
    second = np.concatenate([a.batch(i)[1] for i in range(len(a))])
    assert sorted(second) == list(range(20)) and list(second) != list(first)
    kept, _, _ = _arrays(n=21, size=8, batch_size=10, drop_remainder=False)
    assert len(kept) == 3 and kept.batch(2)[0].shape[0] == 1  # the partial batch stays


def test_resizable_arrays_errors_name_the_value():
    from zoo_transfer import BuildArgumentError
    from zoo_transfer.data import ResizableArrays

    with pytest.raises(BuildArgumentError, match=r"\(N, H, W, 3\). Received: \(4, 8, 8\)"):
        ResizableArrays(np.zeros((4, 8, 8)), np.zeros(4), size=8)
    with pytest.raises(BuildArgumentError, match="4 images and 3 labels"):
        ResizableArrays(np.zeros((4, 8, 8, 3)), np.zeros(3), size=8)
    with pytest.raises(BuildArgumentError, match="size=0"):
        ResizableArrays(np.zeros((4, 8, 8, 3)), np.zeros(4), size=0)
    with pytest.raises(BuildArgumentError, match="batch_size=8 images .* Received: 4"):
        ResizableArrays(np.zeros((4, 8, 8, 3)), np.zeros(4), size=8, batch_size=8)


def test_progressive_resizing_refuses_steps_that_differ_from_one_pass(fresh_keras):
    import zoo_transfer
    from zoo_transfer import BuildArgumentError
    from zoo_transfer.callbacks import ProgressiveResizing

    source, _, _ = _arrays(n=16, size=32, batch_size=8)
    model = zoo_transfer.build("digitnet", 3, input_shape=(None, None, 3))
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(BuildArgumentError, match="fit runs 1 steps .* is 2 batches"):
        model.fit(
            source.dataset(),
            steps_per_epoch=1,
            epochs=2,
            verbose=0,
            callbacks=[ProgressiveResizing({0: 32, 1: 40}, source, verbose=0)],
        )
