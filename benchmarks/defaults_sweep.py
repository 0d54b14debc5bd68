"""The sweep the training defaults were chosen from: linear probe, then fine-tune (LP-FT).

For each task of `benchmarks/_tasks.py` (three real tasks of different kinds) and each
setting of the grid below, in one process: build the model, fit the converged linear
head on the un-augmented training images (`fit_linear_head`, L2 chosen on the validation
images), then fine-tune with `transfer_optimizer` (discriminative LRs, lo..hi spread) and
`GradualUnfreezing` from epoch 1, BatchNorm in inference mode unless `bn=train`. Every
epoch is scored on the validation and on the test images; the table shows the test
accuracy of the probe, of the last epoch, and of the epoch with the best validation
accuracy (what `best.keras` holds), and the wall time.

    python benchmarks/defaults_sweep.py [--tasks fashion,digits,digits59] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tasks import TASKS, prepare  # noqa: E402

# (name, settings): the grid. `unfreeze` is a stage name or an int n (the last n stages).
GRID = [
    ("probe 1 stage", {"epochs": 0, "head_stages": 1}),
    ("probe 3 stages", {"epochs": 0, "head_stages": 3}),
    ("probe 4 stages", {"epochs": 0, "head_stages": 4}),
    ("probe 3 stages avgmax", {"epochs": 0, "head_stages": 3, "pooling": "avgmax"}),
    ("lp-ft 3 stages avgmax 1e-4 light", {"epochs": 5, "lr": 1e-4, "unfreeze": "all",
                                          "augment": "light", "head_stages": 3,
                                          "pooling": "avgmax"}),
    ("lp-ft 3 stages avgmax 1e-4 light 15 epochs", {"epochs": 15, "lr": 1e-4, "unfreeze": "all",
                                                    "augment": "light", "head_stages": 3,
                                                    "pooling": "avgmax"}),
    ("lp-ft 3 stages avgmax 1e-4 light 10 epochs", {"epochs": 10, "lr": 1e-4, "unfreeze": "all",
                                                    "augment": "light", "head_stages": 3,
                                                    "pooling": "avgmax"}),
    ("lp-ft 3 stages 1e-4 light", {"epochs": 5, "lr": 1e-4, "unfreeze": "all",
                                   "augment": "light", "head_stages": 3}),
    ("lp-ft 3 stages 1e-4 none", {"epochs": 5, "lr": 1e-4, "unfreeze": "all",
                                  "augment": "none", "head_stages": 3}),
    ("lp-ft 3 stages 3e-4 light", {"epochs": 5, "lr": 3e-4, "unfreeze": "all",
                                   "augment": "light", "head_stages": 3}),
    ("lp-ft 3 stages 1e-4 light bn=train", {"epochs": 5, "lr": 1e-4, "unfreeze": "all",
                                            "augment": "light", "head_stages": 3,
                                            "bn": "train"}),
]  # fmt: skip


def run(task, label: str, settings: dict, size: int) -> dict:
    import keras

    import zoo_transfer
    from zoo_transfer.callbacks import GradualUnfreezing
    from zoo_transfer.data import load
    from zoo_transfer.linear_head import fit_linear_head
    from zoo_transfer.optimizers import transfer_optimizer
    from zoo_transfer.recipes.stages import find_backbone
    from zoo_transfer.training import fit_transfer

    keras.utils.set_random_seed(0)
    splits = load(str(task.train), image_size=size, batch_size=32, validation=str(task.val),
                  augment=settings.get("augment", "none"), seed=0)  # fmt: skip
    test = load(str(task.test), image_size=size, batch_size=64, validation_split=None,
                augment="none").train_images.in_order().dataset()  # fmt: skip
    model = zoo_transfer.build(task.model, len(splits.class_names),
                               input_shape=(size, size, 3), weights=task.weights,
                               head_stages=settings.get("head_stages", 1),
                               pooling=settings.get("pooling", "avg"))  # fmt: skip
    begin = time.perf_counter()
    probe = fit_linear_head(model, splits)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    probe_test = model.evaluate(test, verbose=0)[1]
    scored = [(probe.val_accuracy, probe_test)]
    if settings["epochs"]:
        _, card = find_backbone(model)
        what = card.stage_names[0] if settings["unfreeze"] == "all" else settings["unfreeze"]
        model.compile(transfer_optimizer(model, "adam", learning_rate=settings["lr"],
                                         lr_mult=(0.1, 1.0)),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip

        class Score(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                scored.append((logs["val_accuracy"], self.model.evaluate(test, verbose=0)[1]))

        fit_transfer(model, splits, epochs=settings["epochs"], cache="never", verbose=0,
                     callbacks=[GradualUnfreezing({0: what}, bn=settings.get("bn", "frozen"),
                                                  verbose=0), Score()])  # fmt: skip
    seconds = time.perf_counter() - begin
    best = max(range(len(scored)), key=lambda i: (scored[i][0], -i))
    row = {"task": task.name, "setting": label, "probe_test": scored[0][1],
           "last_test": scored[-1][1], "best_epoch": best, "best_test": scored[best][1],
           "val": [round(v, 4) for v, _ in scored], "test": [round(t, 4) for _, t in scored],
           "seconds": round(seconds, 1)}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--only", default="", help="comma-separated grid labels")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "zoo-bench-tasks"))
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    rows = []
    for name in args.tasks.split(","):
        task = prepare(name, Path(args.work))
        if task.note:
            print(f"# {task.name}: {task.note}")
        size = 32 if task.model.startswith("digitnet") else args.size
        for label, settings in GRID:
            if not only or label in only:
                rows.append(run(task, label, settings, size))
    print(f"\n{'task':12} {'setting':42} {'probe':>6} {'last':>6} {'best':>6} {'ep':>3} "
          f"{'best@5':>6} {'best@10':>7} {'s':>6}")  # fmt: skip
    for r in rows:
        print(f"{r['task']:12} {r['setting']:42} {r['probe_test']:6.3f} {r['last_test']:6.3f} "
              f"{r['best_test']:6.3f} {r['best_epoch']:3d} {_best_within(r, 5):>6} "
              f"{_best_within(r, 10):>7} {r['seconds']:6.1f}")  # fmt: skip


def _best_within(row: dict, epochs: int) -> str:
    """Test accuracy of what `final.keras` would hold had the run stopped after `epochs`
    (Adam's rate is constant, so a shorter run's epochs are this run's first ones)."""
    if len(row["val"]) <= epochs:
        return "-"
    val = row["val"][: epochs + 1]
    best = max(range(len(val)), key=lambda i: (val[i], -i))
    return f"{row['test'][best]:.3f}"


if __name__ == "__main__":
    main()
