"""Wall time of a 3-stage progressive-resizing schedule vs the same epochs at the final size.

Same model (`mobilenet_v2`, random weights, every layer trainable), same
initial weights, same images and pipeline (`zoo_transfer.data.load` of an in-memory
set stored at the final size; `train_images` is the `ResizableImages` the callback
resizes), same number of epochs, in one run. The progressive side runs
`ProgressiveResizing({0: 96, 3: 128, 5: 160})` over 6 epochs, the other side 6 epochs at
160 px. The clock covers the whole `fit`, traces and compiles included. A probe
layer at the model's input counts, in Python, the traces of the forward pass per
input side (None: a trace generic in the side, as TensorFlow makes them for a pipeline
whose image sides vary). The two sides alternate `--repeat` times; the best run of
each is compared. Targets: ratio <= 0.6, and at most one trace per size (the schedule
adds at most one trace per size change over training at one size).

`mobilenet_v2` rather than `mobilenet_v3_small`: a model that small spends much of a
CPU step on per-step costs that do not shrink with the image (optimizer update,
framework overhead), so its steady-state epochs scale worse than the pixel count.

    python benchmarks/progressive.py [--images 256] [--epochs 6] [--sizes 96 128 160]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections import Counter

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def images(progressive: bool, args) -> tuple[object, int]:
    """A fresh Keras session and the run's images (`Splits`, stored at the final size),
    read at the first size of the side: `(splits, first size)`."""
    import keras
    import numpy as np

    from zoo_transfer.data import load

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    final = args.sizes[-1]
    x = rng.uniform(0, 255, (args.images, final, final, 3)).astype("uint8")
    y = rng.integers(0, 10, args.images)
    first = args.sizes[0] if progressive else final
    splits = load((x, y), image_size=first, storage_size=final, batch_size=32, augment="none")
    return splits, first


def epoch_timer(epoch_s: list) -> object:
    """A callback appending each epoch's wall time (s) to `epoch_s`."""
    import keras

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_s.append(time.perf_counter() - self.start)

    return Timer()


def compare(run, args) -> tuple[dict, float, float]:
    """Alternate the two sides of `run(progressive, args)` `args.repeat` times (so
    background load hits both), print each side's best run: `(best, ratio, pixel ratio)`."""
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(args.repeat):
        for progressive in (False, True):
            runs[progressive].append(run(progressive, args))
    best = best_runs(runs, args)
    pixels = sum(best[True]["sizes"][e] ** 2 for e in range(args.epochs))
    ideal = pixels / (args.epochs * args.sizes[-1] ** 2)
    return best, best[True]["wall"] / best[False]["wall"], ideal


def best_runs(runs: dict, args) -> dict:
    """Print each side's best run, its runs' times and its epochs; return the best."""
    best = {side: min(done, key=lambda r: r["wall"]) for side, done in runs.items()}
    for side, label in ((False, "final size only"), (True, "progressive")):
        r = best[side]
        walls = ", ".join(f"{d['wall']:.1f}" for d in runs[side])
        epochs = ", ".join(f"{s}px {t:.1f}" for s, t in zip(r["sizes"], r["epoch_s"], strict=True))
        print(f"{label:<16} best {r['wall']:6.1f} s (runs {walls}); epochs [s] {epochs}")
        if "traces" in r:
            traces = ", ".join(f"{k}: {v}" for k, v in sorted(r["traces"].items(), key=str))
            print(f"{'':<16} traces per input side: {traces}")
    return best


def run(progressive: bool, args) -> dict:
    import keras

    import zoo_transfer
    from zoo_transfer.callbacks import ProgressiveResizing

    splits, _ = images(progressive, args)
    final = args.sizes[-1]

    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    traces: list = []

    class Probe(keras.layers.Layer):
        def call(self, inputs):
            if not in_symbolic_scope():  # a real trace, not Keras' shape inference
                traces.append(inputs.shape[1])  # Python runs once per trace
            return inputs

        def compute_output_shape(self, shape):
            return shape

    inner = zoo_transfer.build(
        args.model, 10, weights=None, input_shape=(None, None, 3), trainable_from=0
    )
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, inner(Probe()(inputs)))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    epoch_s: list[float] = []
    callbacks = [epoch_timer(epoch_s)]
    if progressive:
        callbacks.insert(0, ProgressiveResizing(args.schedule, splits.train_images, verbose=0))
    traces.clear()
    start = time.perf_counter()
    history = model.fit(splits.train, epochs=args.epochs, verbose=0, callbacks=callbacks)
    wall = time.perf_counter() - start
    sizes = history.history.get("image_size", [final] * args.epochs)
    return {"wall": wall, "epoch_s": epoch_s, "sizes": sizes, "traces": Counter(traces)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--sizes", type=int, nargs=3, default=(96, 128, 160))
    parser.add_argument(
        "--starts",
        type=int,
        nargs=3,
        default=(0, 3, 5),
        help="first epoch of each size (default 0 3 5: 3, 2 and 1 epochs)",
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="alternate the two sides this many times"
    )
    args = parser.parse_args()
    args.schedule = dict(zip(args.starts, args.sizes, strict=True))
    print(
        f"{args.model} (all layers trainable), {args.images} images, batch 32, "
        f"{args.epochs} epochs: schedule {args.schedule} vs {args.sizes[-1]} px; "
        f"CPUs {os.cpu_count()}"
    )
    best, ratio, ideal = compare(run, args)
    prog, fixed = best[True]["traces"], best[False]["traces"]
    added = sum(prog.values()) - sum(fixed.values())
    concrete = max((v for k, v in prog.items() if k is not None), default=0)
    traces_ok = added <= len(args.sizes) - 1 and concrete <= 1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"traces: resizing added {added} over one size, at most {concrete} per concrete "
        f"size (target at most one per size: {'met' if traces_ok else 'MISSED'})"
    )
    print(
        f"ratio {ratio:.3f} (target <= 0.6: {'met' if ratio <= 0.6 else 'MISSED'}; "
        f"pixel ratio {ideal:.3f}); peak RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
