"""Training a model from `build`: `fit_transfer` (the one place that decides between
cached backbone features and a plain `fit`), `fine_tune` (fastai's recipe in one call)
and `lr_find` (the learning-rate range test).

The job (`zoo-transfer train`), the recipes' plans (`fit_transfer(..., plan=plan)`) and
`fine_tune` all train through `fit_transfer`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from zoo_transfer.callbacks import GradualUnfreezing, ProgressiveResizing
from zoo_transfer.errors import ArgumentError, BuildArgumentError
from zoo_transfer.optimizers import build_optimizer_now, transfer_optimizer

CACHE_CHOICES = ("auto", "never", "always")


def probe_head(
    model: Any, train: Any, validation: Any = None, *, verbose: int = 1, features: Any = None
) -> Any:
    """Fit the head to convergence on the frozen backbone's features (a linear probe).

    The first step of LP-FT (linear probe, then fine-tune): the epochs that unfreeze
    the backbone then start from a converged head instead of a random one, so its
    gradients do not scramble the pretrained features (Kumar et al., ICLR 2022). The
    images are read once each, without augmentation, whatever `train` would apply.

    Returns the `LinearHeadResult`, or `None` when the model's head is not one
    `Dense(num_classes)` layer (a head with hidden layers trains with the epochs).
    `features`: `(x, y, x_val, y_val)` computed before (`fit_linear_head`).

    ```python
    model = zoo_transfer.build("resnet50", num_classes=5)
    probe_head(model, splits).val_accuracy   # e.g. 0.91, in seconds
    ```
    """
    from zoo_transfer.features import split_head
    from zoo_transfer.linear_head import fit_linear_head, is_linear_head

    if not is_linear_head(split_head(model)[1], int(model.outputs[0].shape[-1])):
        if verbose:
            print("linear probe: skipped (the head has hidden layers; the epochs train it)")
        return None
    result = fit_linear_head(model, train, validation, features=features)
    if verbose:
        acc = "-" if result.val_accuracy is None else f"{result.val_accuracy:.4f}"
        print(
            f"linear probe: val_accuracy {acc}, train_accuracy {result.train_accuracy:.4f} "
            f"(L2 {result.l2:g}, {result.seconds:.1f} s)"
        )
    return result


def fit_transfer(
    model: Any,
    train: Any,
    validation: Any = None,
    *,
    epochs: int | None = None,
    callbacks: Any = (),
    plan: Any = None,
    cache: str = "auto",
    augment: str | None = None,
    probe: bool | None = None,
    initial_epoch: int = 0,
    verbose: int = 1,
    seed: int = 0,
    cache_dir: Any = None,
    batch_size: int | None = None,
    **fit_kwargs: Any,
) -> Any:
    """Train a compiled model from `build`: on cached backbone features when that gives
    exactly what `fit` would, else with `model.fit`.

    Cached features (`zoo_transfer.cached`) run the frozen backbone once and train the
    head on its outputs: the same model, many times faster per epoch. They are exact only
    when nothing before the head changes or is random: the backbone stays frozen (no
    `GradualUnfreezing` among `callbacks`), one image size (no `ProgressiveResizing`),
    no augmentation, one replica, finite data. This function is the one place that
    decides.

    Args:
        model: a compiled model from `zoo_transfer.build`.
        train: a `zoo_transfer.data.Splits` (its validation split is used unless
            `validation` is given), an `(x, y)` pair of arrays, or a batched
            `tf.data.Dataset` of `(images, labels)`.
        validation: the same kinds, or `None`.
        epochs: total epochs, as in `fit` (default: `plan.epochs`).
        callbacks: Keras callbacks; they see `model` either way.
        plan: a recipe's `Plan`: its epochs, batch size, callbacks (early stopping) and
            whether it wants cached features at all (`plan.cached_head`).
        cache: `"auto"` (cached features exactly when they apply), `"never"`, or
            `"always"` (an `ArgumentError` saying why when they do not apply).
        augment: the augmentation preset of `train` when it cannot say so itself
            (arrays, datasets); a `Splits` knows its own.
        probe: fit the head to convergence first (`probe_head`; default: the plan's
            `probe`, else False). Not on a resumed run (`initial_epoch` > 0): the
            restored head is kept.
        initial_epoch: the epoch to start at (a resumed run).
        verbose: Keras' progress output; 1 and 2 also print the cache decision (unless
            `cache="never"`).
        seed: the per-epoch shuffle of cached features.
        cache_dir: where cached features may spill to disk (default: a temporary folder).
        batch_size: for `(x, y)` arrays and cached features (default: the plan's, or 32).
        **fit_kwargs: passed on to `model.fit` (e.g. `shuffle=False`).

    Returns:
        Keras' `History`, with `cached` (bool), `cache_reason` (why not, or `""`) and
        `probe` (the `LinearHeadResult` of the probe, or None). `history.model` is the
        trained model: `model` itself, except for a transformer built at one size under
        `ProgressiveResizing`, which is rebuilt for each size of the schedule (one `fit`
        per size, `zoo_transfer.resize_model`): use `history.model` from then on.

    ```python
    model, plan = zoo_transfer.recipes.small_similar("resnet50", num_classes=5)
    plan.compile(model)
    history = fit_transfer(model, (x, y), (x_val, y_val), plan=plan)
    history.cached  # True: frozen backbone, no augmentation
    ```
    """
    from zoo_transfer.cached import cached_head_applies, fit_cached_head

    if cache not in CACHE_CHOICES:
        raise ArgumentError(
            f"Expected cache to be one of {', '.join(CACHE_CHOICES)}. Received: cache={cache!r}"
        )
    callbacks = list(callbacks)
    if plan is not None:
        epochs = plan.epochs if epochs is None else epochs
        callbacks = [*plan.callbacks(), *callbacks]
        batch_size = batch_size or plan.batch_size
        if cache == "auto" and not plan.cached_head:
            cache = "never"
        probe = plan.probe if probe is None else probe
        if plan.unfreeze and not any(isinstance(c, GradualUnfreezing) for c in callbacks):
            callbacks.insert(0, GradualUnfreezing(plan.unfreeze, verbose=verbose))
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ArgumentError(f"Expected epochs as an int >= 1. Received: epochs={epochs!r}")
    if augment is None:
        augment = getattr(train, "augment", "none")
    unfreeze: dict[int, Any] = {}
    sizes: list[int] | None = None
    for callback in callbacks:
        if isinstance(callback, GradualUnfreezing):
            unfreeze.update(callback.schedule)
        if isinstance(callback, ProgressiveResizing):
            sizes = list(callback.schedule.values())
    if cache == "never":
        use, why = False, "cache='never'"
    else:
        use, why = cached_head_applies(
            model, train, augment=augment, progressive=sizes, unfreeze=unfreeze
        )
        if cache == "always" and not use:
            raise ArgumentError(
                f"cache='always', but cached features would not train this model as fit "
                f"does: {why}. Pass cache='auto' to fall back to fit."
            )
    probed = None
    if probe and initial_epoch == 0:
        probed = probe_head(model, train, validation, verbose=verbose)
    if verbose and cache != "never":
        print(f"cached backbone features: {'on' if use else f'off: {why}'}")
    if use:
        history = fit_cached_head(
            model, train, validation, epochs=epochs, initial_epoch=initial_epoch,
            callbacks=callbacks, verbose=verbose, seed=seed, cache_dir=cache_dir,
            batch_size=batch_size,
        )  # fmt: skip
        history.set_model(model)
    else:
        x, y = train, None
        if isinstance(train, tuple):
            x, y = train
            fit_kwargs.setdefault("batch_size", batch_size or 32)
        elif hasattr(train, "train_images") and hasattr(train, "train"):  # Splits
            x = train.train
            validation = train.val if validation is None else validation
        if hasattr(validation, "val_images") and hasattr(validation, "val"):
            validation = validation.val
        resizer = next((c for c in callbacks if isinstance(c, ProgressiveResizing)), None)
        if resizer is not None and _one_size(model):
            history = _fit_by_size(
                model, x, y, validation, resizer, epochs=epochs, initial_epoch=initial_epoch,
                callbacks=callbacks, verbose=verbose, **fit_kwargs,
            )  # fmt: skip
        else:
            build_optimizer_now(model)
            history = model.fit(
                x, y, validation_data=validation, epochs=epochs, initial_epoch=initial_epoch,
                callbacks=callbacks, verbose=verbose, **fit_kwargs,
            )  # fmt: skip
            history.set_model(model)
    history.cached, history.cache_reason, history.probe = use, why, probed
    return history


def _one_size(model: Any) -> bool:
    """Whether `model` is a transformer from `build` made for one input size."""
    from zoo_transfer.errors import NotATransferModelError
    from zoo_transfer.input_spec import fixed_side
    from zoo_transfer.recipes.stages import find_backbone

    try:
        card = find_backbone(model)[1]
    except NotATransferModelError:
        return False
    return card.tokens is not None and fixed_side(model) is not None


class _EndOfSize(keras.callbacks.Callback):
    """Stops a `fit` after epoch `end - 1`: each `fit` of `_fit_by_size` runs with the
    whole run's `epochs`, so callbacks that check their schedules against it agree."""

    end = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 >= self.end:
            self.model.stop_training = True


def _fit_by_size(
    model: Any,
    x: Any,
    y: Any,
    validation: Any,
    resizer: ProgressiveResizing,
    *,
    epochs: int,
    initial_epoch: int,
    callbacks: list[Any],
    verbose: int,
    **fit_kwargs: Any,
) -> Any:
    """Progressive resizing for a model built at one size: one `fit` per size, the model
    rebuilt for each (`resize_model`: weights, position embeddings interpolated, which
    layers train, optimizer state). One `History` of all epochs; its `model` is the
    last build."""
    from zoo_transfer.input_spec import fixed_side
    from zoo_transfer.resizing import resize_model

    stop = _EndOfSize()
    merged: Any = None
    tf_log = logging.getLogger("tensorflow")  # each build traces its own steps: its
    level = tf_log.level  # "retracing" warning would only alarm
    tf_log.setLevel(max(level, logging.ERROR))
    try:
        for start, end, size in resizer.by_stage(initial_epoch, epochs):
            if fixed_side(model) != size:
                if verbose:
                    print(
                        f"ProgressiveResizing: epoch {start + 1}: the model is rebuilt for "
                        f"{size} px (position embeddings interpolated, training state kept)"
                    )
                model = resize_model(model, size)
            build_optimizer_now(model)
            resizer.on_epoch_begin(start)  # before `fit` reads a batch (JAX's first build)
            stop.end = end
            history = model.fit(
                x, y, validation_data=validation, epochs=epochs, initial_epoch=start,
                callbacks=[*callbacks, stop], verbose=verbose, **fit_kwargs,
            )  # fmt: skip
            if merged is None:
                merged = history
            else:
                merged.epoch += history.epoch
                for key, values in history.history.items():
                    merged.history.setdefault(key, []).extend(values)
            if not history.epoch or history.epoch[-1] + 1 < end:  # another callback stopped
                break
    finally:
        tf_log.setLevel(level)
    merged.set_model(model)
    return merged


def fine_tune(
    model: Any,
    train: Any,
    validation: Any = None,
    *,
    epochs: int = 5,
    freeze_epochs: int = 1,
    base_lr: float = 1e-3,
    lr_mult: Any = (0.01, 1.0),
    optimizer: str = "adam",
    loss: Any = "sparse_categorical_crossentropy",
    metrics: Any = ("accuracy",),
    unfreeze: Any = None,
    callbacks: Any = (),
    **fit_kwargs: Any,
) -> Any:
    """Train the new head with the backbone frozen, then unfreeze with discriminative LRs.

    One `fit` call, one history: `freeze_epochs` epochs of head training, then
    `epochs` more with the backbone trainable from `unfreeze` (default: its first
    stage), every group at `base_lr` times its multiplier (`lr_mult`, default a fastai
    spread from 0.01x at the stem to 1x at the head).

    ```python
    model = zoo_transfer.build("resnet50", num_classes=5)
    history = zoo_transfer.fine_tune(model, train_ds, val_ds, epochs=4, freeze_epochs=1)
    ```
    """
    from zoo_transfer.recipes.stages import find_backbone, stage_of_layers

    if freeze_epochs < 0 or epochs < 1:
        raise BuildArgumentError(
            f"Expected freeze_epochs >= 0 and epochs >= 1. Received: {freeze_epochs}, {epochs}"
        )
    backbone, card = find_backbone(model)
    if unfreeze is None:
        present = set(stage_of_layers(backbone, card).values())
        unfreeze = next(s for s in card.stage_names if s in present)
    opt = transfer_optimizer(model, optimizer, learning_rate=base_lr, lr_mult=lr_mult)
    model.compile(opt, loss, metrics=list(metrics))
    verbose = fit_kwargs.pop("verbose", 1)
    schedule = GradualUnfreezing({freeze_epochs: unfreeze}, verbose=verbose)
    return fit_transfer(
        model,
        train,
        validation,
        epochs=freeze_epochs + epochs,
        callbacks=[schedule, *callbacks],
        verbose=verbose,
        cache="never",  # the backbone unfreezes during the run: never exact
        **fit_kwargs,
    )


@dataclass
class LRFindResult:
    """Learning rates tried, the (smoothed) loss at each, and the suggested rate."""

    learning_rates: list[float]
    losses: list[float]
    suggestion: float

    def plot(self, path: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.learning_rates, self.losses)
        ax.axvline(self.suggestion, color="red", linestyle="--")
        ax.set(xscale="log", xlabel="learning rate", ylabel="loss (smoothed)")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)


