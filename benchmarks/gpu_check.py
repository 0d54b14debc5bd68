"""GPU check on Keras 3 + JAX, no TensorFlow: build vs raw Keras, retraces, unfreezing, cache.

Four checks, in one run, on whatever device JAX sees first (a lent GPU, or the CPU);
`--only c,d` runs some of them:

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
(c) `GradualUnfreezing({1: last stage, 2: the stage before})` mid-fit, 3 epochs of
    `--unfreeze-steps` batches, `build(MODEL, CLASSES, weights=None)` (logits out)
    compiled with `transfer_optimizer(model, "adam", learning_rate=1e-4,
    lr_mult=(0.1, 1))` and `jit_compile=True` under `--policy` (under `mixed_float16`
    it must come loss-scaled). Per epoch: trainable parameters, the layer groups whose
    variables changed, the traces of the train step (a wrapper around
    `model.train_step`, which Keras jits), each group's Adam step counter, and the
    median step time. Targets: exactly the scheduled groups change (the head in epoch
    0, then the unfrozen stages too) and no frozen variable does; one trace per
    trainable set; each group's `iterations` equals the steps applied since its
    unfreeze (a step the loss scale skips counts for no group).
(d) `fit_transfer(model, (x, y), (xv, yv), epochs=--epochs, cache="always")` vs
    `cache="never"` on identical fresh frozen-backbone models (same seed),
    `--images` uint8 training images (a quarter as many for validation) at
    `--fit-size` px, batch `--batch`: wall time of each, XLA compiles included (one
    cold run each), the feature seconds, epoch times, final validation accuracy and
    loss (they differ by the shuffle order). Target (judged on a GPU at 224 px, 5+
    epochs): the cached run at least 3x faster.

It never imports TensorFlow (it says so at the end, and fails if something did). It
exits 0 when a target is missed: read the verdicts.

    KERAS_BACKEND=jax python benchmarks/gpu_check.py            # ResNet50, 224 px, batch 64
    KERAS_BACKEND=jax python benchmarks/gpu_check.py --quick    # CPU rehearsal: 64 px, batch 8

Expected time on one H200 (not measured yet): about 3-4 min, nearly all XLA compiles
(13 ResNet50 programs); `--only a,b` and `--only c,d` split it in two. `--quick` on the
2-core development CPU: about 2.5 min.
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


def _snapshot(variables) -> dict:
    """Host copies of `variables`, by path."""
    import keras

    return {v.path: keras.ops.convert_to_numpy(v) for v in variables}


def unfreezing(args) -> dict:
    """Check (c): GradualUnfreezing mid-fit on JAX: trainable sets, changed groups, traces."""
    import keras
    import numpy as np

    import zoo_transfer
    from zoo_transfer.callbacks import GradualUnfreezing
    from zoo_transfer.recipes.stages import group_order, layer_groups, weighted_layers

    keras.backend.clear_session()  # (resets the dtype policy too: set it after)
    keras.config.set_dtype_policy(args.policy)
    keras.utils.set_random_seed(0)
    side = args.fit_size
    # Logits, not probabilities: a random-init backbone gives large features, and Keras
    # clips saturated probabilities, whose gradient is then exactly 0 everywhere.
    model = zoo_transfer.build(
        args.model,
        args.classes,
        weights=None,
        input_shape=(side, side, 3),
        classifier_activation=None,
    )
    optimizer = zoo_transfer.transfer_optimizer(model, "adam", learning_rate=1e-4, lr_mult=(0.1, 1))
    grouped = getattr(optimizer, "inner_optimizer", optimizer)  # under a loss scale
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    order = group_order(model)  # the card's stages present, then "head"
    schedule = {1: order[-2], 2: order[-3]}  # the last stage, then the one before
    unfrozen_at = {"head": 0, order[-2]: 1, order[-3]: 2}
    group_of = layer_groups(model)
    variables = [v for layer in weighted_layers(model) for v in layer.weights]
    group_of_path = {
        v.path: group_of[layer.name] for layer in weighted_layers(model) for v in layer.weights
    }

    epoch_now = [-1]
    traces: list[int] = []  # the epoch of each trace of the train step
    step = model.train_step  # what Keras jits; Python in it runs once per trace
    failures: list[Exception] = []

    def counted_step(state, data):
        traces.append(epoch_now[0])
        try:
            return step(state, data)
        except Exception as exc:  # fit's clean-up then raises another error: keep this one
            failures.append(exc)
            raise

    model.train_step = counted_step
    records: list[dict] = []

    class Record(keras.callbacks.Callback):
        """Per epoch: trainable set, changed variables, step times, optimizer counters."""

        def on_epoch_begin(self, epoch, logs=None):  # after GradualUnfreezing's
            epoch_now[0] = epoch
            self.before = _snapshot(variables)
            self.applied = int(keras.ops.convert_to_numpy(grouped.iterations))
            self.steps: list[float] = []
            self.trainable = {v.path for v in model.trainable_weights}
            self.params = _count(model.trainable_weights)

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # waits for the step (Keras already made logs floats)
            self.steps.append(time.perf_counter() - self.start)

        def on_epoch_end(self, epoch, logs=None):  # Keras synced the JAX state back
            after = _snapshot(variables)
            changed = {p for p, a in after.items() if not np.array_equal(a, self.before[p])}
            counters = {
                inner.name.split("_", 1)[1]: int(keras.ops.convert_to_numpy(inner.iterations))
                for inner in grouped.optimizers
            }
            records.append(
                {
                    "params": self.params,
                    "trainable": self.trainable,
                    "changed": changed,
                    "groups": sorted({group_of_path[p] for p in changed}, key=order.index),
                    "steps": self.steps,
                    "applied_before": self.applied,
                    "applied": int(keras.ops.convert_to_numpy(grouped.iterations)),
                    "counters": counters,
                    "loss": float(logs["loss"]),
                }
            )

    x, y = _labelled_images(
        np.random.default_rng(0), args.batch * args.unfreeze_steps, side, args.classes
    )
    traces.clear()
    error = None
    try:
        model.fit(
            x,
            y,
            batch_size=args.batch,
            epochs=3,
            verbose=0,
            callbacks=[GradualUnfreezing(schedule, verbose=0), Record()],
        )
    except Exception as exc:  # reported as a missed target; checks (d) on still run
        error = _one_line(failures[0] if failures else exc)
        error = f"epoch {epoch_now[0]}: {error}"
    for e, rec in enumerate(records):
        rec["traces"] = traces.count(e)
        rec["expected_groups"] = [g for g in order if unfrozen_at.get(g, 99) <= e]
        # each group's Adam counts the steps applied since its unfreeze, from 1
        began = {g: records[u]["applied_before"] for g, u in unfrozen_at.items() if u <= e}
        rec["expected_counters"] = {g: rec["applied"] - began.get(g, rec["applied"]) for g in order}
        rec["frozen_changed"] = sorted(rec["changed"] - rec["trainable"])
        rec["trainable_unchanged"] = len(rec["trainable"] - rec["changed"])
        rec["median_step"] = statistics.median(rec["steps"][1:] or rec["steps"])
    return {
        "optimizer": type(optimizer).__name__,
        "loss_scaled": isinstance(optimizer, keras.optimizers.LossScaleOptimizer),
        "schedule": schedule,
        "records": records,
        "other_traces": [t for t in traces if not 0 <= t < 3],  # outside the 3 epochs
        "steps": args.unfreeze_steps,
        "error": error,
    }


def _one_line(exc: BaseException) -> str:
    """`Type: message` on one line, without Keras' ANSI bold codes."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    text = text.split("Arguments received", 1)[0]  # Keras' layer-call suffix
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:300]}"


