"""GPU check on Keras 3 + JAX, without TensorFlow: `build` vs raw Keras, and retraces.

Two checks, in one run, on whatever device JAX sees first (a lent GPU, or the CPU):

(a) Train-step and predict-step time of `zoo_transfer.build(MODEL, CLASSES,
    weights=None, trainable_from=0, bn="train")` (everything trainable, like the raw
    model) vs the raw `keras.applications` model of the same card with the same head
    size, both under `mixed_float16` and `jit_compile=True`, on the same device-resident
    batch. The two sides alternate `--rounds` times; the median round of each is
    compared. Target: ratio within 5% (0.95-1.05).
(b) `ProgressiveResizing` over `zoo_transfer.data.ResizableArrays` (the TensorFlow-free
    source), two epochs per size: a probe layer counts the traces of the model's
    forward pass per input size (Python in a jitted function runs once per trace) and
    records the side of the batches. Target: exactly one trace per size, and every
    epoch's batches at the scheduled size.

It never imports TensorFlow (it says so at the end, and fails if something did).

    KERAS_BACKEND=jax python benchmarks/gpu_check.py            # ResNet50, 224 px, batch 64
    KERAS_BACKEND=jax python benchmarks/gpu_check.py --quick    # CPU rehearsal: 64 px, batch 8
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")


def _device() -> str:
    import keras

    if keras.backend.backend() != "jax":
        return f"{keras.backend.backend()} backend"
    import jax

    dev = jax.devices()[0]
    return f"{dev.platform}: {getattr(dev, 'device_kind', dev)} (jax {jax.__version__})"


def _count(weights) -> int:
    import math

    return sum(math.prod(int(d) for d in w.shape) for w in weights)


def _compile(model, keras) -> None:
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=True,
    )


def _time_steps(fn, steps: int) -> float:
    """Seconds per call of `fn` (each call returns host values, so it waits for the device)."""
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def step_times(args) -> dict:
    """Check (a): build() vs the raw Keras model, train and predict step times."""
    import keras
    import numpy as np

    import zoo_transfer
    from zoo_transfer.recipes import instantiate

    keras.config.set_dtype_policy(args.policy)
    keras.utils.set_random_seed(0)
    shape = (args.size, args.size, 3)
    ours = zoo_transfer.build(
        args.model,
        args.classes,
        weights=None,
        input_shape=shape,
        trainable_from=0,
        bn="train",
    )
    card = zoo_transfer.get_card(args.model)
    raw = instantiate(card, include_top=True, weights=None, input_shape=shape, classes=args.classes)
    for model in (ours, raw):
        _compile(model, keras)
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.uniform(0, 255, (args.batch, *shape)).astype("float32"))
    y = keras.ops.convert_to_tensor(rng.integers(0, args.classes, args.batch).astype("int32"))
    sides = {"zoo_transfer.build": ours, "raw keras": raw}
    compile_s = {}
    for label, model in sides.items():  # first calls trace and compile
        t = time.perf_counter()
        model.train_on_batch(x, y)
        model.predict_on_batch(x)
        compile_s[label] = time.perf_counter() - t
        for _ in range(2):
            model.train_on_batch(x, y)
    train = {label: [] for label in sides}
    predict = {label: [] for label in sides}
    for r in range(args.rounds):  # alternate, so background load hits both sides
        order = list(sides.items())
        for label, model in order if r % 2 == 0 else order[::-1]:  # neither always first
            train[label].append(_time_steps(lambda m=model: m.train_on_batch(x, y), args.steps))
            predict[label].append(
                _time_steps(lambda m=model: np.asarray(m.predict_on_batch(x)), args.steps)
            )
    return {
        "ours": ours,
        "raw": raw,
        "compile_s": compile_s,
        "train": {k: statistics.median(v) for k, v in train.items()},
        "predict": {k: statistics.median(v) for k, v in predict.items()},
        "trainable": {k: _count(m.trainable_weights) for k, m in sides.items()},
        "params": {k: m.count_params() for k, m in sides.items()},
    }


def retraces(args) -> dict:
    """Check (b): ProgressiveResizing over ResizableArrays; traces and batch sides per size."""
    import keras
    import numpy as np

    import zoo_transfer
    from zoo_transfer.callbacks import ProgressiveResizing
    from zoo_transfer.data import ResizableArrays

    keras.backend.clear_session()
    keras.config.set_dtype_policy(args.policy)
    keras.utils.set_random_seed(0)
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    traces: list[int] = []  # compiled traces: jit of the train step
    inferred: list[int] = []  # shape-only traces (fit's first-batch build), not compiled

    class Probe(keras.layers.Layer):
        """Identity that notes each trace's static image side and the last batch's side."""

        def build(self, shape):
            self.side = self.add_weight(
                shape=(), dtype="int32", initializer="zeros", trainable=False, name="side"
            )

        def call(self, x):
            side = x.shape[1]
            if isinstance(side, int):  # not a KerasTensor of the functional build
                # Keras' shape inference (compute_output_spec) traces without compiling
                (inferred if in_symbolic_scope() else traces).append(side)
            self.side.assign(keras.ops.shape(x)[1])
            return x

        def compute_output_shape(self, shape):
            return shape

    inner = zoo_transfer.build(args.model, args.classes, weights=None, input_shape=(None, None, 3))
    inputs = keras.Input((None, None, 3))
    probe = Probe(dtype="float32")
    model = keras.Model(inputs, inner(probe(inputs)))
    _compile(model, keras)
    sizes = args.sizes
    schedule = {2 * i: s for i, s in enumerate(sizes)}  # two epochs per size
    epochs = 2 * len(sizes)
    rng = np.random.default_rng(0)
    n = args.batch * args.progressive_steps
    x = rng.uniform(0, 255, (n, sizes[-1], sizes[-1], 3)).astype("float32")
    y = rng.integers(0, args.classes, n)
    train = ResizableArrays(x, y, size=sizes[0], batch_size=args.batch)
    seen, epoch_s = [], []

    class Read(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_s.append(time.perf_counter() - self.start)
            seen.append(int(keras.ops.convert_to_numpy(probe.side)))

    traces.clear(), inferred.clear()  # building the model traced it symbolically
    history = model.fit(
        train.dataset(),
        epochs=epochs,
        verbose=0,
        callbacks=[ProgressiveResizing(schedule, train, verbose=0), Read()],
    )
    per_size = {s: traces.count(s) for s in sizes}
    return {
        "schedule": schedule,
        "per_size": per_size,
        "other_traces": [t for t in traces if t not in sizes],
        "inferred": inferred,
        "scheduled": history.history["image_size"],
        "seen": seen,
        "epoch_s": epoch_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="a keras.applications card")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policy", default="mixed_float16")
    parser.add_argument("--sizes", type=int, nargs=3, default=(128, 160, 224))
    parser.add_argument("--progressive-steps", type=int, default=4, help="batches per epoch")
    parser.add_argument(
        "--quick", action="store_true", help="CPU rehearsal: 64 px, batch 8, 10 classes, 3 steps"
    )
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch, args.classes, args.steps, args.rounds = 64, 8, 10, 3, 2
        args.sizes, args.progressive_steps = (32, 48, 64), 2
    import keras

    print(
        f"device {_device()}; keras {keras.__version__} on {keras.backend.backend()}; "
        f"{args.model}, {args.classes} classes, {args.size} px, batch {args.batch}, "
        f"{args.policy}, jit_compile=True; CPUs {os.cpu_count()}"
    )
    t0 = time.perf_counter()
    a = step_times(args)
    for label in a["train"]:
        print(
            f"{label:<20} train step {a['train'][label] * 1000:8.2f} ms  "
            f"predict step {a['predict'][label] * 1000:8.2f} ms  "
            f"trainable {a['trainable'][label]:,} of {a['params'][label]:,} params; "
            f"first calls (compile) {a['compile_s'][label]:.1f} s"
        )
    ok_a = True
    for kind in ("train", "predict"):
        ratio = a[kind]["zoo_transfer.build"] / a[kind]["raw keras"]
        met = 0.95 <= ratio <= 1.05
        ok_a &= met
        print(
            f"ratio {kind} step build/raw {ratio:.3f} (target within 5%: "
            f"{'met' if met else 'MISSED'})"
        )
    b = retraces(args)
    counts = ", ".join(f"{s} px: {c}" for s, c in b["per_size"].items())
    epochs = ", ".join(f"{s} px {t:.2f} s" for s, t in zip(b["seen"], b["epoch_s"], strict=True))
    print(f"progressive schedule {b['schedule']}: epochs {epochs}")
    ok_b = (
        all(c == 1 for c in b["per_size"].values())
        and not b["other_traces"]
        and b["seen"] == b["scheduled"]
    )
    print(
        f"compiled traces per size: {counts}; other traces {b['other_traces']}; "
        f"shape-inference traces (not compiled) {b['inferred']}; batch sides "
        f"{b['seen']} vs scheduled {b['scheduled']} (target one trace per size: "
        f"{'met' if ok_b else 'MISSED'})"
    )
    tf_loaded = "tensorflow" in sys.modules
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"tensorflow imported: {'YES' if tf_loaded else 'no'}; peak RSS {rss:.0f} MiB; "
        f"{_device_memory()}total {time.perf_counter() - t0:.0f} s"
    )
    if tf_loaded:
        raise SystemExit("TensorFlow was imported on the JAX path")


def _device_memory() -> str:
    try:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # not JAX, or a device without memory stats (the CPU)
        return ""
    peak = stats.get("peak_bytes_in_use")
    return f"device peak memory {peak / 2**30:.2f} GiB; " if peak else ""


if __name__ == "__main__":
    main()
