"""A compiled transfer model at another input size, its training state carried over:
how progressive resizing moves a fixed-size backbone (a keras-hub ViT, DeiT, DINOv2,
CLIP or SigLIP tower) from one size to the next between epochs.

`zoo_transfer.recipes.rebuild_at` builds the model again and moves its weights (the
position embeddings interpolated); this module gives the new model an optimizer of the
same configuration holding the same state and compiles it as the old one was, so `fit`
continues where it stopped. `fit_transfer` calls it between the sizes of a
`ProgressiveResizing` schedule.
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Any

from zoo_transfer.errors import BuildArgumentError, OptimizerMismatchError


def resize_model(model: Any, size: int) -> Any:
    """`model` (from `zoo_transfer.build` or a recipe) rebuilt for `size` x `size` images,
    trained state and all; `model` itself is not changed: use the returned one.

    Weights and which layers train are `model`'s (position rows interpolated to the new
    patch grid). A compiled model comes back compiled with the same loss and metrics and
    an optimizer of the same configuration holding the same state: step count, Adam
    moments (a position embedding's interpolated bilinearly) and L2-SP anchors.

    ```python
    model = zoo_transfer.build("vit_base_patch16_224.imagenet", num_classes=5,
                               input_shape=(160, 160, 3))
    model.compile(zoo_transfer.transfer_optimizer(model, "adam"), "sparse_categorical_crossentropy")
    model.fit(images_160, labels, epochs=2)
    model = zoo_transfer.resize_model(model, 224)
    model.fit(images_224, labels, epochs=4, initial_epoch=2)
    ```
    """
    from zoo_transfer.recipes import rebuild_at

    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise BuildArgumentError(f"Expected size as a positive int. Received: size={size!r}")
    new = rebuild_at(model, int(size))
    if getattr(model, "optimizer", None) is not None and getattr(model, "compiled", False):
        _compile_like(model, new, _carried(model, new))
    return new


def _carried(model: Any, new: Any) -> Any:
    """An optimizer for `new` configured like `model`'s, holding its state (by position:
    the two models' variables come in the same order)."""
    import keras
    import numpy as np

    from zoo_transfer.optimizers import GroupedOptimizer
    from zoo_transfer.recipes import resized_weight
    from zoo_transfer.recipes.stages import find_backbone, layer_groups

    old = model.optimizer
    if isinstance(old, keras.optimizers.LossScaleOptimizer):
        raise OptimizerMismatchError(
            "Resizing a model compiled with a LossScaleOptimizer (mixed precision) is not "
            "supported yet: train a fixed-size transformer at one size under mixed "
            "precision, or resize it in float32."
        )
    strategy = getattr(new, "distribute_strategy", None)  # TensorFlow only
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        if isinstance(old, GroupedOptimizer):
            config = old.get_config()
            config["groups"] = layer_groups(new)  # Keras' auto-names differ between builds
            fresh = GroupedOptimizer.from_config(config).bind(new)
            fresh.build([])
        else:
            fresh = type(old).from_config(old.get_config())
            if old.built:
                fresh.build(new.trainable_variables)
    if not old.built:
        return fresh
    before, after = list(old.variables), list(fresh.variables)
    if len(before) != len(after):
        raise OptimizerMismatchError(
            f"The optimizer of {model.name!r} holds {len(before)} variables, its copy for "
            f"the resized model {len(after)}. Compile with "
            "zoo_transfer.transfer_optimizer(model, ...) so it covers every layer."
        )
    card = find_backbone(model)[1]
    source = tuple(model.inputs[0].shape[1:3])
    for a, b in zip(before, after, strict=True):
        value = keras.ops.convert_to_numpy(a)
        if tuple(value.shape) != tuple(b.shape):
            moved = resized_weight(card, a, tuple(b.shape), source=source, interpolation="bilinear")
            if moved is None:
                raise OptimizerMismatchError(
                    f"Optimizer state {a.path} has shape {value.shape}; the resized model "
                    f"needs {tuple(b.shape)}, and it is not a position embedding's."
                )
            value = np.asarray(moved)
        b.assign(value)
    return fresh


def _compile_like(model: Any, new: Any, optimizer: Any) -> None:
    """Compile `new` with `optimizer` and `model`'s loss, metrics and other settings."""
    from keras.saving import deserialize_keras_object

    config = dict(model.get_compile_config() or {})
    config.pop("optimizer", None)  # the carried one instead
    config = deserialize_keras_object(config)
    config["optimizer"] = optimizer
    new.compile(**config)