def _labelled_images(rng, n: int, side: int, classes: int):
    """uint8 images whose mean colour says the class (learnable from frozen features)."""
    import numpy as np

    colours = np.random.default_rng(1).integers(0, 128, (classes, 1, 1, 3), dtype=np.uint8)
    noise = rng.integers(0, 128, (min(n, 256), side, side, 3), dtype=np.uint8)
    y = rng.integers(0, classes, n)
    x = noise[np.arange(n) % len(noise)] + colours[y]
    return x, y


def _epoch_clock():
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Seconds of each epoch (for `fit_cached_head`: the head's epochs only)."""

        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return EpochClock()


def cached_vs_fit(args) -> dict:
    """Check (d): `fit_transfer` on cached backbone features vs a plain fit, frozen backbone."""
    import keras
    import numpy as np

    import zoo_transfer

    side = args.fit_size
    rng = np.random.default_rng(0)
    x, y = _labelled_images(rng, args.images, side, args.classes)
    xv, yv = _labelled_images(rng, max(args.images // 4, args.batch), side, args.classes)
    out = {"images": len(x), "val_images": len(xv), "epochs": args.epochs}
    for cache in ("never", "always"):
        keras.backend.clear_session()
        keras.config.set_dtype_policy(args.policy)
        keras.utils.set_random_seed(0)  # the same fresh model on both sides
        model = zoo_transfer.build(
            args.model, args.classes, weights=None, input_shape=(side, side, 3)
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=True,
        )
        clock = _epoch_clock()
        start = time.perf_counter()
        history = zoo_transfer.fit_transfer(
            model,
            (x, y),
            (xv, yv),
            epochs=args.epochs,
            cache=cache,
            batch_size=args.batch,
            callbacks=[clock],
            verbose=0,
        )
        out[cache] = {
            "wall": time.perf_counter() - start,
            "cached": history.cached,
            "feature_s": getattr(history, "feature_seconds", None),
            "epoch_s": clock.seconds,
            "val_accuracy": history.history["val_accuracy"][-1],
            "val_loss": history.history["val_loss"][-1],
        }
    return out


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
    parser.add_argument("--only", default="a,b,c,d", help="checks to run, e.g. c,d")
    parser.add_argument("--fit-size", type=int, help="image side of (c) and (d) (default --size)")
    parser.add_argument("--unfreeze-steps", type=int, default=6, help="(c) batches per epoch")
    parser.add_argument("--images", type=int, default=8192, help="(d) training images")
    parser.add_argument("--epochs", type=int, default=5, help="(d) epochs")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CPU rehearsal: 64 px, batch 8, 10 classes, 3 steps; (c) and (d) at 32 px",
    )
    args = parser.parse_args()
    only = {c.strip() for c in args.only.split(",") if c.strip()}
    if not only or only - set("abcd"):
        parser.error(f"Expected --only as letters from a,b,c,d. Received: --only {args.only}")
    if args.quick:
        args.size, args.batch, args.classes, args.steps, args.rounds = 64, 8, 10, 3, 2
        args.sizes, args.progressive_steps = (32, 48, 64), 2
        args.fit_size, args.unfreeze_steps, args.images = 32, 4, 128
    args.fit_size = args.fit_size or args.size
    import keras

    print(
        f"device {_device()}; keras {keras.__version__} on {keras.backend.backend()}; "
        f"{args.model}, {args.classes} classes, {args.size} px, batch {args.batch}, "
        f"{args.policy}, jit_compile=True; CPUs {os.cpu_count()}"
    )
    t0 = time.perf_counter()
    if "a" in only:
        _report_step_times(step_times(args))
    if "b" in only:
        _report_retraces(retraces(args))
    if "c" in only:
        _report_unfreezing(unfreezing(args), args)
    if "d" in only:
        _report_cached(cached_vs_fit(args), args)
    tf_loaded = "tensorflow" in sys.modules
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"tensorflow imported: {'YES' if tf_loaded else 'no'}; peak RSS {rss:.0f} MiB; "
        f"{_device_memory()}total {time.perf_counter() - t0:.0f} s"
    )
    if tf_loaded:
        raise SystemExit("TensorFlow was imported on the JAX path")


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _report_step_times(a: dict) -> None:
    for label in a["train"]:
        print(
            f"{label:<20} train step {a['train'][label] * 1000:8.2f} ms  "
            f"predict step {a['predict'][label] * 1000:8.2f} ms  "
            f"trainable {a['trainable'][label]:,} of {a['params'][label]:,} params; "
            f"first calls (compile) {a['compile_s'][label]:.1f} s"
        )
    for kind in ("train", "predict"):
        ratio = a[kind]["zoo_transfer.build"] / a[kind]["raw keras"]
        print(
            f"ratio {kind} step build/raw {ratio:.3f} (target within 5%: "
            f"{_verdict(0.95 <= ratio <= 1.05)})"
        )


def _report_retraces(b: dict) -> None:
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
        f"{_verdict(ok_b)})"
    )


