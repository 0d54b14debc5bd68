"""The four classic transfer situations as recipes: target data small/large x similar/different.

| target data | similar to ImageNet          | different from ImageNet          |
|-------------|------------------------------|----------------------------------|
| small       | `small_similar`: freeze all, | `small_different`: cut earlier,  |
|             | train a new head             | train new layers on top          |
| large       | `large_similar`: fine-tune   | `large_different`: cut earlier,  |
|             | everything at a low LR       | train everything                 |

Each recipe returns `(model, plan)`. The plan is a plain dataclass of the compile and
fit settings the recipe recommends; change any field before `plan.compile(model)`, then
train with `zoo_transfer.training.fit_transfer(model, train, val, plan=plan)` (which
uses cached backbone features where the plan allows it and they are exact) or with
`model.fit`. Plans hold settings only: they import no training code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zoo_transfer.errors import BuildArgumentError
from zoo_transfer.registry import Card, get_card

from ._build import _head_stages, build
from ._data_rule import LEARNING_RATE, SMALL_DATA_EPOCHS, epochs_for

SMALL_DATASET = 10_000  # images; below this, train few parameters


@dataclass
class Plan:
    """Compile and fit settings a recipe recommends. Every field may be overridden.

    `probe`: fit the head to convergence on the frozen backbone's features first
    (`zoo_transfer.linear_head.fit_linear_head`), so the epochs start from it.
    `unfreeze`: a `GradualUnfreezing` schedule, `{0-based epoch: stage}`.
    `lr_mult`: the `(lo, hi)` spread of `transfer_optimizer`'s learning rates.

    ```python
    model, plan = recipes.small_similar("resnet50", num_classes=5)
    plan.epochs = 3
    plan.compile(model)
    model.fit(x, y, epochs=plan.epochs, batch_size=plan.batch_size, callbacks=plan.callbacks())
    # or: zoo_transfer.training.fit_transfer(model, (x, y), (x_val, y_val), plan=plan)
    ```
    """

    recipe: str
    optimizer: str
    learning_rate: float
    epochs: int
    batch_size: int = 32
    loss: str = "sparse_categorical_crossentropy"
    metrics: list[str] = field(default_factory=lambda: ["accuracy"])
    early_stopping_patience: int | None = 3
    notes: str = ""
    cached_head: bool = False
    probe: bool = False
    unfreeze: dict[int, Any] = field(default_factory=dict)
    lr_mult: tuple[float, float] | None = None

    def make_optimizer(self) -> Any:
        import keras

        return keras.optimizers.get(
            {"class_name": self.optimizer, "config": {"learning_rate": self.learning_rate}}
        )

    def compile(self, model: Any, **overrides: Any) -> Any:
        """`model.compile` with this plan's optimizer, loss and metrics."""
        kwargs = {"optimizer": self.make_optimizer(), "loss": self.loss, "metrics": self.metrics}
        kwargs.update(overrides)
        model.compile(**kwargs)
        return model

    def callbacks(self) -> list[Any]:
        import keras

        if self.early_stopping_patience is None:
            return []
        return [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=self.early_stopping_patience, restore_best_weights=True
            )
        ]


def _loss(num_classes: int) -> str:
    return "binary_crossentropy" if num_classes == 1 else "sparse_categorical_crossentropy"


def _earlier_stage(card: Card) -> str:
    """The stage before the feature layer: where 'different' data is cut."""
    cuts = card.cut_stages  # a block inside an encoder layer (ViT) is no cut point
    if len(cuts) < 2:
        raise BuildArgumentError(f"{card.name} has a single stage; it cannot be cut earlier.")
    return cuts[-2].name


def _recipe(
    recipe: str,
    name: str,
    num_classes: int,
    build_kwargs: dict[str, Any],
    defaults: dict[str, Any],
    *,
    learning_rate: float,
    epochs: int,
    notes: str,
    cached_head: bool = False,
) -> tuple[Any, Plan]:
    """Build with the recipe's defaults under the user's kwargs; pair it with its plan."""
    model = build(name, num_classes, **{**defaults, **build_kwargs})
    plan = Plan(
        recipe,
        "adam",
        learning_rate,
        epochs=epochs,
        loss=_loss(num_classes),
        notes=notes,
        cached_head=cached_head,
    )
    return model, plan


def small_similar(name: str, num_classes: int, **build_kwargs: Any) -> tuple[Any, Plan]:
    """Small data, similar to ImageNet: freeze the whole backbone, train a new head."""
    return _recipe(
        "small_similar",
        name,
        num_classes,
        build_kwargs,
        {},
        learning_rate=1e-3,
        epochs=10,
        notes="Only the head trains; the backbone's features are kept as they are, so "
        "fit_transfer(..., plan=plan) computes them once and trains the head on them.",
        cached_head=True,
    )


def large_similar(name: str, num_classes: int, **build_kwargs: Any) -> tuple[Any, Plan]:
    """Large data, similar: fine-tune the whole network from the pretrained init, low LR."""
    first = get_card(name).stages[0].name
    return _recipe(
        "large_similar",
        name,
        num_classes,
        build_kwargs,
        {"trainable_from": first},
        learning_rate=1e-5,
        epochs=20,
        notes="Everything trains at a low LR; BatchNorm stays in inference mode. "
        "Train the head alone first for a few epochs if it is new.",
    )


