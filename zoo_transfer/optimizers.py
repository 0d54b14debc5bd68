"""Discriminative learning rates that stay correct when layers are unfrozen mid-`fit`.

`GroupedOptimizer` builds on `keras.optimizers.MultiOptimizer`. It gives **every group
(a stage of the card, or `head`) its own inner optimizer** (a clone of the base
optimizer), whose learning rate is the base rate times the group's multiplier; with
`per="layer"` every layer gets one:

- The learning rate is scaled, not the gradient: Adam-family optimizers are invariant
  to gradient scale, so scaling gradients would change nothing for them.
- Each inner optimizer has its own step counter, so a stage unfrozen at step N gets
  Adam's bias correction for *its* step 1, not step N (whose first updates would be
  several times too large). `GradualUnfreezing` refuses a schedule that would unfreeze
  one group in several steps unless `per="layer"`. Per group is the default because
  every inner optimizer costs a few ops per step (per layer measured 0.69x the images/s
  of a plain fit on MobileNetV3Small at 64 px; per group, no measurable cost).
- It is built over every variable that can ever train, frozen or not, so the layout
  of its state never depends on the trainable set: `BackupAndRestore` and checkpoints
  restore it whatever was unfrozen. Frozen layers simply receive no update.
- Its state is saved **by variable path**, not by position, so a `.keras` file restores
  it even though `keras.saving.load_model` rebuilds the optimizer over the trainable
  variables only (Keras would otherwise skip the whole state with a warning when the
  counts differ). `GradualUnfreezing` then rebinds the reloaded optimizer to every
  layer that may be unfrozen (`rebind`), carrying the restored state over.

L2-SP (Li et al., ICML 2018), a guard against forgetting: with `l2_sp=alpha` the
optimizer adds the gradient of `alpha/2 * ||w - w0||^2` to every pretrained weight that
trains (w0: its value when `transfer_optimizer` was called) and of
`beta/2 * ||w||^2` (`l2_sp_head=beta`) to the new head's weights, before the inner
optimizer steps, so it works with any inner optimizer. The anchors w0 are optimizer
variables: saved and restored with its state (backups, `rebind`), never in a model file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from zoo_transfer.errors import ArgumentError, BuildArgumentError, OptimizerMismatchError


@keras.saving.register_keras_serializable(package="zoo_transfer")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule(step) * multiplier`, evaluated at the global step of the outer optimizer."""

    def __init__(self, schedule: Any, multiplier: float):
        self.schedule = schedule
        self.multiplier = float(multiplier)
        self.global_step: Any = None  # set by GroupedOptimizer.build; not serialised

    def __call__(self, step: Any) -> Any:
        if self.global_step is not None:
            step = self.global_step
        return self.schedule(step) * self.multiplier

    def get_config(self) -> dict[str, Any]:
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "multiplier": self.multiplier,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ScaledSchedule:
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["multiplier"])


def resolve_multipliers(groups: Sequence[str], lr_mult: Any) -> dict[str, float]:
    """Multiplier per group from a dict, a `(lo, hi)` spread, or None (all 1.0).

    A dict need not name every group: a group left out takes the multiplier of the
    next named group towards the head (`{"stage1": 0.01, "stage4": 0.1}` gives stem
    0.01, stage2 and stage3 0.1). `(lo, hi)` spreads geometrically from the first group
    (`lo`) to the head (`hi`).
    """
    groups = list(groups)
    if lr_mult is None:
        return dict.fromkeys(groups, 1.0)
    if isinstance(lr_mult, Mapping):
        unknown = set(lr_mult) - set(groups)
        if unknown:
            raise BuildArgumentError(
                f"lr_mult names unknown groups {sorted(unknown)}; the groups of this model "
                f"are {groups}."
            )
        out: dict[str, float] = {}
        pending: list[str] = []
        for g in groups:
            pending.append(g)
            if g in lr_mult:
                for p in pending:
                    out[p] = float(lr_mult[g])
                pending = []
        for p in pending:  # after the last named group (normally none: head is last)
            out[p] = 1.0
        return out
    if isinstance(lr_mult, Sequence) and len(lr_mult) == 2:
        lo, hi = float(lr_mult[0]), float(lr_mult[1])
        if lo <= 0 or hi <= 0:
            raise BuildArgumentError(f"lr_mult spread must be positive. Received: {lr_mult!r}")
        n = len(groups)
        return {g: lo * (hi / lo) ** (i / max(n - 1, 1)) for i, g in enumerate(groups)}
    raise BuildArgumentError(
        "Expected `lr_mult` as a dict {group: multiplier}, a (lo, hi) spread or None. "
        f"Received: lr_mult={lr_mult!r}"
    )


