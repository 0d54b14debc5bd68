"""What fine-tuning makes a model forget, and what the guards keep (issue 15, point 5).

MobileNet 0.25 with its real ImageNet weights is fine-tuned on Fashion-MNIST (the
`fashion` task of `_tasks.py`: 1,000 training images, 128 px) by `zoo-transfer train`,
from the shell, one way per row. Then the fine-tuned backbone gets its original ImageNet
classifier back and is scored on the 100 shared ImageNet images (`imagenet-sample`, one
per class): how many it still has in its top 5 (84 before any fine-tuning). The Fashion
test accuracy (3,000 images) says what each way gives on the new task.

Rows: plain fine-tuning (no probe, the last epoch), L2-SP (`--l2-sp`, each strength
given), LP-FT (the default: `final.keras` is the best of the probe and the epochs on the
validation images, so where the probe wins the backbone is the pretrained one), LP-FT's
last epoch (`--final last`), LP-FT + WiSE-FT (`--wise-ft sweep`: the probe's weights
mixed with the last epoch's, alpha chosen on the validation images).
Target: a guard keeps at least 70 of the 84 hits while its Fashion accuracy stays within
1 point of plain fine-tuning.

    python benchmarks/forgetting.py [--epochs 5] [--l2-sp 0.01,1] [--work DIR]
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

MODEL = "mobilenet.a025_224"


def _script() -> str:
    beside = Path(sys.executable).with_name("zoo-transfer")
    return str(beside) if beside.exists() else "zoo-transfer"


def _shell(*args: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([_script(), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"zoo-transfer {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def imagenet_hits(backbone_source: Path | None, weights: str) -> int:
    """Top-5 hits on the 100 shared ImageNet images of the ImageNet classifier whose
    backbone weights come from `backbone_source` (a fine-tuned `.keras`; None: as
    pretrained)."""
    import keras

    import zoo_transfer
    from zoo_transfer.input_spec import InputSpec
    from zoo_transfer.recipes.stages import find_backbone
    from zoo_transfer.registry import get_card

    classifier = zoo_transfer.build(MODEL, num_classes=None, weights=weights)
    if backbone_source is not None:
        tuned = keras.saving.load_model(backbone_source, compile=False)
        backbone, _ = find_backbone(tuned)
        target = {layer.name: layer for layer in classifier.get_layer("mobilenet").layers}
        copied = 0
        for layer in backbone.layers:
            if layer.weights:
                target[layer.name].set_weights(layer.get_weights())
                copied += 1
        assert copied > 20, copied  # every conv and BatchNorm layer of the backbone
    spec = InputSpec.from_card(get_card(MODEL))
    files = sorted((shared_data() / "imagenet-sample").iterdir())
    images = np.stack([_evaluation_crop(f, spec.side, spec.crop_fraction) for f in files])
    probs = classifier.predict(images, verbose=0, batch_size=25)
    truth = np.arange(len(files)) * 10  # one image per tenth class (shared README)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    return int(sum(t in row for t, row in zip(truth, top5, strict=True)))


def _evaluation_crop(path: Path, side: int, fraction: float) -> np.ndarray:
    """ImageNet's evaluation view: shorter side to side / crop_pct, then the centre square."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    scale = side / fraction / min(image.size)
    w, h = round(image.width * scale), round(image.height * scale)
    image = image.resize((w, h), Image.BILINEAR)
    left, top = (w - side) // 2, (h - side) // 2
    return np.asarray(image.crop((left, top, left + side, top + side)), dtype="float32")


def run(task, weights: str, out: Path, extra: list[str]) -> tuple[float, float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    begin = time.perf_counter()
    _shell("train", MODEL, "--data", str(task.train), "--validation", str(task.val),
           "--image-size", "128", "--weights", weights, "--out", str(out), "--quiet",
           *extra)  # fmt: skip
    seconds = time.perf_counter() - begin
    report = json.loads(_shell("evaluate", str(out / "final.keras"), "--data", str(task.test),
                               "--format", "json"))  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    return float(report["accuracy"]), seconds, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--l2-sp", default="0.01,1", help="comma-separated strengths")
    parser.add_argument("--work", default="/tmp/zoo-bench-tasks")
    args = parser.parse_args()
    work = Path(args.work)
    task = prepare("fashion", work)
    weights = str(shared_data() / "imagenet" / "mobilenet_v1_0.25_224.weights.h5")
    epochs = ["--epochs", str(args.epochs)]
    ways = {"plain fine-tuning": [*epochs, "--no-probe", "--final", "last"]}
    for alpha in args.l2_sp.split(","):
        ways[f"L2-SP ({alpha})"] = [*epochs, "--no-probe", "--final", "last", "--l2-sp", alpha]
    ways["LP-FT (default)"] = [*epochs]
    ways["LP-FT, last epoch"] = [*epochs, "--final", "last"]
    ways["LP-FT + WiSE-FT (sweep)"] = [*epochs, "--wise-ft", "sweep"]
    before = imagenet_hits(None, weights)
    print(f"before fine-tuning: ImageNet top-5 hits {before}/100")
    rows = []
    for i, (name, extra) in enumerate(ways.items()):
        out = work / "forgetting" / f"way{i}"
        accuracy, seconds, metrics = run(task, weights, out, extra)
        hits = imagenet_hits(out / "final.keras", weights)
        alpha = (metrics.get("wise_ft") or {}).get("alpha")
        rows.append((name, accuracy, hits, seconds, alpha))
    plain = rows[0][1]
    print(f"\n{'way':<26} {'fashion test':>12} {'ImageNet top-5':>15} {'seconds':>8}")
    for name, accuracy, hits, seconds, alpha in rows:
        note = f"  (alpha {alpha})" if alpha is not None else ""
        print(f"{name:<26} {accuracy:>12.4f} {hits:>11}/100 {seconds:>8.0f}{note}")
    kept = [r for r in rows[1:] if r[2] >= 70 and r[1] >= plain - 0.01]
    print(f"\nguards keeping >= 70 of {before} hits within 1 point of plain fine-tuning "
          f"({plain:.4f}): {', '.join(r[0] for r in kept) or 'none'}")  # fmt: skip


if __name__ == "__main__":
    main()