def _report_unfreezing(c: dict, args) -> None:
    want_scaled = args.policy == "mixed_float16"
    print(
        f"gradual unfreezing {c['schedule']} over 3 epochs of {c['steps']} steps, "
        f"{args.fit_size} px, batch {args.batch}: transfer_optimizer(adam, 1e-4, lr_mult=(0.1, 1)) "
        f"gave {c['optimizer']} (loss-scaled {'yes' if c['loss_scaled'] else 'no'}, "
        f"expected {'yes' if want_scaled else 'no'} under {args.policy}: "
        f"{_verdict(c['loss_scaled'] == want_scaled)})"
    )
    records = c["records"]
    base = records[0]["median_step"] if records else 1.0
    ok = c["loss_scaled"] == want_scaled and not c["other_traces"] and len(records) == 3
    for e, r in enumerate(records):
        counters = ", ".join(
            f"{g} {r['counters'][g]} ({r['expected_counters'][g]})" for g in r["expected_counters"]
        )
        met = (
            r["groups"] == r["expected_groups"]
            and not r["frozen_changed"]
            and r["traces"] == 1
            and r["counters"] == r["expected_counters"]
        )
        ok &= met
        frozen = f"; frozen variables changed {r['frozen_changed']}" if r["frozen_changed"] else ""
        print(
            f"  epoch {e}: trainable {r['params']:,} params; groups changed {r['groups']} "
            f"(scheduled {r['expected_groups']}; trainable variables unchanged "
            f"{r['trainable_unchanged']}{frozen}); train-step traces {r['traces']}; "
            f"median step {r['median_step'] * 1000:.2f} ms ({r['median_step'] / base:.2f}x "
            f"epoch 0), first step {r['steps'][0]:.1f} s; steps applied "
            f"{r['applied'] - r['applied_before']} of {len(r['steps'])}, loss {r['loss']:.3f}; "
            f"Adam steps per group (expected) {counters}: {_verdict(met)}"
        )
    if c["error"]:
        print(f"  fit failed in {c['error']}")
    print(
        f"other traces {c['other_traces']} (target: exactly the scheduled groups change, one "
        f"train-step trace per trainable set, each group's Adam counting from its unfreeze: "
        f"{_verdict(ok)})"
    )


