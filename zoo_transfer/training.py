"""`fine_tune` (fastai's recipe in one call) and `lr_find` (the learning-rate range test)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from zoo_transfer.callbacks import GradualUnfreezing
from zoo_transfer.errors import BuildArgumentError
from zoo_transfer.optimizers import transfer_optimizer


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
    schedule = GradualUnfreezing({freeze_epochs: unfreeze}, verbose=fit_kwargs.get("verbose", 1))
    return model.fit(
        train,
        validation_data=validation,
        epochs=freeze_epochs + epochs,
        callbacks=[schedule, *callbacks],
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
        data: a `tf.data.Dataset` of `(x, y)` batches, or an `(x, y)` tuple of arrays.
    """
    import tensorflow as tf

    if not 0 < start_lr < end_lr:
        raise BuildArgumentError(f"Expected 0 < start_lr < end_lr. Received: {start_lr}, {end_lr}")
    if isinstance(data, tuple):
        data = tf.data.Dataset.from_tensor_slices(data).batch(32)
    loss = loss or getattr(model, "loss", None) or "sparse_categorical_crossentropy"
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for a, b in zip(_all_layers(model), _all_layers(clone), strict=True):
        b.trainable = a.trainable
    opt = keras.optimizers.get(optimizer)
    clone.compile(opt, loss)
    factor = (end_lr / start_lr) ** (1 / max(steps - 1, 1))
    lrs, losses, smooth = [], [], None
    batches = data.repeat()
    for step, (x, y) in enumerate(batches.take(steps)):
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


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_all_layers(layer))
    return out
