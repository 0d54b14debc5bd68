"""LoRA against full fine-tuning and a frozen backbone, on real pretrained weights
(issue 12, point 4).

Per task, in this one process, from the same pretrained weights and the same head
initialisation, `--epochs` epochs of Adam each:
  (a) frozen backbone, the head alone (`build(...)`);
  (b) full fine-tuning (`build(..., trainable_from=<first stage>)`), BatchNorm in
      inference mode;
  (c) LoRA of each `--ranks` (`build(..., lora_rank=r)`): Keras' layer-level LoRA on
      every Conv2D of the CNN, everything else frozen.
Each row's learning rate is chosen on the validation images from `--lrs`; the test
images, seen by nothing before, give the accuracy printed. Also printed: how many
parameters each way trains, and the size of what it must store beyond the pretrained
model (`save_lora`'s file for LoRA, the whole `.keras` for full fine-tuning).

The tasks are the shared ones of `_tasks.py` with a real ImageNet trunk: `fashion`
(MobileNet v1 0.25, Fashion-MNIST 1,000 train / 500 val / 3,000 test) and `digits`
(the Teachable Machine MobileNetV2 0.35 trunk, scikit-learn digits 300 / 200 / ~1,300).
keras-hub's transformers take the same `lora_rank` (keras-hub's `enable_lora`), but no
pretrained transformer preset can be downloaded here, so this runs on the CNNs.

    python benchmarks/lora.py [--tasks fashion,digits] [--size 96] [--epochs 6]
        [--ranks 4,16] [--lrs 1e-3,1e-4] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tasks import prepare  # noqa: E402


def _arrays(folder: Path, size: int):
    from zoo_transfer.data import load

    # every image, in order: the validation side of `load` drops no partial batch
    _, every, names = load(
        str(folder), image_size=size, batch_size=64, validation=str(folder), augment="none"
    )
    xs, ys = [], []
    for x, y in every:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    return np.concatenate(xs), np.concatenate(ys), names


def _row(label, make, data, lrs, epochs, seed, work):
    import keras

    import zoo_transfer

    (x, y), (xv, yv), (xt, yt) = data
    best = None
    for lr in lrs:
        keras.utils.set_random_seed(seed)
        model = make()
        model.compile(
            keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        t = time.perf_counter()
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
        seconds = time.perf_counter() - t
        val = model.evaluate(xv, yv, verbose=0, batch_size=128)[1]
        if best is None or val > best[0]:
            best = (val, lr, seconds, model)
    val, lr, seconds, model = best
    test = model.evaluate(xt, yt, verbose=0, batch_size=128)[1]
    trained = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    if "LoRA" in label:
        stored = zoo_transfer.save_lora(model, work / "adapter.npz").stat().st_size
    else:
        model.save(work / "model.keras")
        stored = (work / "model.keras").stat().st_size
    return {
        "label": label, "test": test, "val": val, "lr": lr, "seconds": seconds,
        "trained": trained, "total": model.count_params(), "stored": stored,
    }  # fmt: skip


def run_task(name: str, args, work: Path) -> list[dict]:
    import zoo_transfer

    task = prepare(name, work / "tasks")
    size = args.size
    shape = (size, size, 3)
    train = _arrays(task.train, size)
    classes = len(train[2])
    data = [train[:2], _arrays(task.val, size)[:2], _arrays(task.test, size)[:2]]
    first = zoo_transfer.get_card(task.model).stages[0].name

    def make(**kwargs):
        return lambda: zoo_transfer.build(
            task.model, classes, weights=task.weights, input_shape=shape, **kwargs
        )

    ways = [
        ("frozen backbone, head only", make()),
        (f"full fine-tuning (trainable_from={first})", make(trainable_from=first)),
    ]
    ways += [(f"LoRA rank {r}", make(lora_rank=r)) for r in args.ranks]  # fmt: skip
    print(
        f"\n== {name}: {task.model} ({task.weights.rsplit('/', 1)[-1]}), {size} px, "
        f"{len(data[0][1])} train / {len(data[1][1])} val / {len(data[2][1])} test, "
        f"{args.epochs} epochs, lr chosen on val from {args.lrs} {task.note}"
    )
    print(f"  {'way':42s} {'test acc':>8s} {'val acc':>8s} {'lr':>7s} {'trained':>10s} "
          f"{'% of all':>8s} {'stored':>10s} {'fit s':>6s}")  # fmt: skip
    rows = []
    for label, maker in ways:
        row = _row(label, maker, data, args.lrs, args.epochs, args.seed, work)
        rows.append(row)
        print(
            f"  {label:42s} {row['test']:8.4f} {row['val']:8.4f} {row['lr']:7.0e} "
            f"{row['trained']:10,d} {100 * row['trained'] / row['total']:7.2f}% "
            f"{row['stored'] / 1e3:8.0f} kB {row['seconds']:6.1f}"
        )
    full = rows[1]
    for row in rows[2:]:
        print(
            f"  {row['label']}: {row['test'] - full['test']:+.4f} test accuracy vs full "
            f"fine-tuning with {row['trained'] / full['trained']:.1%} of its trained "
            f"parameters; vs head only {row['test'] - rows[0]['test']:+.4f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="fashion,digits")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--ranks", default="4,16")
    parser.add_argument("--lrs", default="1e-3,1e-4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    args.ranks = [int(r) for r in args.ranks.split(",")]
    args.lrs = [float(v) for v in args.lrs.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="zoo-lora-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in args.tasks.split(","):
        run_task(name, args, work)


if __name__ == "__main__":
    main()