def _report_cached(d: dict, args) -> None:
    print(
        f"cached head vs plain fit: frozen {args.model} at {args.fit_size} px, {d['images']} "
        f"train + {d['val_images']} val images (uint8), batch {args.batch}, {d['epochs']} epochs"
    )
    for cache in ("never", "always"):
        r = d[cache]
        epochs = ", ".join(f"{t:.2f}" for t in r["epoch_s"])
        features = ""
        if r["feature_s"] is not None:
            features = f"features {r['feature_s']:.2f} s (once, XLA compile included); "
        print(
            f"  fit_transfer(cache={cache!r:<8}) wall {r['wall']:7.2f} s; cached {r['cached']}; "
            f"{features}epochs {epochs} s; final val_accuracy {r['val_accuracy']:.4f}, "
            f"val_loss {r['val_loss']:.4f}"
        )
    ratio = d["never"]["wall"] / d["always"]["wall"]
    on_gpu = "gpu" in _device().lower() or "cuda" in _device().lower()
    judged = on_gpu and args.fit_size >= 224 and d["epochs"] >= 5
    verdict = _verdict(ratio >= 3) if judged else "not judged: only on a GPU, 224 px, 5+ epochs"
    later = statistics.median(d["never"]["epoch_s"][1:] or d["never"]["epoch_s"])
    head = statistics.median(d["always"]["epoch_s"][1:] or d["always"]["epoch_s"])
    print(
        f"ratio wall never/always {ratio:.2f}x (target cached >= 3x faster: {verdict}); "
        f"after the first epoch a plain epoch takes {later:.2f} s, a cached one {head:.3f} s"
    )


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