def small_different(name: str, num_classes: int, **build_kwargs: Any) -> tuple[Any, Plan]:
    """Small data, different: cut at an earlier stage, add new layers, train only them."""
    cut = _earlier_stage(get_card(name))
    return _recipe(
        "small_different",
        name,
        num_classes,
        build_kwargs,
        {"cut": cut, "head": (256,), "dropout": 0.3},
        learning_rate=1e-3,
        epochs=15,
        notes="Earlier, more generic features; a hidden layer adapts them.",
    )


def large_different(name: str, num_classes: int, **build_kwargs: Any) -> tuple[Any, Plan]:
    """Large data, different: cut at an earlier stage and train everything."""
    card = get_card(name)
    defaults = {"cut": _earlier_stage(card), "trainable_from": card.stages[0].name, "head": (256,)}
    return _recipe(
        "large_different",
        name,
        num_classes,
        build_kwargs,
        defaults,
        learning_rate=1e-4,
        epochs=30,
        notes="The pretrained weights are only an initialisation here.",
    )


LP_FT_HEAD = {"head_stages": 3, "pooling": "avgmax"}  # what `lp_ft`'s new head reads


def lp_ft_features(name: str) -> tuple[list[str], str]:
    """The feature maps `lp_ft`'s head reads, in the order its `head_concat` joins them,
    and their pooling: the stages before the default cut, then the cut itself (`""`).

    `zoo-transfer rank` computes exactly these features in its pass, so that a later
    `train` (whose default recipe is `lp_ft`) fits its linear probe on them.
    """
    card = get_card(name)
    pooling = str(LP_FT_HEAD["pooling"])
    stages = _head_stages(card, None, int(LP_FT_HEAD["head_stages"]), pooling, keep_top=False)
    return [*stages, ""], pooling


def lp_ft(
    name: str, num_classes: int, *, num_images: int | None = None, **build_kwargs: Any
) -> tuple[Any, Plan]:
    """Linear probe, then fine-tune (LP-FT): the default of `zoo-transfer train`.

    The head is fitted to convergence on the frozen backbone's features first
    (seconds; `plan.probe`), then the whole backbone fine-tunes from it at a low,
    discriminative learning rate (0.1x at the stem to 1x at the head), BatchNorm in
    inference mode. Starting from a converged head keeps the first gradients from
    scrambling the pretrained features (Kumar et al., ICLR 2022). Chosen by the sweep in
    `benchmarks/defaults_sweep.py` (BENCHMARKS.md): on three tasks, BatchNorm in
    training mode lost 10 points and learning rates of 3e-4 and above lost the probe's
    accuracy; 1e-4 kept it. Keep `best.keras`: it is the best of the probe and the epochs
    on the validation images.

    `num_images`: the number of training images; `plan.epochs` then follows the data-size
    rule (`data_defaults`: 5 epochs below 5,000 images, 10 from there). Default: 5.

    ```python
    model, plan = recipes.lp_ft("mobilenet.a025_224", num_classes=10, num_images=6_000)
    plan.epochs   # 10
    ```
    """
    card = get_card(name)
    model, plan = _recipe(
        "lp_ft",
        name,
        num_classes,
        build_kwargs,
        dict(LP_FT_HEAD),
        learning_rate=LEARNING_RATE,
        epochs=SMALL_DATA_EPOCHS if num_images is None else epochs_for(num_images)[0],
        notes="A converged linear head first, then every stage fine-tunes from it at a "
        "low, discriminative learning rate; BatchNorm stays in inference mode.",
    )
    plan.probe = True
    plan.unfreeze = {0: card.stage_names[0]}
    plan.lr_mult = (0.1, 1.0)
    plan.early_stopping_patience = None
    return model, plan


RECIPES: dict[str, Callable[..., tuple[Any, Plan]]] = {
    "lp_ft": lp_ft,
    "small_similar": small_similar,
    "large_similar": large_similar,
    "small_different": small_different,
    "large_different": large_different,
}


def suggest(
    num_images: int,
    similar: bool,
    *,
    small_limit: int = SMALL_DATASET,
    cut: str | None = None,
) -> Callable:
    """The recipe for `num_images` training images, similar or not to the pretraining data.

    Returns the recipe function; `suggest(800, similar=True)` is `small_similar`.
    `similar` can be measured instead of guessed: `zoo_transfer.domain.measure_domain`.
    For different data, `cut` replaces the fixed "stage before the last" with a stage
    you measured (where a linear probe peaks, `zoo_transfer.rank.rank(...,
    stages=True)`): `suggest(800, False, cut="stage3")` cuts there.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise BuildArgumentError(
            f"Expected `num_images` to be a positive int. Received: num_images={num_images!r}"
        )
    size = "small" if num_images < small_limit else "large"
    recipe = RECIPES[f"{size}_{'similar' if similar else 'different'}"]
    if cut is None or similar:
        return recipe
    if not isinstance(cut, str) or not cut:
        raise BuildArgumentError(f"Expected `cut` to be a stage name. Received: cut={cut!r}")
    chosen = functools.partial(recipe, cut=cut)
    functools.update_wrapper(chosen, recipe)
    return chosen
