"""Accuracy and wall time side by side: the Keras guide by hand, a logistic regression on
frozen features, `zoo-transfer train` with its defaults, and the best zoo-transfer offers.

For each task (`benchmarks/_tasks.py`: same weights, same image files, same side), in
this one run, every method trains on the training folder, may use the validation
folder, and is scored once on the test folder:

  (a) the Keras transfer-learning guide's recipe, written by hand in plain Keras around
      the same pretrained backbone: RandomFlip + RandomRotation(0.1) in the model,
      backbone frozen and called with training=False, global average pooling,
      Dropout(0.2), Dense; Adam 1e-3 for 5 epochs, then everything trainable at Adam
      1e-5 for 5 epochs;
  (b) scikit-learn's LogisticRegression on the frozen backbone's pooled features (its
      feature layer), C chosen on the validation images over `linear_head.L2_GRID`;
  (c) `zoo-transfer train MODEL --data TRAIN --validation VAL --image-size SIZE --weights W`
      and nothing else, then `zoo-transfer evaluate final.keras --data TEST`, each a new
      process through the console script (the wall time includes them);
  (d) the same with `--epochs 10`, then `evaluate --tta T` with the test-time
      augmentation the run's own validation measurement (metrics.json) favours, if any.

    python benchmarks/accuracy.py [--tasks fashion,digits] [--size 128]

Every method runs in a fresh process, as a user runs a script or the CLI, and its wall
time is that process's, from start to exit: Python and TensorFlow start-up, reading the
images, building, training (and, for (a) and (b), scoring the test images; for (c) and
(d), the report; their `evaluate` process is not counted).

Targets (the results issue): (c) >= (b) + 0.02 and (c) >= (a), in no more wall time than (a).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tasks import prepare  # noqa: E402


def _arrays(folder: Path, size: int, batch: int = 64):
    import numpy as np

    from zoo_transfer.data import load

    images = load(str(folder), image_size=size, batch_size=batch, validation_split=None,
                  augment="none").train_images.in_order()  # fmt: skip
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in images.dataset()), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def keras_guide(task, size: int, data) -> tuple[float, float]:
    """(a): the guide's recipe in plain Keras around the same backbone and normalisation."""
    import keras
    import numpy as np

    import zoo_transfer

    (x, y), (xv, yv), (xt, yt) = data
    begin = time.perf_counter()
    keras.utils.set_random_seed(0)
    donor = zoo_transfer.build(task.model, int(y.max()) + 1, input_shape=(size, size, 3),
                               weights=task.weights)  # fmt: skip
    base = next(layer for layer in donor.layers if hasattr(layer, "layers") and layer.layers)
    norm = [layer for layer in donor.layers if layer.name == "preprocess"]
    inputs = keras.Input((size, size, 3))
    h = keras.layers.RandomFlip("horizontal")(inputs)
    h = keras.layers.RandomRotation(0.1)(h)
    for layer in norm:  # the card's normalisation (the guide's Rescaling)
        h = layer(h)
    base.trainable = False
    h = base(h, training=False)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dropout(0.2)(h)
    outputs = keras.layers.Dense(int(y.max()) + 1, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    model.fit(x, y, batch_size=32, epochs=5, validation_data=(xv, yv), verbose=0)
    base.trainable = True
    model.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    model.fit(x, y, batch_size=32, epochs=5, validation_data=(xv, yv), verbose=0)
    seconds = time.perf_counter() - begin
    accuracy = float(np.mean(model.predict(xt, verbose=0).argmax(axis=1) == yt))
    return accuracy, seconds


def logistic_regression(task, size: int, data) -> tuple[float, float]:
    """(b): scikit-learn on the frozen feature layer's pooled features."""
    from sklearn.linear_model import LogisticRegression

    import zoo_transfer
    from zoo_transfer.features import backbone_features, split_head
    from zoo_transfer.linear_head import L2_GRID

    (x, y), (xv, yv), (xt, yt) = data
    begin = time.perf_counter()
    model = zoo_transfer.build(task.model, int(y.max()) + 1, input_shape=(size, size, 3),
                               weights=task.weights)  # fmt: skip
    trunk, _ = split_head(model)
    f, _ = backbone_features(trunk, (x, y))
    fv, _ = backbone_features(trunk, (xv, yv))
    ft, _ = backbone_features(trunk, (xt, yt))
    mean, scale = f.mean(0), f.std(0) + 1e-6
    z, zv, zt = ((a - mean) / scale for a in (f, fv, ft))
    fits = [LogisticRegression(C=1 / (l2 * len(y)), max_iter=5000).fit(z, y) for l2 in L2_GRID]
    best = max(fits, key=lambda m: m.score(zv, yv))
    seconds = time.perf_counter() - begin
    return float(best.score(zt, yt)), seconds


def _script() -> str:
    beside = Path(sys.executable).with_name("zoo-transfer")
    return str(beside) if beside.exists() else "zoo-transfer"


def _shell(*args: str) -> str:
    proc = subprocess.run([_script(), *args], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"zoo-transfer {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def zoo_transfer_cli(task, size: int, out: Path, extra: tuple[str, ...], tta_if_it_pays: bool):
    """(c) and (d): the console script, as a user runs it."""
    shutil.rmtree(out, ignore_errors=True)
    begin = time.perf_counter()
    _shell("train", task.model, "--data", str(task.train), "--validation", str(task.val),
           "--image-size", str(size), "--weights", task.weights, "--out", str(out),
           "--quiet", *extra)  # fmt: skip
    seconds = time.perf_counter() - begin
    tta = "none"
    metrics = json.loads((out / "metrics.json").read_text())
    if tta_if_it_pays:  # the augmentation the run's own validation images favour, if any
        tried = {k.removeprefix("val_accuracy_tta_"): v for k, v in metrics.items()
                 if k.startswith("val_accuracy_tta_")}  # fmt: skip
        best = max(tried, key=tried.get, default="none")
        tta = best if tried and tried[best] > metrics["val_accuracy"] else "none"
    report = json.loads(_shell("evaluate", str(out / "final.keras"), "--data", str(task.test),
                               "--format", "json", "--tta", tta))  # fmt: skip
    probe = json.loads((out / "probe.json").read_text()) if (out / "probe.json").exists() else {}
    return report["accuracy"], seconds, tta, probe.get("val_accuracy")


def _in_process(method: str, name: str, size: int, work: str) -> None:
    """One of (a) and (b) in this process: prints its test accuracy as JSON."""
    task = prepare(name, Path(work))
    data = [_arrays(f, size) for f in (task.train, task.val, task.test)]
    accuracy, _ = {"guide": keras_guide, "logreg": logistic_regression}[method](task, size, data)
    print(json.dumps({"accuracy": accuracy, "counts": [len(d[1]) for d in data]}))


def _fresh(method: str, name: str, size: int, work: str) -> tuple[float, float, list[int]]:
    """(a) or (b) in a new process; its accuracy and wall time, and the image counts."""
    begin = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--method", method, "--tasks", name, "--size", str(size),
         "--work", work],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    seconds = time.perf_counter() - begin
    if proc.returncode != 0:
        raise SystemExit(f"{method} on {name} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["accuracy"], seconds, result["counts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="fashion,digits")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "zoo-bench-tasks"))
    parser.add_argument("--method", choices=("guide", "logreg"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        _in_process(args.method, args.tasks, args.size, args.work)
        return
    rows = []
    for name in args.tasks.split(","):
        task = prepare(name, Path(args.work))
        size = 32 if task.model.startswith("digitnet") else args.size
        a = _fresh("guide", name, size, args.work)
        counts = " / ".join(f"{n} {k}" for n, k in zip(a[2], ("train", "val", "test"), strict=True))
        print(f"\n== {name}: {task.model} at {size} px; {counts} images {task.note}", flush=True)
        print(f"  (a) Keras guide by hand         {a[0]:.4f}  {a[1]:6.1f} s", flush=True)
        b = _fresh("logreg", name, size, args.work)
        print(f"  (b) logistic regression         {b[0]:.4f}  {b[1]:6.1f} s", flush=True)
        out = Path(args.work) / f"run-{name}"
        c = zoo_transfer_cli(task, size, out, (), tta_if_it_pays=False)
        print(f"  (c) zoo-transfer train defaults {c[0]:.4f}  {c[1]:6.1f} s  "
              f"(probe on val {c[3]})", flush=True)  # fmt: skip
        d = zoo_transfer_cli(task, size, out, ("--epochs", "10"), tta_if_it_pays=True)
        print(f"  (d) --epochs 10, tta by val     {d[0]:.4f}  {d[1]:6.1f} s  (tta {d[2]})",
              flush=True)  # fmt: skip
        rows.append((name, a, b, c, d))
    print("\ntask      (a) guide        (b) logreg       (c) defaults     (d) best         "
          "c-b     c-a     time c/a")  # fmt: skip
    for name, a, b, c, d in rows:
        print(f"{name:9} {a[0]:.4f} {a[1]:5.0f}s  {b[0]:.4f} {b[1]:5.0f}s  "
              f"{c[0]:.4f} {c[1]:5.0f}s  {d[0]:.4f} {d[1]:5.0f}s  "
              f"{c[0] - b[0]:+.4f} {c[0] - a[0]:+.4f} {c[1] / a[1]:.2f}")  # fmt: skip
    worst = min(rows, key=lambda r: r[3][0] - r[2][0])
    print(
        f"ratio {max(r[3][1] / r[1][1] for r in rows):.2f} (wall time of the defaults / the "
        f"guide's, worst task; smallest gain over the probe {worst[3][0] - worst[2][0]:+.4f})"
    )


if __name__ == "__main__":
    main()