_SEP = "|"  # '/' would nest groups in the h5 weights store


def _no_state(store: Any) -> None:
    """Inner optimizers: their state is saved by the GroupedOptimizer that holds them."""


def _potential_variables(model: Any) -> list[Any]:
    """Every variable of `model` that is or may become trainable."""
    from zoo_transfer.recipes.stages import weighted_layers

    variables = []
    for layer in weighted_layers(model):
        # a layer made of layers (a keras-hub transformer block) keeps its sublayers' own
        for part in layer._flatten_layers(include_self=True, recursive=True):
            variables.extend(getattr(part, "_trainable_variables", part.trainable_weights))
    return variables


def _unit(variable: Any, groups: Mapping[str, str] = {}) -> str:  # noqa: B006 (read only)
    """The layer a variable belongs to: `conv1/kernel` -> `conv1`; a sublayer's variable
    belongs to the model's layer that holds it: `block_1/layer_norm_1/gamma` -> `block_1`,
    unless `groups` names the sublayer itself (a keras-hub encoder's block,
    `recipes.stages.units`): `vit_encoder/transformer_block_3/...` ->
    `vit_encoder/transformer_block_3`."""
    parts = variable.path.split("/", 2)
    nested = "/".join(parts[:2])
    return nested if len(parts) > 2 and nested in groups else parts[0]


_HEAD = "head"  # the group of the layers outside the backbone (`recipes.stages.HEAD`)
_HEAD_PREFIX = "head_"  # `build` names its new head's layers so
L2_SP_HEAD_RATIO = 0.1  # l2_sp_head defaults to this times l2_sp
_ANCHOR = "l2sp_anchor"  # suffix of the anchors' optimizer-variable names


def check_l2_sp(value: Any, name: str = "l2_sp") -> float:
    """`value` as a finite float >= 0 (None is 0: off), or `ArgumentError` naming it."""
    import math
    import numbers

    if value is None:
        return 0.0
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(float(value)) and float(value) >= 0)
    ):
        raise ArgumentError(
            f"Expected `{name}` to be a finite number >= 0 (the strength of the L2-SP "
            f"penalty, e.g. 0.01; 0 or None turns it off). Received: {name}={value!r}"
        )
    return float(value)


def _replica_share() -> float:
    """1/replicas inside a `tf.distribute` replica: Keras sums the replicas' gradients
    of a loss it divided by their number, so a penalty's gradient is divided the same way."""
    if keras.backend.backend() != "tensorflow":
        return 1.0
    import tensorflow as tf

    if tf.distribute.in_cross_replica_context():
        return 1.0
    return 1.0 / tf.distribute.get_strategy().num_replicas_in_sync


def _unnumbered(optimizer: Any) -> str:
    """`optimizer`'s name without the number Keras gives the second and later unnamed
    optimizer of a class in a process ("adam_1" -> "adam").

    The inner optimizers' names are the paths their state is saved and restored by
    (backups, `.keras` files): a run resumed in the same process as the run it
    continues (the Python API) must find the same paths.
    """
    import re

    name = str(optimizer.get_config()["name"])
    found = re.fullmatch(r"(.+)_\d+", name)  # Keras' auto-name: the class in snake case
    if found and found.group(1).replace("_", "") == type(optimizer).__name__.lower():
        return found.group(1)
    return name