def lr_find(
    model: Any,
    data: Any,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    optimizer: str = "adam",
    loss: Any = None,
    diverge: float = 4.0,
) -> LRFindResult:
    """Sweep the learning rate exponentially over `steps` batches; suggest one.

    Runs on a clone of `model`, so the model's weights and compile state are untouched.
    Stops early when the loss exceeds `diverge` times its minimum. The suggestion is the
    rate where the smoothed loss falls fastest, before the minimum.

    Args:
        data: batches of `(x, y)`: a `tf.data.Dataset`, a `keras.utils.PyDataset` (e.g.
            a `Splits.train` on JAX), or an `(x, y)` tuple of arrays (batches of 32).
            Passes repeat until `steps` batches are read.
    """
    if not 0 < start_lr < end_lr:
        raise BuildArgumentError(f"Expected 0 < start_lr < end_lr. Received: {start_lr}, {end_lr}")
    loss = loss or getattr(model, "loss", None) or "sparse_categorical_crossentropy"
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for a, b in zip(_all_layers(model), _all_layers(clone), strict=True):
        b.trainable = a.trainable
    opt = keras.optimizers.get(optimizer)
    clone.compile(opt, loss)
    factor = (end_lr / start_lr) ** (1 / max(steps - 1, 1))
    lrs, losses, smooth = [], [], None
    for step, (x, y) in zip(range(steps), _endless_batches(data), strict=False):
        lr = start_lr * factor**step
        opt.learning_rate = lr
        value = float(clone.train_on_batch(x, y))
        smooth = value if smooth is None else 0.9 * smooth + 0.1 * value
        corrected = smooth / (1 - 0.9 ** (step + 1)) if step < 50 else smooth
        lrs.append(lr)
        losses.append(corrected)
        if not np.isfinite(value) or corrected > diverge * min(losses):
            break
    best = int(np.argmin(losses))
    if best < 2:
        suggestion = lrs[best]
    else:
        slopes = np.gradient(np.asarray(losses[: best + 1]), np.log(lrs[: best + 1]))
        suggestion = lrs[int(np.argmin(slopes))]
    return LRFindResult(lrs, losses, float(suggestion))


def _endless_batches(data: Any) -> Any:
    """`(x, y)` batches of `data`, pass after pass, on any backend."""
    if isinstance(data, tuple):
        x, y = np.asarray(data[0]), np.asarray(data[1])
        while True:
            for i in range(0, len(x), 32):
                yield x[i : i + 32], y[i : i + 32]
    while True:
        empty = True
        if isinstance(data, keras.utils.PyDataset):
            batches = (data[i] for i in range(len(data)))
        else:
            batches = iter(data)
        for batch in batches:
            empty = False
            yield batch[0], batch[1]
        if hasattr(data, "on_epoch_end"):
            data.on_epoch_end()
        if empty:
            raise ArgumentError("lr_find: `data` gave no batches.")


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_all_layers(layer))
    return out
