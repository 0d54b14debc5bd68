"""The job's settings: `JobConfig` (saved as `config.json`), `JobResult`, and the CLI text parsers.

This module owns what a run is asked to do, checked as soon as it is built, so a bad
option fails before any data is read or any folder touched: the allowed values
(recipes, strategies, `final`, precisions, the embedded data set), the epoch counting
(from 1, as Keras prints them; `config.json` of 0.1 counted from 0 and still loads),
and the parsers that turn `zoo-transfer train`'s option text into these values. It
imports no Keras, so the CLI can check options cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo_transfer.errors import BuildArgumentError

RECIPE_NAMES = (
    "auto",
    "lp-ft",
    "situation",
    "small-similar",
    "small-different",
    "large-similar",
    "large-different",
)
STRATEGIES = ("auto", "mirrored", "tpu", "multiworker")
FINAL_CHOICES = ("best", "last")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
EMBEDDED_DATA = "zoo:digits"  # the demo's digits, shipped with the package
WISE_FT_SWEEP = "sweep"  # --wise-ft sweep: alpha chosen on the validation images
PROBING_RECIPES = ("auto", "lp-ft")  # the recipes whose plan fits the linear probe
_COUNTED_FROM = "epochs_count_from"  # in config.json: 1 (0.1 wrote 0-based epochs, no key)


@dataclass
class JobConfig:
    """Everything a training run needs; saved as `config.json` in the out folder.

    Args:
        model: a zoo name (`zoo-transfer list`), or a local keras-hub preset folder
            (`zoo_transfer.job.model`).
        data: a data source for `zoo_transfer.data.load` (folder, `tfds:NAME[:SPLIT]`) or
            `"zoo:digits"` (the embedded demo data).
        epochs: total epochs; None (the default) takes them from the number of training
            images (`zoo_transfer.recipes.data_defaults`: 5 below 5,000, 10 from there),
            once the data is read.
        recipe: `auto` (`lp-ft`: a linear probe, then fine-tuning; measured best on
            every task of the defaults sweep), `situation` (the four-situation table:
            the data's size and its measured domain; different data is cut where a
            linear probe on each stage peaks) or a named recipe.
        rank: the JSON `zoo-transfer rank --format json` wrote, for the report's
            "model choice" section.
        similar: whether the data resembles the pretraining data; None (the default)
            measures it (`zoo_transfer.domain.measure_domain`) and says why. It picks the
            `situation` recipe and progressive resizing's BatchNorm handling.
        probe: fit the head to convergence on the frozen backbone's features before
            the epochs (`training.probe_head`); default: the recipe's (`lp-ft`: yes).
        final: what `final.keras` holds when there are validation images: `"best"` the
            weights with the best validation accuracy (the probe's or an epoch's, as
            Keras' `EarlyStopping(restore_best_weights=True)`), `"last"` the last epoch's.
        image_size: training side in pixels; None (the default): the card's input
            size, or 128 px for images of at most 64 px (`data_defaults`).
        progressive: sizes, e.g. `[128, 160, 224]`, spread evenly over the epochs.
        unfreeze: `{epoch: stage or layer}` for `GradualUnfreezing`; epochs count from
            1, as Keras prints them ("Epoch 4/5"): `{4: "stage4"}` trains stage4 from the
            fourth epoch on.
        lr: base learning rate (default: the recipe's). lr_mult: `(lo, hi)` spread.
        validation: a separate validation source; else `validation_split` of `data`.
        weights: `imagenet`, a weights file, or `none`.
        strategy, precision: distribution strategy and Keras dtype policy.
        cache_features: when the backbone stays frozen, the image size fixed and
            augmentation off, compute the backbone features once and train the head on
            them (`zoo_transfer.cached`); the result is the same full model.
        drop_empty_classes: leave out class folders with no readable image (with a
            warning) instead of failing.
        l2_sp: L2-SP strength alpha for the fine-tuning optimizer (`transfer_optimizer(...,
            l2_sp=)`): the backbone is pulled toward its pretrained weights. None: off.
        wise_ft: WiSE-FT after the epochs: a number in [0, 1] (final.keras becomes
            `(1 - a) * probe + a * last epoch`, whatever `final` says; best.keras is still
            the best of the probe and the epochs) or `"sweep"` (a chosen from 0, 0.25, ...,
            1 on the validation images). Needs the linear probe (its weights are
            `probe.keras`). None: off.
        adabn: re-estimate every BatchNorm layer's statistics on the training images
            before the linear probe (`zoo_transfer.adapt_batchnorm`).
        chosen: the settings the run took from the data, and why (`{"epochs": "6,000
            training images (>= 5,000): 10 epochs ..."}`); filled by the run, saved in
            config.json, shown in the log and the report.
    """

    model: str
    data: str
    epochs: int | None = None
    recipe: str = "auto"
    similar: bool | None = None
    probe: bool | None = None
    final: str = "best"
    image_size: int | None = None
    progressive: list[int] | None = None
    unfreeze: dict[int, str] = field(default_factory=dict)
    lr: float | None = None
    lr_mult: list[float] | None = None
    batch_size: int = 32
    weights: str = "imagenet"
    augment: str = "light"
    validation: str | None = None
    validation_split: float | None = 0.2
    strategy: str = "auto"
    precision: str = "float32"
    seed: int = 0
    cache_features: bool = True
    drop_empty_classes: bool = False
    l2_sp: float | None = None
    wise_ft: float | str | None = None
    adabn: bool = False
    rank: str | None = None
    chosen: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.unfreeze = {int(k): str(v) for k, v in (self.unfreeze or {}).items()}
        if self.epochs is not None and (
            isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1
        ):
            raise BuildArgumentError(f"Expected epochs >= 1. Received: epochs={self.epochs!r}")
        if self.rank is not None:
            read_rank_json(self.rank)  # a broken file fails now, not after the training
        if self.recipe not in RECIPE_NAMES:
            raise BuildArgumentError(
                f"Unknown recipe {self.recipe!r}. Choose one of: {', '.join(RECIPE_NAMES)}."
            )
        if self.final not in FINAL_CHOICES:
            raise BuildArgumentError(
                f"Expected final to be one of {', '.join(FINAL_CHOICES)}. Received: "
                f"final={self.final!r}"
            )
        if self.strategy not in STRATEGIES:
            raise BuildArgumentError(
                f"Unknown strategy {self.strategy!r}. Choose one of: {', '.join(STRATEGIES)}."
            )
        if self.precision not in PRECISIONS:
            raise BuildArgumentError(
                f"Unknown precision {self.precision!r}. Choose one of: {', '.join(PRECISIONS)}."
            )
        if self.lr is not None and not (
            isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0
        ):
            raise BuildArgumentError(
                f"Expected --lr to be a finite number > 0, e.g. 0.001. Received: lr={self.lr!r}"
            )
        if str(self.data).startswith("zoo:") and self.data != EMBEDDED_DATA:
            raise BuildArgumentError(
                f"Unknown embedded data set {self.data!r}. The package ships {EMBEDDED_DATA} "
                "(32 px digits, offline). For your own images pass a folder with one "
                "subfolder per class; for TensorFlow Datasets, tfds:NAME."
            )
        if self.batch_size < 1:
            raise BuildArgumentError(f"Expected batch_size >= 1. Received: {self.batch_size}")
        early = [e for e in self.unfreeze if e < 1]
        if early:
            raise BuildArgumentError(
                f"The unfreeze schedule names epoch {early[0]}, but epochs count from 1, as in "
                "Keras' 'Epoch 1/5' lines."
            )
        epochs = self.epochs if self.epochs is not None else math.inf  # known once read
        late = [e for e in self.unfreeze if e > epochs]
        if late:
            chosen = f" ({self.chosen['epochs']})" if "epochs" in self.chosen else ""
            raise BuildArgumentError(
                f"The unfreeze schedule names epoch {late[0]}, but the run has epochs "
                f"1-{self.epochs}{chosen} (epochs count from 1, as in Keras' 'Epoch "
                f"1/{self.epochs}' lines). Drop it or raise --epochs."
            )
        if self.progressive is not None:
            self.progressive = [int(s) for s in self.progressive]
            if self.epochs is not None:
                progressive_schedule(self.progressive, self.epochs)  # raises if it cannot fit
        self._check_guards()

    def _check_guards(self) -> None:
        """The forgetting guards: L2-SP's strength, WiSE-FT's alpha and what it needs."""
        if self.l2_sp is not None and (
            isinstance(self.l2_sp, bool)
            or not isinstance(self.l2_sp, (int, float))
            or not math.isfinite(self.l2_sp)
            or self.l2_sp < 0
        ):
            raise BuildArgumentError(
                "Expected --l2-sp to be a finite number >= 0, the strength of the pull toward "
                f"the pretrained weights, e.g. 0.01. Received: l2_sp={self.l2_sp!r}"
            )
        if self.wise_ft is None:
            return
        self.wise_ft = parse_wise_ft(self.wise_ft)
        probing = self.probe if self.probe is not None else self.recipe in PROBING_RECIPES
        if not probing:
            raise BuildArgumentError(
                "--wise-ft interpolates toward the linear probe's weights, but this run fits "
                f"no probe (recipe={self.recipe!r}, probe={self.probe!r}). Use --recipe lp-ft "
                "or --probe, or drop --wise-ft."
            )
        if (
            self.wise_ft == WISE_FT_SWEEP
            and self.validation is None
            and not (self.validation_split or str(self.data) == EMBEDDED_DATA)
        ):
            raise BuildArgumentError(
                "--wise-ft sweep chooses alpha on the validation images, but this run has none "
                "(no --validation and --validation-split 0). Give it validation images, or a "
                "fixed alpha such as --wise-ft 0.5."
            )

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["unfreeze"] = {str(k): v for k, v in self.unfreeze.items()}
        d[_COUNTED_FROM] = 1
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JobConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in d.items() if k in known}
        if d.get(_COUNTED_FROM) != 1:  # a config.json of zoo-transfer 0.1: 0-based epochs
            fields["unfreeze"] = {int(k) + 1: v for k, v in (d.get("unfreeze") or {}).items()}
        return cls(**fields)


@dataclass
class JobResult:
    """What a finished run produced."""

    out: Path
    history: dict[str, list]
    class_names: list[str]
    val_accuracy: float | None
    skipped: list[str]
    events: list[dict[str, Any]]
    model: Any = None
    fingerprint: str = ""  # md5 of the final weights: equal on every worker of a run
    cached: bool = False  # the head trained on cached backbone features
    probe: dict[str, Any] | None = None  # the linear probe before the epochs (probe.json)
    final_from: str = "last epoch"  # whose weights final.keras holds: "epoch 3", "linear probe"
    wise_ft: dict[str, Any] | None = None  # the WiSE-FT alpha (and the sweep's accuracies)
    domain: dict[str, Any] | None = None  # similar or not, measured or given, and why
    chosen: dict[str, str] = field(default_factory=dict)  # taken from the data, and why


def parse_sizes(text: str) -> list[int]:
    """`"128,160,224"` -> `[128, 160, 224]`."""
    try:
        sizes = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes) or sizes != sorted(sizes):
        raise BuildArgumentError(
            f"Expected increasing sizes such as '128,160,224'. Received: {text!r}"
        )
    return sizes


def parse_unfreeze(text: str) -> dict[int, str]:
    """`"2:stage4,4:stage3"` -> `{2: "stage4", 4: "stage3"}` (epochs count from 1)."""
    out: dict[int, str] = {}
    for part in str(text).split(","):
        if not part.strip():
            continue
        epoch, sep, what = part.partition(":")
        if not sep or not epoch.strip().isdigit() or not what.strip():
            raise BuildArgumentError(
                f"Expected EPOCH:STAGE pairs such as '2:stage4,4:stage3'. Received: {text!r}"
            )
        if int(epoch) < 1:
            raise BuildArgumentError(
                f"Epochs count from 1, as in Keras' 'Epoch 1/5' lines. Received: {text!r}"
            )
        out[int(epoch)] = what.strip()
    return out


def parse_lr_mult(text: str) -> list[float]:
    """`"0.01,1"` -> `[0.01, 1.0]` (a geometric spread from the stem to the head)."""
    try:
        lo, hi = (float(s) for s in str(text).split(","))
    except ValueError:
        raise BuildArgumentError(
            f"Expected --lr-mult as 'lo,hi', e.g. '0.01,1'. Received: {text!r}"
        ) from None
    if not 0 < lo <= hi:
        raise BuildArgumentError(f"Expected 0 < lo <= hi in --lr-mult. Received: {text!r}")
    return [lo, hi]


def parse_wise_ft(text: Any) -> float | str:
    """`"sweep"` -> `"sweep"`; `"0.5"` (or 0.5) -> `0.5`, a number in [0, 1]."""
    if str(text).strip().lower() == WISE_FT_SWEEP:
        return WISE_FT_SWEEP
    try:
        alpha = float(text) if not isinstance(text, bool) else math.nan
    except (TypeError, ValueError):
        alpha = math.nan
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise BuildArgumentError(
            "Expected --wise-ft to be a number in [0, 1] (0: the linear probe's weights, 1: the "
            f"fine-tuned ones) or 'sweep'. Received: {text!r}"
        )
    return alpha


def progressive_schedule(sizes: list[int], epochs: int) -> dict[int, int]:
    """Spread `sizes` evenly over `epochs`: `[96, 128, 160]` over 6 -> `{0: 96, 2: 128, 4: 160}`."""
    if len(sizes) > epochs:
        raise BuildArgumentError(
            f"{len(sizes)} progressive sizes need at least {len(sizes)} epochs. "
            f"Received: epochs={epochs}."
        )
    return {round(i * epochs / len(sizes)): s for i, s in enumerate(sizes)}


def read_rank_json(path: str) -> dict[str, Any]:
    """The result `zoo-transfer rank --format json` wrote; `ArgumentError` if it is not one."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildArgumentError(
            f"--rank {path}: cannot read it as JSON ({exc}). Pass the output of "
            "`zoo-transfer rank --data DIR --format json > rank.json`."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise BuildArgumentError(
            f'--rank {path}: expected the JSON of `zoo-transfer rank --format json` ({{"models":'
            " [...]}). Received another JSON document."
        )
    return data
