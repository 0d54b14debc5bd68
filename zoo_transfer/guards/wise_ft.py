"""WiSE-FT (Wortsman et al., CVPR 2022): interpolate the fine-tuned weights with a reference.

Every weight becomes `(1 - alpha) * reference + alpha * fine_tuned`, the reference being
the model before fine-tuning (in LP-FT, the model right after the linear probe);
`wise_ft_sweep` scores a few alphas on validation images and keeps the best.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import ArgumentError, DataError, ModelFileError, WeightsMismatchError
from zoo_transfer.guards.batches import BATCH_SIZE, read_batches

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _check_alpha(alpha: Any, name: str = "alpha") -> float:
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float, np.integer, np.floating))
        or not math.isfinite(float(alpha))
        or not 0.0 <= float(alpha) <= 1.0
    ):
        raise ArgumentError(
            f"Expected `{name}` to be a number in [0, 1] (0: the reference's weights, 1: the "
            f"fine-tuned ones). Received: {name}={alpha!r}"
        )
    return float(alpha)


def _layer_of(variable: Any) -> str:
    """The layer a variable belongs to, by its path: `stem_conv/kernel` -> `stem_conv`."""
    return str(variable.path).rsplit("/", 1)[0]


def _reference_weights(model: Any, reference: Any) -> list[np.ndarray]:
    """`reference` (a model, a `.keras` path, or a list of arrays) as arrays that match
    `model.weights` one by one, or `WeightsMismatchError` naming the first that does not."""
    import keras

    ref_variables = None
    if isinstance(reference, (str, os.PathLike)):
        path = Path(reference)
        if not path.is_file():
            raise ModelFileError(
                f"Expected `reference` to be a .keras file of the model before fine-tuning. "
                f"Received: reference={str(reference)!r}, which does not exist."
            )
        reference = keras.saving.load_model(path, compile=False)
    if hasattr(reference, "weights") and hasattr(reference, "layers"):
        ref_variables = list(reference.weights)
        arrays = [keras.ops.convert_to_numpy(v) for v in ref_variables]
    elif isinstance(reference, (list, tuple)):
        arrays = [np.asarray(a) for a in reference]
    else:
        raise ArgumentError(
            "Expected `reference` to be a Keras model of the same architecture, the path "
            "of its .keras file, or its weights (`model.get_weights()`). Received: "
            f"reference of type {type(reference).__name__}"
        )
    mine = list(model.weights)
    for i in range(max(len(mine), len(arrays))):
        if i < len(mine) and i < len(arrays) and tuple(arrays[i].shape) == tuple(mine[i].shape):
            continue
        if i >= len(mine):
            where = f"the model has {len(mine)} weights, the reference {len(arrays)}"
            theirs = ref_variables[i].path if ref_variables else f"weight {i}"
            first = f"the reference's {theirs!r} has no counterpart in the model ({where})"
        else:
            layer, got = _layer_of(mine[i]), tuple(mine[i].shape)
            if i >= len(arrays):
                other = f"the reference has only {len(arrays)} weights"
            else:
                name = f" ({ref_variables[i].path})" if ref_variables else ""
                other = f"the reference's weight {i}{name} has shape {tuple(arrays[i].shape)}"
            first = f"layer {layer!r}: {mine[i].path} has shape {got}, but {other}"
        raise WeightsMismatchError(
            f"The reference does not match the model's architecture; the first difference is "
            f"at {first}. Pass the same model before fine-tuning (e.g. the job's probe.keras "
            "or a copy saved right after the linear probe)."
        )
    return arrays


def _mix(model: Any, fine: Sequence[np.ndarray], ref: Sequence[np.ndarray], alpha: float) -> None:
    """Assign `(1 - alpha) * ref + alpha * fine` to every floating-point weight of `model`."""
    import keras

    for variable, f, r in zip(model.weights, fine, ref, strict=True):
        if not keras.backend.is_float_dtype(variable.dtype):
            continue  # counters and random-generator states: the fine-tuned model's
        if alpha == 1.0:
            value = f
        elif alpha == 0.0:
            value = r
        else:  # in float64, rounded once to the weight's dtype
            value = (1.0 - alpha) * np.asarray(r, np.float64) + alpha * np.asarray(f, np.float64)
        variable.assign(np.asarray(value).astype(f.dtype))


def wise_ft(model: Any, alpha: float, *, reference: Any) -> Any:
    """Interpolate a fine-tuned model's weights toward its reference, **in place** (WiSE-FT).

    Every floating-point weight, the backbone's, the head's and the BatchNorm moving
    statistics alike, becomes `(1 - alpha) * reference + alpha * fine_tuned` (computed in
    float64, rounded once). Wortsman et al. (CVPR 2022) found that such a mix keeps
    much of the accuracy the fine-tuned model gained while keeping the reference's
    robustness. The model keeps its architecture, compile state and optimizer, so it
    saves as the same plain Keras model; keep `model.get_weights()` first if you need
    the fine-tuned weights back. Integer weights (e.g. random-generator states) keep the
    fine-tuned model's values.

    Args:
        model: the fine-tuned Keras model; changed in place.
        alpha: `float` in [0, 1]: 1 keeps the fine-tuned weights, 0 gives the reference's.
        reference: the model before fine-tuning: a Keras model of the same architecture,
            the path of its `.keras` file, or its weights (`get_weights()` order). In
            LP-FT it is the model right after the linear probe (the job's `probe.keras`).

    Returns:
        `model`.

    Raises:
        ArgumentError: `alpha` is not a number in [0, 1].
        WeightsMismatchError: the reference has other weights; the message names the
            first layer that differs.

    ```python
    reference = zoo_transfer.saving.inference_copy(model)   # right after the probe
    model.fit(...)                                          # fine-tune
    zoo_transfer.wise_ft(model, 0.5, reference=reference)
    ```
    """
    import keras

    alpha = _check_alpha(alpha)
    ref = _reference_weights(model, reference)
    fine = [keras.ops.convert_to_numpy(v) for v in model.weights]
    _mix(model, fine, ref, alpha)
    return model


@dataclass(frozen=True)
class WiseFTSweep:
    """What `wise_ft_sweep` measured: the validation accuracy of each alpha, and the best.

    Args:
        alphas: the alphas tried, in the order given.
        accuracies: the validation accuracy of each.
        best_alpha: the alpha with the highest accuracy; among equals, the one nearest
            0.5 (the mix Wortsman et al. use when nothing chooses), then the smaller.
    """

    alphas: tuple[float, ...]
    accuracies: tuple[float, ...]
    best_alpha: float

    @property
    def best_accuracy(self) -> float:
        return self.accuracies[self.alphas.index(self.best_alpha)]

    def to_json(self) -> dict[str, Any]:
        return {
            "alpha": self.best_alpha,
            "val_accuracy": self.best_accuracy,
            "alphas": list(self.alphas),
            "val_accuracies": list(self.accuracies),
        }


def wise_ft_sweep(
    model: Any,
    reference: Any,
    val_data: Any,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    batch_size: int = BATCH_SIZE,
) -> WiseFTSweep:
    """Score WiSE-FT's alphas on validation images and leave `model` at the best one.

    For each alpha, the model's weights are set to the mix of `wise_ft` and its
    accuracy measured on `val_data` (inference mode, every image once, in order).
    Afterwards the model holds the best alpha's weights (in place, as `wise_ft`); among
    alphas of equal accuracy the one nearest 0.5 wins, then the smaller.

    Args:
        model: the fine-tuned Keras model (a classifier: softmax, or one sigmoid output).
        reference: as for `wise_ft`.
        val_data: labelled validation images: `(images, labels)` arrays, a batched
            `tf.data.Dataset` of `(images, labels)`, a `zoo_transfer.data.Splits` (its
            validation split) or a `ResizableImages` (read with `in_order()`). Labels are
            class indices or one-hot rows.
        alphas: the alphas to try, each in [0, 1].
        batch_size: images per forward pass for arrays.

    Returns:
        `WiseFTSweep` with every alpha's accuracy and the best alpha.

    ```python
    sweep = zoo_transfer.wise_ft_sweep(model, "run/probe.keras", (x_val, y_val))
    sweep.best_alpha, sweep.accuracies   # 0.5, (0.91, 0.93, 0.94, 0.93, 0.92)
    ```
    """
    import keras

    alphas = tuple(_check_alpha(a, "alphas") for a in alphas) if alphas is not None else ()
    if not alphas:
        raise ArgumentError(
            f"Expected at least one alpha in [0, 1], e.g. (0, 0.5, 1). Received: alphas={alphas!r}"
        )
    ref = _reference_weights(model, reference)
    fine = [keras.ops.convert_to_numpy(v) for v in model.weights]
    if hasattr(val_data, "val_images"):  # a Splits: its validation split
        if val_data.val_images is None:
            raise DataError(
                "wise_ft_sweep scores alphas on validation images, but the Splits has no "
                "validation split. Load it with validation_split=... or validation=...."
            )
        val_data = val_data.val_images
    accuracies = []
    for alpha in alphas:
        _mix(model, fine, ref, alpha)
        accuracies.append(_accuracy(model, val_data, batch_size))
    best = max(range(len(alphas)), key=lambda i: (accuracies[i], -abs(alphas[i] - 0.5), -alphas[i]))
    _mix(model, fine, ref, alphas[best])
    return WiseFTSweep(alphas, tuple(accuracies), alphas[best])


def _accuracy(model: Any, data: Any, batch_size: int) -> float:
    correct = total = 0
    rank = len(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    for images, labels in read_batches(data, batch_size, labelled=True, rank=rank):
        probs = np.asarray(model.predict_on_batch(images))
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[-1] > 1:
            labels = labels.argmax(-1)
        labels = labels.reshape(-1)
        pred = (probs.reshape(-1) > 0.5).astype(int) if probs.shape[-1] == 1 else probs.argmax(-1)
        correct += int(np.sum(pred == labels))
        total += len(labels)
    if total == 0:
        raise DataError("Expected at least one validation image. Received: none.")
    return correct / total