@keras.saving.register_keras_serializable(package="zoo_transfer")
class GroupedOptimizer(keras.optimizers.MultiOptimizer):
    """One clone of `base` per group (or layer), learning rate scaled by the group's multiplier.

    Args:
        base: a Keras optimizer (instance, name or config), e.g. `"adam"`.
        groups: layer name -> group (`zoo_transfer.recipes.layer_groups(model)`).
        multipliers: group -> learning-rate multiplier (see `resolve_multipliers`).
        per: `"group"` (one inner optimizer per group) or `"layer"`.
        l2_sp: `float`, L2-SP strength alpha on the pretrained weights (0: off).
        l2_sp_head: `float`, plain L2 strength beta on the new head's weights (`head_*`
            layers of the `head` group); None: `0.1 * l2_sp`.

    See `transfer_optimizer` for L2-SP.

    Prefer `zoo_transfer.transfer_optimizer(model, ...)`, which fills both in.
    """

    def __init__(
        self,
        base: Any = "adam",
        groups: Mapping[str, str] | None = None,
        multipliers: Mapping[str, float] | None = None,
        per: str = "group",
        name: str | None = None,
        l2_sp: float | None = 0.0,
        l2_sp_head: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(self._select, name=name or "grouped_optimizer", **kwargs)
        base = keras.optimizers.get(base)
        # kept as plain config: an optimizer attribute would be tracked as state
        self._base_class = base.__class__
        self._base_config = base.get_config()
        self._base_config["name"] = _unnumbered(base)
        self.groups = dict(groups or {})
        self.multipliers = dict(multipliers or {})
        if per not in ("group", "layer"):
            raise BuildArgumentError(f"Expected per='group' or 'layer'. Received: {per!r}")
        self.per = per
        self.l2_sp = check_l2_sp(l2_sp, "l2_sp")
        self.l2_sp_head = (
            L2_SP_HEAD_RATIO * self.l2_sp
            if l2_sp_head is None
            else check_l2_sp(l2_sp_head, "l2_sp_head")
        )
        if self.l2_sp and base.get_config().get("weight_decay"):
            raise ArgumentError(
                "L2-SP replaces weight decay (decay pulls pretrained weights to 0, L2-SP to "
                f"their pretrained values). Received: l2_sp={self.l2_sp} with a "
                f"{type(base).__name__} of weight_decay={base.get_config()['weight_decay']}. "
                "Pass an optimizer without weight decay (e.g. 'adam'), or l2_sp=0."
            )
        # Not tracked: the optimizer's tracker would add model variables to its own state.
        object.__setattr__(self, "_all_variables", None)
        object.__setattr__(self, "_pending", {})
        object.__setattr__(self, "_w0", None)  # path -> value, taken by `bind`
        object.__setattr__(self, "_anchors", {})  # variable key -> its anchor (w0)
        object.__setattr__(self, "_model", None)  # weakref to the bound model (JAX)
        self._by_unit: dict[str, Any] = {}

    # ------------------------------------------------------------- inner optimizers
    def multiplier(self, unit: str) -> float:
        group = unit if unit in self.multipliers else self.groups.get(unit, "")
        return self.multipliers.get(group, 1.0)

    def _select(self, variable: Any) -> Any:
        unit = _unit(variable, self.groups)
        if self.per == "group":
            unit = self.groups.get(unit, unit)
        if unit not in self._by_unit:
            config = dict(self._base_config)
            config["name"] = f"{self._base_config['name']}_{unit}".replace("/", "_")
            mult = self.multiplier(unit)
            lr = config["learning_rate"]
            if isinstance(lr, dict):  # a serialised LearningRateSchedule
                config["learning_rate"] = ScaledSchedule(
                    keras.optimizers.schedules.deserialize(lr), mult
                )
            else:
                config["learning_rate"] = float(lr) * mult
            inner = self._base_class.from_config(config)
            # The outer optimizer saves every inner variable by path (see save_own_variables).
            inner.save_own_variables = _no_state
            inner.load_own_variables = _no_state
            self._by_unit[unit] = inner
        return self._by_unit[unit]

    def bind(self, model: Any) -> GroupedOptimizer:
        """Build over every variable of `model` that can ever train (frozen or not).

        With L2-SP on, the values of the pretrained ones now are the anchors w0.
        """
        import weakref

        object.__setattr__(self, "_model", weakref.ref(model))
        if self.built:
            return self
        variables = _potential_variables(model)
        object.__setattr__(self, "_all_variables", variables)
        if self.l2_sp:
            w0 = {
                v.path: keras.ops.convert_to_numpy(v).copy()
                for v in variables
                if not self._is_new(v)
            }
            object.__setattr__(self, "_w0", w0)
        return self

    def _is_new(self, variable: Any) -> bool:
        """A variable of the new head (`head_*` layers outside the backbone): no w0."""
        unit = _unit(variable, self.groups)
        return unit.startswith(_HEAD_PREFIX) and self.groups.get(unit) == _HEAD

    def anchors(self) -> dict[str, Any]:
        """L2-SP's w0 by model-variable path (empty when L2-SP is off or not built)."""
        by_key = {self._var_key(v): v for v in self._trainable_variables}
        return {by_key[k].path: a for k, a in self._anchors.items() if k in by_key}

    def covers(self, model: Any) -> bool:
        """Whether every variable of `model` that may ever train has state here."""
        if not self.built:
            return False
        known = self._var_to_optimizer_idx
        return all(self._var_key(v) in known for v in _potential_variables(model))

    def rebind(self, model: Any) -> GroupedOptimizer:
        """This optimizer, or a copy built over every layer of `model` that may train.

        A `.keras` file reloads the optimizer built over the trainable variables only.
        The copy gets the same config and carries over all state, by variable path
        (step counters, learning rates, Adam moments, and saved state that had no
        variable to go to yet). Assign it to `model.optimizer` and re-make the train
        function; `GradualUnfreezing` does both.
        """
        if not self.built:
            return self.bind(model)
        if self.covers(model):
            return self.bind(model)  # (binds the model for JAX's stateless step)
        with _strategy_scope(model):
            fresh = self.__class__.from_config(self.get_config()).bind(model)
            fresh.build([])
        state = dict(self._pending)
        state.update({v.path: v for v in self.variables})
        fresh._assign_by_path(state)
        return fresh

    # ------------------------------------------------------------------ state
    def save_own_variables(self, store: Any) -> None:
        """Every variable (own and inner) keyed by its path, so any build order loads."""
        for variable in self.variables:
            store[variable.path.replace("/", _SEP)] = keras.ops.convert_to_numpy(variable)
        for path, value in self._pending.items():
            store[path.replace("/", _SEP)] = value

    def load_own_variables(self, store: Any) -> None:
        """Assign saved state by path; keep state that has no variable yet for `rebind`."""
        keys = list(store.keys())
        if keys and all(k.isdigit() for k in keys):  # saved by position (plain Optimizer)
            return super().load_own_variables(store)
        state = {k.replace(_SEP, "/"): store[k] for k in keys}
        left = self._assign_by_path(state)
        object.__setattr__(self, "_pending", left)

    def _assign_by_path(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Assign `state[path]` to each variable with that path; return the rest."""
        import numpy as np

        left = dict(state)
        for variable in self.variables:
            if variable.path not in left:
                continue
            value = np.asarray(left.pop(variable.path))
            if tuple(value.shape) != tuple(variable.shape):
                raise OptimizerMismatchError(
                    f"Saved optimizer state {variable.path} has shape {value.shape}, but the "
                    f"model needs {tuple(variable.shape)}. The file belongs to another model."
                )
            variable.assign(value)
        # state of variables that cannot train yet is zero unless it trained before
        return {p: np.asarray(v) for p, v in left.items() if np.any(np.asarray(v))}

    def build(self, var_list: Sequence[Any]) -> None:
        if self.built:
            return
        variables = self._all_variables or list(var_list)
        super().build(variables)
        for inner in self._inner_optimizers:
            if isinstance(inner._learning_rate, ScaledSchedule):
                inner._learning_rate.global_step = self.iterations
        if self.l2_sp:
            self._build_anchors(variables)

    def _build_anchors(self, variables: Sequence[Any]) -> None:
        """One non-trainable optimizer variable per pretrained variable: its w0.

        Its value is the one `bind` took (`transfer_optimizer`), else (an optimizer made
        from its config, e.g. by `load_model`) the variable's value now; a saved state
        (backup, `.keras` file, `rebind`) then replaces it by path.
        """
        w0 = self._w0 or {}
        anchors = {}
        for variable in variables:
            if self._is_new(variable):
                continue
            start = w0.get(variable.path)
            if start is None:
                start = keras.ops.convert_to_numpy(variable).copy()

            def initializer(shape: Any, dtype: Any = None, value: Any = start) -> Any:
                return keras.ops.convert_to_tensor(value, dtype=dtype)

            anchors[self._var_key(variable)] = self.add_variable_from_reference(
                variable, _ANCHOR, initializer=initializer
            )
        object.__setattr__(self, "_anchors", anchors)
        object.__setattr__(self, "_w0", None)  # the anchors hold it now

    def _penalised(self, grad: Any, variable: Any) -> Any:
        """`grad` plus the L2-SP gradient: alpha (w - w0), or beta w for the new head."""
        anchor = self._anchors.get(self._var_key(variable))
        if anchor is not None:
            pull = keras.ops.subtract(variable, anchor) * self.l2_sp
        elif self._is_new(variable) and self.l2_sp_head:
            pull = keras.ops.convert_to_tensor(variable) * self.l2_sp_head
        else:
            return grad
        share = _replica_share()
        if share != 1.0:
            pull = pull * share
        return keras.ops.add(grad, keras.ops.cast(pull, grad.dtype))

    def apply(self, grads: Sequence[Any], trainable_variables: Sequence[Any] | None = None):
        """Apply to any subset of the variables it was built over (the trainable ones)."""
        if len(grads) == 0:
            return
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        if not self.built:
            self.build(trainable_variables)
            self.built = True
        per_optimizer: dict[int, list[tuple[Any, Any]]] = {}
        for grad, var in zip(grads, trainable_variables, strict=True):
            key = self._var_key(var)
            if key not in self._var_to_optimizer_idx:
                raise OptimizerMismatchError(
                    f"Variable {var.path} was not known when the optimizer was built. "
                    "Compile with zoo_transfer.transfer_optimizer(model, ...) so it covers "
                    "every layer that may be unfrozen."
                )
            if (self.l2_sp or self.l2_sp_head) and grad is not None:
                grad = self._penalised(grad, var)
            per_optimizer.setdefault(self._var_to_optimizer_idx[key], []).append((grad, var))
        for idx, pairs in per_optimizer.items():
            sub_grads, sub_vars = zip(*pairs, strict=True)
            self._inner_optimizers[idx].apply(list(sub_grads), list(sub_vars))
        self._iterations.assign_add(1)

    def stateless_apply(
        self, optimizer_variables: Sequence[Any], grads: Sequence[Any], trainable_variables: Any
    ) -> tuple[list[Any], list[Any]]:
        """Keras' JAX trainer's step: `grads` and values for the model's trainable variables.

        Keras maps those values onto the variables the optimizer was built with, which
        here are all that may ever train, more than train now. So the values go to the
        bound model's trainable variables as they are when the step is traced (a
        `GradualUnfreezing` change re-traces it), and only those are updated.
        """
        model = self._model() if self._model is not None else None
        targets = list(model.trainable_variables) if model is not None else None
        if targets is None or len(targets) != len(trainable_variables):
            if len(self._trainable_variables) == len(trainable_variables):
                return super().stateless_apply(optimizer_variables, grads, trainable_variables)
            raise OptimizerMismatchError(
                f"The train step passes {len(trainable_variables)} trainable variables, but "
                f"this optimizer was built over {len(self._trainable_variables)} and is bound "
                "to no model with that many. Compile with "
                "zoo_transfer.transfer_optimizer(model, ...) for this model."
            )
        mapping = list(zip(targets, trainable_variables, strict=True)) + list(
            zip(self.variables, optimizer_variables, strict=True)
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.apply(grads, targets)
        return (
            [scope.get_current_value(v) for v in targets],
            [scope.get_current_value(v) for v in self.variables],
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base": keras.optimizers.serialize(self._base_class.from_config(self._base_config)),
            "groups": self.groups,
            "multipliers": self.multipliers,
            "per": self.per,
            "l2_sp": self.l2_sp,
            "l2_sp_head": self.l2_sp_head,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> GroupedOptimizer:
        config = dict(config)
        config["base"] = keras.optimizers.deserialize(config["base"], custom_objects=custom_objects)
        return cls(**config)


@keras.saving.register_keras_serializable(package="zoo_transfer")
class GroupedLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' `LossScaleOptimizer` around a `GroupedOptimizer`, for `mixed_float16`.

    Keras saves a `LossScaleOptimizer`'s variables *and* its inner optimizer's by
    position, and skips them all (with a warning) when a reload built fewer. Here the
    loss scale keeps only its own counters, by path; the `GroupedOptimizer` inside
    saves its state by path itself. `transfer_optimizer` returns one under a
    `mixed_float16` policy, so Keras does not wrap it in a plain one.
    """

    def stateless_apply(
        self, optimizer_variables: Sequence[Any], grads: Sequence[Any], trainable_variables: Any
    ) -> Any:
        """Keras' JAX step. The loss scale pairs `grads` with the variables it was built
        over (those trainable at the first `fit`); after an unfreeze there are more
        gradients, so for the step it pairs them with the bound model's trainable
        variables, as the `GroupedOptimizer` inside does."""
        bound = getattr(self.inner_optimizer, "_model", None)
        model = bound() if bound is not None else None
        current = list(model.trainable_variables) if model is not None else None
        if current is None or len(current) != len(trainable_variables):
            return super().stateless_apply(optimizer_variables, grads, trainable_variables)
        built_over = self._trainable_variables
        object.__setattr__(self, "_trainable_variables", current)  # untracked, for this step
        try:
            return super().stateless_apply(optimizer_variables, grads, trainable_variables)
        finally:
            object.__setattr__(self, "_trainable_variables", built_over)

    def save_own_variables(self, store: Any) -> None:
        for variable in self._variables:
            store[variable.path.replace("/", _SEP)] = keras.ops.convert_to_numpy(variable)

    def load_own_variables(self, store: Any) -> None:
        mine = {variable.path.replace("/", _SEP): variable for variable in self._variables}
        for key in store.keys():
            if key in mine:
                mine[key].assign(store[key])


def transfer_optimizer(
    model: Any,
    optimizer: Any = "adam",
    *,
    learning_rate: Any = None,
    lr_mult: Any = None,
    per: str = "group",
    l2_sp: float | None = None,
    l2_sp_head: float | None = None,
) -> GroupedOptimizer | GroupedLossScaleOptimizer:
    """An optimizer for a model from `build`: discriminative LRs, safe to unfreeze.

    Under a `mixed_float16` policy it comes wrapped in a `GroupedLossScaleOptimizer`.

    L2-SP (`l2_sp=alpha`, Li et al., ICML 2018) keeps the fine-tuned backbone near its
    pretrained weights, a guard against forgetting what pretraining taught: every step
    adds the gradient of `alpha/2 * ||w - w0||^2` to each weight outside the new head
    that trains, and of `beta/2 * ||w||^2` (`l2_sp_head=beta`) to the new head's
    (`head_*` layers), before the inner optimizer steps. It replaces weight decay (an
    optimizer with `weight_decay` is refused), works with any base optimizer, and
    touches no frozen weight. **w0 is each weight's value when this function is
    called**: call it right after `build` (or after your own changes you want kept).
    The anchors are optimizer variables (`optimizer.anchors()`), saved and restored
    with the optimizer's state (`zoo_transfer.backup`), never written to a model file.

    Args:
        model: a model from `zoo_transfer.build`.
        optimizer: the base optimizer (name, instance or config), cloned per layer.
        learning_rate: base learning rate or a `LearningRateSchedule` (default: the
            base optimizer's).
        lr_mult: `{"stage1": 0.01, "stage4": 0.1, "head": 1.0}`, a `(lo, hi)` spread, or
            None for one learning rate everywhere.
        per: one inner optimizer (and Adam step counter) per `"group"` or per `"layer"`;
            `"layer"` if you unfreeze parts of a stage at different times.
        l2_sp: `float >= 0`, the L2-SP strength alpha (None or 0: off), e.g. 0.01.
        l2_sp_head: `float >= 0`, the plain L2 strength beta on the new head (default
            `0.1 * l2_sp`).

    ```python
    model = zoo_transfer.build("resnet50", num_classes=5, trainable_from="stage3")
    opt = zoo_transfer.transfer_optimizer(model, "adam", learning_rate=1e-3, lr_mult=(0.01, 1))
    model.compile(opt, "sparse_categorical_crossentropy")
    # the same, the backbone held near its pretrained weights:
    opt = zoo_transfer.transfer_optimizer(model, "adam", learning_rate=1e-3, l2_sp=0.01)
    ```
    """
    from zoo_transfer.recipes.stages import group_order, layer_groups

    check_l2_sp(l2_sp, "l2_sp")  # before any work: the error names the bad value
    check_l2_sp(l2_sp_head, "l2_sp_head")
    base = keras.optimizers.get(optimizer)
    if learning_rate is not None:
        config = base.get_config()
        config["learning_rate"] = (
            keras.optimizers.schedules.serialize(learning_rate)
            if (isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule))
            else float(learning_rate)
        )
        base = base.__class__.from_config(config)
    groups = layer_groups(model)
    multipliers = resolve_multipliers(group_order(model), lr_mult)
    with _strategy_scope(model):
        grouped = GroupedOptimizer(
            base, groups, multipliers, per=per, l2_sp=l2_sp, l2_sp_head=l2_sp_head
        ).bind(model)
        _build_now(grouped)
        if keras.config.dtype_policy().name == "mixed_float16":
            # named: Keras would number a second one in the process, and state loads by path
            return GroupedLossScaleOptimizer(grouped, name="loss_scale_optimizer")
        return grouped


