"""Images/s of `fit` with all three zoo-transfer training pieces vs a plain `fit`.

Same model architecture, data and pipeline, in one run. The schedules change nothing
during the measured epochs (the unfreeze happens in the warm-up epoch, the size is
constant), so the ratio is pure overhead: the per-layer optimizer of
`transfer_optimizer`, and the callbacks' per-epoch work. Target >= 0.97.

    python benchmarks/callback_overhead.py [--epochs 4] [--images 512] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class EpochTimer:
    def __init__(self, keras):
        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.start)

        self.callback = Timer()
        self.callback.times = []


def run(with_callbacks: bool, args) -> float:
    import keras
    import numpy as np

    import zoo_transfer
    from zoo_transfer.callbacks import GradualUnfreezing, ProgressiveResizing
    from zoo_transfer.data import ResizableImages
    from zoo_transfer.optimizers import transfer_optimizer

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.images, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 5, args.images)
    train = ResizableImages(x, y, size=args.size, batch_size=32)
    timer = EpochTimer(keras)
    if with_callbacks:
        model = zoo_transfer.build(args.model, 5, weights=None, input_shape=(None, None, 3))
        model.compile(
            transfer_optimizer(
                model, "adam", learning_rate=1e-3, lr_mult={"stage4": 0.1, "head": 1.0}
            ),
            "sparse_categorical_crossentropy",
        )
        callbacks = [
            GradualUnfreezing({0: "stage4"}, verbose=0),
            ProgressiveResizing({0: args.size}, train, verbose=0),
            timer.callback,
        ]
    else:
        model = zoo_transfer.build(
            args.model, 5, weights=None, input_shape=(None, None, 3), trainable_from="stage4"
        )
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        callbacks = [timer.callback]
    model.fit(train.dataset(), epochs=args.epochs + 1, verbose=0, callbacks=callbacks)
    measured = timer.callback.times[1:]  # epoch 0 traces and warms up
    steps = args.images // 32
    return steps * 32 * len(measured) / sum(measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="alternate the two sides this many times; best of each",
    )
    args = parser.parse_args()
    plain_runs, our_runs = [], []
    for _ in range(args.repeat):  # alternate, so background load hits both sides
        plain_runs.append(run(False, args))
        our_runs.append(run(True, args))
    plain, ours = max(plain_runs), max(our_runs)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"plain fit              {plain:8.1f} images/s")
    print(f"with zoo-transfer      {ours:8.1f} images/s")
    ratio = ours / plain
    print(
        f"ratio {ratio:.3f} (target >= 0.97: {'met' if ratio >= 0.97 else 'MISSED'}); "
        f"peak RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
