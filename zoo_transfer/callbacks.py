"""Training callbacks for transfer learning that take effect inside one `fit` call.

Setting `layer.trainable = True` in a callback changes nothing by itself: Keras traced
the train step for the old trainable set and the optimizer was built for it, so the
newly unfrozen weights never move and no error is raised. `GradualUnfreezing`
therefore re-traces the train function after each change, and relies on
`GroupedOptimizer` (see `zoo_transfer.optimizers`), which already holds state for every
layer that can ever train, with its own step counter per layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import keras

from zoo_transfer.errors import BuildArgumentError, NotATransferModelError

if TYPE_CHECKING:
    from zoo_transfer.data import Resizable


@keras.saving.register_keras_serializable(package="zoo_transfer")
class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreeze the backbone stage by stage, during one `fit`.

    Args:
        schedule: `{epoch: what}`. `what` is a stage name (that stage and every later
            one become trainable), an int n (the last n stages, fastai's `freeze_to`),
            or a backbone layer name (that layer and everything after it). Unfreezing is
            cumulative: `{2: "stage4", 4: "stage3"}`.
        verbose: print one line per event.

    BatchNorm policy (`bn`): `"frozen"` (default) leaves BatchNorm layers of unfrozen
    stages frozen, so they stay in inference mode, as the Keras fine-tuning guide
    advises: their statistics never change. `"train"` unfreezes them with their stage:
    they then train and update their statistics.

    Each epoch's logs get `trainable_params`, so the history marks every event. On a
    resumed run (`BackupAndRestore`), the first epoch re-applies every earlier event.

    ```python
    model = zoo_transfer.build("resnet50", num_classes=5)
    model.compile(zoo_transfer.transfer_optimizer(model, "adam", learning_rate=1e-3),
                  "sparse_categorical_crossentropy")
    model.fit(data, epochs=6, callbacks=[GradualUnfreezing({2: "stage4", 4: "stage3"})])
    ```
    """

    def __init__(self, schedule: Mapping[int, Any], bn: str = "frozen", verbose: int = 1):
        super().__init__()
        if bn not in ("frozen", "train"):
            raise BuildArgumentError(f"Expected bn 'frozen' or 'train'. Received: {bn!r}")
        self.bn = bn
        if not isinstance(schedule, Mapping) or not schedule:
            raise BuildArgumentError(
                f"Expected `schedule` as a non-empty dict {{epoch: stage}}. Received: {schedule!r}"
            )
        self.schedule = {int(k): v for k, v in schedule.items()}
        if any(e < 0 for e in self.schedule):
            raise BuildArgumentError(f"Schedule epochs must be >= 0. Received: {schedule!r}")
        self.verbose = verbose
        self.applied_epoch: int | None = None
        self.events: list[tuple[int, Any]] = []

    # ------------------------------------------------------------------ checks
    def _resolve(self) -> None:
        from zoo_transfer.optimizers import GroupedOptimizer
        from zoo_transfer.recipes.stages import find_backbone, stage_of_layers, units

        self._backbone, self._card = find_backbone(self.model)
        self._units = units(self._backbone)  # a keras-hub encoder's blocks one by one
        self._stage_of = stage_of_layers(self._backbone, self._card)
        present = [s for s in self._card.stage_names if s in set(self._stage_of.values())]
        self._present = present
        epochs = self.params.get("epochs") if self.params else None
        for epoch, what in self.schedule.items():
            if epochs is not None and epoch >= epochs:
                raise BuildArgumentError(
                    f"GradualUnfreezing schedule names epoch {epoch}, but fit runs epochs "
                    f"0-{epochs - 1}. Drop that entry or train longer."
                )
            self._first_layer(what)  # raises for an unknown stage or layer
        optimizer = getattr(self.model, "optimizer", None)
        inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
        if not isinstance(inner, GroupedOptimizer):
            optimizer = inner = self._grouped(optimizer)
        fresh = inner.rebind(self.model)  # a reloaded .keras: built for the trainable set only
        if fresh is not inner:
            if optimizer is inner:
                self.model.optimizer = fresh
            else:
                optimizer.inner_optimizer = fresh
            self.model.make_train_function(force=True)
            inner = fresh
        if inner.per == "group":
            split = self._split_groups()
            if split:
                raise BuildArgumentError(
                    f"This schedule unfreezes group {split!r} in several steps, but its "
                    "layers share one optimizer step counter, so the later ones would get "
                    "Adam's bias correction for the wrong step. Unfreeze whole stages, or "
                    "compile with transfer_optimizer(model, ..., per='layer')."
                )

    def _grouped(self, optimizer: Any) -> Any:
        """Replace a plain optimizer that holds no state yet by `transfer_optimizer`'s."""
        from zoo_transfer.optimizers import transfer_optimizer

        if not isinstance(optimizer, keras.optimizers.Optimizer) or isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer
        ):
            raise BuildArgumentError(
                "GradualUnfreezing needs an optimizer built for every layer that may be "
                f"unfrozen; it cannot convert a {type(optimizer).__name__}. Compile with "
                "`zoo_transfer.transfer_optimizer(model, ...)` (under mixed precision it "
                "comes loss-scaled)."
            )
        if int(keras.ops.convert_to_numpy(optimizer.iterations)) > 0:
            raise BuildArgumentError(
                "GradualUnfreezing needs an optimizer built for every layer that may be "
                f"unfrozen; this {type(optimizer).__name__} already holds training state, "
                "which converting it would lose. Compile with "
                "`zoo_transfer.transfer_optimizer(model, ...)` before the first fit."
            )
        grouped = transfer_optimizer(self.model, optimizer)
        grouped = grouped.rebind(self.model)
        grouped.build([])
        self.model.optimizer = grouped
        self.model.make_train_function(force=True)
        return grouped

    def _split_groups(self) -> str | None:
        """A group whose layers would start training at different epochs, if any."""
        start: dict[str, int] = {}
        for name, layer in self._units.items():
            if layer.weights and layer.trainable and self._backbone.trainable:
                start[name] = -1
        for epoch in sorted(self.schedule):
            for name in self._first_layer(self.schedule[epoch]):
                layer = self._units[name]
                skip = self.bn == "frozen" and isinstance(layer, keras.layers.BatchNormalization)
                if layer.weights and not skip:
                    start.setdefault(name, epoch)
        times: dict[str, set[int]] = {}
        for name, epoch in start.items():
            times.setdefault(self._stage_of[name], set()).add(epoch)
        return next((g for g, t in times.items() if len(t) > 1), None)

    def _first_layer(self, what: Any) -> set[str]:
        """Names of the backbone layers that `what` makes trainable."""
        if isinstance(what, int) and not isinstance(what, bool):
            if not 1 <= what <= len(self._present):
                raise BuildArgumentError(
                    f"Cannot unfreeze the last {what} stages: the backbone has "
                    f"{len(self._present)} ({', '.join(self._present)})."
                )
            what = self._present[-what]
        if what in self._present:
            start = self._present.index(what)
            keep = set(self._present[start:])
            return {name for name, stage in self._stage_of.items() if stage in keep}
        names = list(self._units)
        # a layer split into blocks (`stages.units`) starts at its first block
        first = next((n for n in names if n == what or n.startswith(f"{what}/")), None)
        if first is None:
            raise BuildArgumentError(
                f"GradualUnfreezing: {what!r} is neither a stage of {self._card.name} "
                f"({', '.join(self._present)}) nor a layer of its backbone."
            )
        return set(names[names.index(first) :])

    # ------------------------------------------------------------------ events
    def on_train_begin(self, logs: dict | None = None) -> None:
        self._resolve()
        self.applied_epoch = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        due = [
            e
            for e in sorted(self.schedule)
            if e <= epoch and (self.applied_epoch is None or e > self.applied_epoch)
        ]
        if not due:
            return
        names: set[str] = set()
        for e in due:
            names |= self._first_layer(self.schedule[e])
        frozen_now = [
            layer
            for name, layer in self._units.items()
            if name in names and layer.weights and not layer.trainable
        ]
        if frozen_now:
            # `trainable` on a container cascades to every layer: set it, then restore
            # each unit's own state plus the newly unfrozen ones.
            before = {
                name: layer.trainable and self._backbone.trainable
                for name, layer in self._units.items()
            }
            self._backbone.trainable = True
            keep_bn_frozen = self.bn == "frozen"
            for name, layer in self._units.items():
                unfreeze = name in names and not (
                    keep_bn_frozen and isinstance(layer, keras.layers.BatchNormalization)
                )
                layer.trainable = before[name] or unfreeze
            self.model.make_train_function(force=True)  # re-trace for the new set
            # and the validation and predict steps: on JAX under a distribution their
            # jitted state shardings list the trainable variables too
            self.model.test_function = None
            self.model.predict_function = None
        self.applied_epoch = epoch
        for e in due:
            if (e, self.schedule[e]) in self.events:  # a later `fit` of the same run
                continue
            self.events.append((e, self.schedule[e]))
            if self.verbose:
                print(
                    f"GradualUnfreezing: epoch {e + 1}: unfroze {self.schedule[e]!r} "
                    f"({_count(self.model.trainable_weights):,} trainable parameters)"
                )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["trainable_params"] = _count(self.model.trainable_weights)

    def get_config(self) -> dict[str, Any]:
        return {
            "schedule": {str(k): v for k, v in self.schedule.items()},
            "bn": self.bn,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GradualUnfreezing:
        return cls(**config)


def _count(weights: Any) -> int:
    total = 0
    for w in weights:
        n = 1
        for d in w.shape:
            n *= int(d)
        total += n
    return total


@keras.saving.register_keras_serializable(package="zoo_transfer")
class ProgressiveResizing(keras.callbacks.Callback):
    """Grow the training image size between epochs of one `fit`: `{0: 128, 3: 160, 6: 224}`.

    Bound explicitly to the `zoo_transfer.data.ResizableImages` pipeline(s) it resizes
    (or `ResizableArrays`, the TensorFlow-free source for the JAX and other backends):
    the callback sets their size at the start of an epoch, before Keras creates the
    epoch's iterator, so prefetched batches always have the new size. A pipeline that
    Keras keeps across epochs (`.repeat()` with `steps_per_epoch`) would leak old-size
    batches into the next stage; that setup is refused before training starts.

    Args:
        schedule: `{epoch: size}`; each size holds until the next entry.
        train: the training `ResizableImages` or `ResizableArrays`.
        validation: an optional validation `ResizableImages` or `ResizableArrays`.
        validation_size: `"final"` (the schedule's last size, the default), `"current"`
            (the training size of the epoch), or an int.
        similar: set `True` when the data resembles ImageNet: training pretrained
            weights below the card's resolution then warns (it can damage the features).
        verbose: print one line per size change.

    Each epoch's logs get `image_size` and `val_image_size`, beside the metrics.

    A keras-hub transformer card (ViT, DeiT, DINOv2, CLIP, SigLIP) is built for one size:
    train it with `zoo_transfer.fit_transfer(model, ..., callbacks=[ProgressiveResizing(
    ...)])`, which runs one `fit` per size on the model rebuilt for it (`by_stage`,
    `zoo_transfer.resize_model`); a plain `model.fit` with this callback refuses it.
    """

    def __init__(
        self,
        schedule: Mapping[int, int],
        train: Resizable,
        validation: Resizable | None = None,
        validation_size: Any = "final",
        similar: bool | None = None,
        verbose: int = 1,
    ):
        super().__init__()
        if not isinstance(schedule, Mapping) or not schedule:
            raise BuildArgumentError(
                f"Expected `schedule` as a non-empty dict {{epoch: size}}. Received: {schedule!r}"
            )
        self.schedule = {int(k): int(v) for k, v in sorted(schedule.items())}
        if min(self.schedule) != 0:
            raise BuildArgumentError(
                f"The schedule must give the size of epoch 0. Received: {schedule!r}"
            )
        if validation_size not in ("final", "current") and not isinstance(validation_size, int):
            raise BuildArgumentError(
                "Expected validation_size 'final', 'current' or an int. "
                f"Received: {validation_size!r}"
            )
        self.train, self.validation = train, validation
        self.validation_size = validation_size
        self.similar, self.verbose = similar, verbose
        self.current: int | None = None
        self._run_epochs: int | None = None  # set by `by_stage`: one fit per size
        self._warned = False

    def size_at(self, epoch: int) -> int:
        return self.schedule[max(e for e in self.schedule if e <= epoch)]

    def by_stage(self, initial_epoch: int, epochs: int) -> list[tuple[int, int, int]]:
        """`(first epoch, end epoch, size)` for each size the epochs `initial_epoch` to
        `epochs - 1` train at, for a model built at one size (a keras-hub transformer):
        `fit_transfer` then runs one `fit` per size, each on the model rebuilt for it
        (`zoo_transfer.resize_model`), and validation runs at the training size, the
        only one such a model takes.
        """
        self._run_epochs = int(epochs)
        stages: list[tuple[int, int, int]] = []
        for epoch in range(int(initial_epoch), int(epochs)):
            size = self.size_at(epoch)
            if stages and stages[-1][2] == size:
                stages[-1] = (stages[-1][0], epoch + 1, size)
            else:
                stages.append((epoch, epoch + 1, size))
        return stages

    def _validation_size(self, epoch: int) -> int:
        if self._run_epochs is not None:
            return self.size_at(epoch)
        if self.validation_size == "final":
            return self.schedule[max(self.schedule)]
        if self.validation_size == "current":
            return self.size_at(epoch)
        return int(self.validation_size)

    def on_train_begin(self, logs: dict | None = None) -> None:
        import warnings

        epochs = self.params.get("epochs")
        late = [e for e in self.schedule if epochs is not None and e >= epochs]
        if late:
            raise BuildArgumentError(
                f"ProgressiveResizing schedule names epoch {late[0]}, but fit runs epochs "
                f"0-{epochs - 1}."
            )
        steps = self.params.get("steps")
        batches = _batches_per_pass(self.train)
        if steps is not None and batches is not None and steps != batches:
            raise BuildArgumentError(
                f"fit runs {steps} steps per epoch but one pass over the resizable pipeline "
                f"is {batches} batches. With .repeat() and "
                "steps_per_epoch Keras keeps one iterator across epochs, so prefetched "
                "batches of the old size would leak into the next stage. Pass "
                "train.dataset() without .repeat() or steps_per_epoch."
            )
        try:
            from zoo_transfer.recipes.stages import find_backbone

            _, card = find_backbone(self.model)
        except NotATransferModelError:  # any Keras model may be resized
            card = None
        if card is not None and card.tokens is not None and self._run_epochs is None:
            from zoo_transfer.input_spec import fixed_side

            side = fixed_side(self.model)
            if side is not None and set(self.schedule.values()) != {side}:
                raise BuildArgumentError(
                    f"{card.name} is built for {side}x{side} images only (its position "
                    "embeddings have one row per patch), so one `fit` cannot change its "
                    "size. Train with zoo_transfer.fit_transfer(model, ..., "
                    "callbacks=[ProgressiveResizing(...)]): it rebuilds the model for each "
                    "size (zoo_transfer.resize_model)."
                )
        if card is not None:
            low = min(self.schedule.values())
            if low < card.min_input_size[0]:
                raise BuildArgumentError(
                    f"ProgressiveResizing size {low} is below {card.name}'s minimum input "
                    f"of {card.min_input_size[0]} pixels."
                )
            if self.similar and low < card.input_size[0] and not self._warned:
                self._warned = True  # once per run, not once per `fit` of `by_stage`
                warnings.warn(
                    f"ProgressiveResizing trains {card.name} at {low} px, below the "
                    f"{card.input_size[0]} px of its pretraining, on data declared similar "
                    "to ImageNet: small sizes can damage the pretrained features. Start "
                    "closer to the card's size or keep early stages frozen.",
                    UserWarning,
                    stacklevel=2,
                )

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        size = self.size_at(epoch)
        if size != self.current:
            self.train.set_size(size)
            if self.verbose and self.current is not None:
                print(f"ProgressiveResizing: epoch {epoch + 1}: training at {size} px")
            self.current = size
        if self.validation is not None:
            self.validation.set_size(self._validation_size(epoch))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["image_size"] = self.size_at(epoch)
            if self.validation is not None:
                logs["val_image_size"] = self._validation_size(epoch)

    def get_config(self) -> dict[str, Any]:
        return {
            "schedule": {str(k): v for k, v in self.schedule.items()},
            "validation_size": self.validation_size,
            "similar": self.similar,
            "verbose": self.verbose,
        }


def _batches_per_pass(source: Any) -> int | None:
    """Batches in one pass over a resizable source, or None when it is unknown."""
    per_pass = getattr(source, "batches_per_pass", None)  # the `Resizable` protocol
    if per_pass is not None:
        return per_pass()
    try:
        return len(source)
    except TypeError:
        return None


class EpochSeeding(keras.callbacks.Callback):
    """Tell resizable pipelines which epoch begins, so that it draws its own batches.

    `ResizableImages` and `ResizableArrays` draw epoch `e`'s order and augmentation
    from `(seed, e)` alone. Without this callback they count their own passes, which
    restart at 0 in a new process; with it, a `fit` resumed at epoch `e` (from
    `zoo_transfer.backup` or `keras.callbacks.BackupAndRestore`) trains on exactly the
    batches an uninterrupted one would have.

    Args:
        *sources: the `ResizableImages` or `ResizableArrays` to keep in step.

    ```python
    splits = zoo_transfer.data.load("photos/", image_size=224, validation_split=0.2)
    model.fit(splits.train, epochs=5, initial_epoch=start,
              callbacks=[EpochSeeding(splits.train_images)])
    ```
    """

    def __init__(self, *sources: Resizable):
        super().__init__()
        missing = [s for s in sources if not hasattr(s, "set_epoch")]
        if missing:
            raise BuildArgumentError(
                "EpochSeeding takes ResizableImages or ResizableArrays (e.g. "
                f"`splits.train_images`). Received: {type(missing[0]).__name__}"
            )
        self.sources = sources

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for source in self.sources:
            source.set_epoch(epoch)
