"""Images/s of `zoo_transfer.data.load` vs `keras.utils.image_dataset_from_directory`.

Writes a temporary folder of JPEGs (10 classes, smooth random images of 200-300 px),
then iterates each pipeline for a few epochs at 160 px, batch 32, both with
`prefetch(AUTOTUNE)`, and prints images/s and peak RSS. Each pipeline runs in its own
child process, so the RSS peaks and the TensorFlow thread pools do not mix. The clock
starts before the pipeline is built: zoo-transfer's first decode pass (and the Keras
file listing) count. A third row, Keras with `.cache()`, shows how much of the gain is
caching alone. The runs alternate between the pipelines, `--repeats` times, and the
median run of each is reported (shared machines are noisy). Target ratio >= 1.0.

    python benchmarks/pipeline.py [--images 1000] [--epochs 3] [--size 160] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_folder(root: str, images: int, classes: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(images):
        label = i % classes
        h, w = (int(v) for v in rng.integers(200, 301, 2))
        # smooth colour gradients plus noise: JPEG sizes like photos, not like pure noise
        yy, xx = np.mgrid[0:h, 0:w]
        base = rng.uniform(0, 255, 3) + rng.uniform(-0.5, 0.5, 3) * (yy[..., None] + xx[..., None])
        pixels = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        folder = os.path.join(root, f"class_{label:02d}")
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def measure(kind: str, folder: str, size: int, epochs: int, batch: int) -> dict:
    import tensorflow as tf

    start = time.perf_counter()
    if kind == "zoo_transfer":
        from zoo_transfer.data import load

        ds = load(folder, image_size=size, batch_size=batch, augment="none").train
    else:
        import keras

        ds = keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=batch, seed=0, verbose=False
        )
        if kind == "keras+cache":
            ds = ds.cache()
        ds = ds.prefetch(tf.data.AUTOTUNE)
    built = time.perf_counter() - start
    seen, epoch_times = 0, []
    for _ in range(epochs):
        t = time.perf_counter()
        for images, _labels in ds:
            seen += int(images.shape[0])
        epoch_times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    return {
        "kind": kind,
        "images": seen,
        "seconds": total,
        "build_s": built,
        "epoch_s": epoch_times,
        "img_per_s": seen / total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(kind: str, args) -> dict:
    command = [
        sys.executable,
        __file__,
        "--only",
        kind,
        "--folder",
        args.folder,
        "--size",
        str(args.size),
        "--epochs",
        str(args.epochs),
        "--batch",
        str(args.batch),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{kind} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args.folder, args.size, args.epochs, args.batch)))
        return

    with tempfile.TemporaryDirectory(prefix="zoo_pipeline_") as folder:
        args.folder = folder
        t = time.perf_counter()
        make_folder(folder, args.images, args.classes)
        print(
            f"{args.images} JPEGs (200-300 px, {args.classes} classes) written in "
            f"{time.perf_counter() - t:.1f} s; {args.epochs} epochs at {args.size} px, "
            f"batch {args.batch}, CPUs: {os.cpu_count()}"
        )
        runs: dict[str, list[dict]] = {"keras": [], "zoo_transfer": [], "keras+cache": []}
        for _ in range(args.repeats):
            for kind, done in runs.items():
                done.append(child(kind, args))
    results = {}
    for kind, done in runs.items():
        done.sort(key=lambda r: r["img_per_s"])
        results[kind] = done[len(done) // 2]
        rates = ", ".join(f"{r['img_per_s']:.0f}" for r in done)
        print(f"{kind:>13} runs: {rates} img/s")
    for r in results.values():
        epochs = ", ".join(f"{s:.2f}" for s in r["epoch_s"])
        print(
            f"{r['kind']:>13} median: {r['img_per_s']:5.0f} img/s over {r['images']} images "
            f"in {r['seconds']:.2f} s (build {r['build_s']:.2f} s; epochs {epochs} s); "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB"
        )
    zoo, keras = results["zoo_transfer"], results["keras"]
    print(
        f"ratio: {zoo['img_per_s'] / keras['img_per_s']:.2f} (zoo_transfer "
        f"{zoo['img_per_s']:.0f} img/s vs keras {keras['img_per_s']:.0f} img/s)"
    )
    cached = results["keras+cache"]
    print(
        f"ratio vs keras+cache: {zoo['img_per_s'] / cached['img_per_s']:.2f} "
        f"(keras+cache {cached['img_per_s']:.0f} img/s)"
    )


if __name__ == "__main__":
    main()