def build_optimizer_now(model: Any) -> None:
    """Create the compiled optimizer's state (Adam's moments, ...) now, eagerly.

    Without a distribution strategy, Keras' TensorFlow trainer creates it while it traces
    the first train step, where making a variable costs ten times more: measured, 2.5 s
    instead of 0.24 s for MobileNet 0.25's 81 variables, and 4 s of a 30 s
    `zoo-transfer train` run. Under a strategy, and on JAX, Keras builds it eagerly
    itself; the state is the same either way (zeros, over the same variables).
    `transfer_optimizer` builds its optimizer at once; this is for any other (`fit_transfer`
    calls it before `fit`).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or optimizer.built or keras.backend.backend() != "tensorflow":
        return
    if getattr(model, "_distribute_strategy", None) is not None:
        return  # Keras builds it inside the strategy's scope
    optimizer.build(model.trainable_variables)


def _build_now(optimizer: GroupedOptimizer) -> None:
    """`transfer_optimizer`'s optimizer, built at once over every variable that may train
    (inside the model's strategy scope, where it is called): see `build_optimizer_now`."""
    if keras.backend.backend() == "tensorflow":
        optimizer.build(optimizer._all_variables)


def _strategy_scope(model: Any) -> Any:
    """The model's `tf.distribute` strategy scope; a no-op on backends without one (JAX)."""
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow backend only
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
