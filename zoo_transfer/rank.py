"""Rank zoo models for a task before training any: one forward pass each, then scores.

Which pretrained model will transfer best to *your* images? Fine-tuning every candidate
answers it at the price of a training run each. `rank` runs each candidate's frozen
trunk once over the labelled images and scores what comes out
(`zoo_transfer.transferability`): LogME on the features the new head of `train`'s
default recipe reads (the last three stages, average and max pooled:
`recipes.lp_ft_features`; `features="trunk"` scores the feature layer's average pool
instead), and LEEP on the pretrained classifier's probabilities where the model keeps its source
head (the same pass). With `stages=True` it also fits a converged linear probe on each
stage's pooled features (`zoo_transfer.linear_head`) and reports the held-out accuracy
by stage: how far from the end the task's information lives, so where to cut.

`controls=True` ranks a random-weight copy of each model beside it. A pretrained model
that does not beat its own random control has nothing to transfer to this task.

```python
from zoo_transfer.rank import rank
result = rank("photos/", ["mobilenet.a025_224", "digitnet"], image_size=64, controls=True)
print(result.to_table())
result.rows[0].model, result.rows[0].logme    # the best model first
```
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo_transfer.errors import (
    ArgumentError,
    BuildArgumentError,
    DataError,
    WeightsCorruptError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from zoo_transfer.input_spec import InputSpec
from zoo_transfer.rank_result import RANDOM, RankResult, RankRow
from zoo_transfer.registry import get_card, list_models
from zoo_transfer.transferability import LogMEAccumulator, check_class_counts, leep

FEATURES = "features"  # the scoring model's key for the trunk's pooled features
FEATURE_CHOICES = ("head", "trunk")  # what LogME scores: the default head's input, or the trunk's
_MAX = "max:"  # the scoring model's key prefix of a max-pooled map (for `train`'s probe)
_SPLIT_NAMES = {"train", "val", "valid", "validation", "test"}
# Errors of one candidate's weights or build: reported in its row, the others go on.
_CANDIDATE_ERRORS = (
    WeightsUnavailableError,
    WeightsCorruptError,
    WeightsMismatchError,
    BuildArgumentError,
)


# ---------------------------------------------------------------------- arguments
def resolve_models(models: str | Sequence[str]) -> list[str]:
    """Card names for `models`: names, aliases or `fnmatch` patterns, in order, once each.

    Raises `UnknownModelError` for a name no card answers to, `ArgumentError` for a
    pattern that matches nothing.

    ```python
    resolve_models("mobilenet.a025_*")   # ['mobilenet.a025_128', ..., 'mobilenet.a025_224']
    ```
    """
    items = [models] if isinstance(models, str) else list(models)
    if not items:
        raise ArgumentError(
            "Expected at least one model name or pattern. Received: models=[]. Run "
            "`zoo-transfer list` to see the names."
        )
    names: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ArgumentError(f"Expected model names as strings. Received: {item!r}")
        item = item.strip()
        if any(ch in item for ch in "*?["):
            found = list_models(item)
            if not found:
                raise ArgumentError(
                    f"No model matches the pattern {item!r}. Run `zoo-transfer list` to see "
                    "the names."
                )
        else:
            found = [get_card(item).name]
        names += [n for n in found if n not in names]
    return names


def _weights_of(names: list[str], weights: Any) -> dict[str, Any]:
    """Each model's weights: `"imagenet"`, None (random) or a file or folder path."""
    if isinstance(weights, Mapping):
        given = {}
        for key, value in weights.items():
            name = get_card(str(key)).name
            if name not in names:
                raise ArgumentError(
                    f"Weights were given for {key!r}, which is not among the models ranked "
                    f"({', '.join(names)}). Add it to the models, or drop its weights."
                )
            given[name] = value
        chosen = {n: given.get(n, "imagenet") for n in names}
    else:
        chosen = dict.fromkeys(names, weights)
    for name, value in chosen.items():
        if value is None or value == "imagenet":
            continue
        if not isinstance(value, (str, os.PathLike)) or not Path(value).exists():
            raise ArgumentError(
                f"Expected the weights of {name} as 'imagenet', None (random) or an existing "
                f"file or folder. Received: {value!r}"
                + (", which does not exist" if isinstance(value, (str, os.PathLike)) else "")
                + "."
            )
        chosen[name] = os.fspath(value)
    return chosen


# ---------------------------------------------------------------------- the images
@dataclass
class _Images:
    """Batches of every image to score, in order, at one side."""

    pipelines: list[Any]  # ResizableImages in order (train, then val)
    class_names: list[str]
    source: str
    side: int
    restore: list[tuple[Any, int]] = field(default_factory=list)  # (images, side) to reset
    files: list[str] | None = None  # the image file of each row, for `FeatureCache`

    @property
    def n_batches(self) -> int | None:
        counts = [p.batches_per_pass() for p in self.pipelines]
        return None if None in counts else sum(counts)

    def batches(self) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        for pipeline in self.pipelines:
            for images, labels in pipeline.dataset():
                y = np.asarray(labels)
                yield np.asarray(images), (y.argmax(axis=-1) if y.ndim == 2 else y)

    def close(self) -> None:
        for pipeline, side in self.restore:
            pipeline.set_size(side)


def _is_splits(data: Any) -> bool:
    return hasattr(data, "train_images") and hasattr(data, "class_names")


def _check_folder(root: Path) -> None:
    """Refuse split folders given as classes and classes of fewer than 2 images, early."""
    from zoo_transfer.folders import list_image_folder

    listing = list_image_folder(root)
    names = listing.class_names
    if len(names) >= 2 and {n.lower() for n in names} <= _SPLIT_NAMES:
        raise DataError(
            f"{str(root)!r} holds the split folders {names}, not class folders: rank one "
            f"split, e.g. {str(root / names[0])!r}."
        )
    if names and listing.paths:
        counts = np.bincount(np.asarray(listing.labels), minlength=len(names))
        check_class_counts(counts, names)


def _images(data: Any, spec: InputSpec, batch_size: int) -> _Images:
    """The images of `data` at `spec`'s side, every one once, without augmentation."""
    if _is_splits(data):
        pipelines = [p.in_order() for p in (data.train_images, data.val_images) if p is not None]
        restore = []
        for pipeline in pipelines:
            current = _side(pipeline)
            if current != spec.side:
                restore.append((pipeline, current))
                pipeline.set_size(spec.side)
        lists = [data.train_files, data.val_files if data.val_images is not None else None]
        files = None
        if lists[0] is not None and (data.val_images is None or lists[1] is not None):
            files = [p for found in lists if found is not None for p in found.paths]
        return _Images(pipelines, list(data.class_names), data.source, spec.side, restore, files)
    from zoo_transfer.data import load

    if isinstance(data, (str, os.PathLike)) and not str(data).startswith("tfds:"):
        _check_folder(Path(data))
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        y = np.asarray(data[1])
        if y.ndim == 1 and len(y) and np.issubdtype(y.dtype, np.integer) and y.min() >= 0:
            check_class_counts(np.bincount(y))
    splits = load(data, input_spec=spec, batch_size=batch_size, augment="none")
    files = splits.train_files.paths if splits.train_files is not None else None
    return _Images(
        [splits.train_images.in_order()], splits.class_names, splits.source, spec.side, [], files
    )


# ---------------------------------------------------------------------- one candidate
def _scoring_model(
    name: str, weights: Any, side: int, stage_cuts: list[str], probe_stages: Sequence[str] = ()
) -> tuple[Any, bool]:
    """`(model, has_source_head)`: image -> pooled features by cut (and source probabilities).

    Real weights keep their source head when they hold it; otherwise (random weights,
    weights without the classifier, a top not cached) the model has none. With
    `probe_stages` (`recipes.lp_ft_features`) it also outputs those stages' average and
    max pools (`_MAX` + stage; `""` is the cut), the features `train`'s probe reads.
    """
    import keras

    from zoo_transfer.recipes import SOURCE_HEAD, feature_extractor

    card = get_card(name)
    extra = [s for s in probe_stages if s and s not in stage_cuts]
    cuts = [*stage_cuts, *extra, card.feature_layer]
    shape = (side, side, 3)
    fx = None
    if weights is not None:
        try:
            fx = feature_extractor(
                name, cuts=cuts, weights=weights, input_shape=shape, source_head=True
            )
        except (WeightsUnavailableError, WeightsMismatchError):
            fx = None  # the weights lack the classifier: features only
    head = fx is not None
    if fx is None:
        fx = feature_extractor(name, cuts=cuts, weights=weights, input_shape=shape)
    outputs = {}
    for i, (key, tensor) in enumerate(fx.output.items()):
        out = FEATURES if key == card.feature_layer else key
        if key == SOURCE_HEAD:
            outputs[out] = tensor
        elif len(tensor.shape) == 4:
            outputs[out] = keras.layers.GlobalAveragePooling2D(name=f"rank_pool_{i}")(tensor)
            stage = "" if out == FEATURES else out
            if probe_stages and stage in probe_stages:
                pool = keras.layers.GlobalMaxPooling2D(name=f"rank_maxpool_{i}")
                outputs[_MAX + stage] = pool(tensor)
        else:
            outputs[out] = keras.layers.Flatten(name=f"rank_flatten_{i}")(tensor)
    return keras.Model(fx.input, outputs, name=f"{card.arch}_rank"), head


def _score(
    name: str,
    weights: Any,
    images: _Images,
    stages: bool,
    seed: int,
    progress: _Progress,
    features: str = "head",
    standardize: bool = True,
) -> RankRow:
    from zoo_transfer.linear_head import holdout_accuracy
    from zoo_transfer.recipes import SOURCE_HEAD

    begin = time.perf_counter()
    label = "imagenet" if weights == "imagenet" else RANDOM if weights is None else str(weights)
    row = RankRow(model=name, weights=label, image_size=images.side, standardized=standardize)
    card = get_card(name)
    stage_cuts = [s.name for s in card.cut_stages] if stages else []
    try:
        if weights is None:
            import keras

            keras.utils.set_random_seed(seed)  # a control is the same random network each run
        keep = images.files is not None and weights is not None  # for `train`'s probe
        layout = _probe_layout(name) if keep or features == "head" else None
        probe_stages = layout[0] if layout else []
        row.features = "head" if layout and features == "head" else "trunk"
        model, has_head = _scoring_model(name, weights, images.side, stage_cuts, probe_stages)
    except _CANDIDATE_ERRORS as exc:
        row.error = f"{name}: {exc}"
        if not isinstance(exc, BuildArgumentError):
            row.error += (
                f" To rank it offline, pass its weights: weights={{{name!r}: PATH}} "
                f"(zoo-transfer rank --weights {name}=FILE)."
            )
        row.seconds = time.perf_counter() - begin
        progress.skip(row.label)
        return row
    acc = LogMEAccumulator(images.class_names)
    probs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    pooled: dict[str, list[np.ndarray]] = {k: [] for k in stage_cuts}
    kept: list[np.ndarray] = []
    progress.start(row.label, images.n_batches)
    full = 0
    for x, y in images.batches():
        # a short last batch is padded to the full size: one trace of the model, not two
        n, full = len(x), max(full, len(x))
        if n < full:
            x = np.concatenate([x, np.repeat(x[-1:], full - n, axis=0)])
        out = {k: np.asarray(v)[:n] for k, v in model.predict_on_batch(x).items()}
        head = _probe_features(out, layout) if layout else None
        acc.add(head if row.features == "head" else out[FEATURES], y)
        if layout and keep:
            kept.append(head)
        labels.append(y)
        if has_head:
            probs.append(out[SOURCE_HEAD].astype(np.float64))
        for key in pooled:
            pooled[key].append(out[key])
        progress.step()
    y_all = np.concatenate(labels)
    if layout and keep:
        from zoo_transfer.feature_cache import PROBE_KEY, FeatureCache

        spec = InputSpec.from_card(card, images.side)
        FeatureCache().put(
            PROBE_KEY.format(name), weights, spec, images.files, np.concatenate(kept)
        )
    row.logme = acc.score(standardize=standardize)
    row.feature_size = acc.num_features
    row.n_images = acc.n
    if has_head:
        theta = np.concatenate(probs)
        theta /= theta.sum(axis=1, keepdims=True)  # float32 softmax: sums off by ~1e-7
        row.leep = leep(theta, y_all, class_names=images.class_names)
    if stages:
        k = len(images.class_names)
        row.stage_accuracy = {
            s: holdout_accuracy(np.concatenate(pooled[s]), y_all, k, seed=seed) for s in stage_cuts
        }
    row.seconds = time.perf_counter() - begin
    progress.done(row.seconds)
    return row


# ---------------------------------------------------------------------- progress
class _Progress:
    """A progress line on stderr: redrawn in place on a terminal, one line per model else."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self.index = enabled, total, 0
        self.tty = enabled and sys.stderr.isatty()
        self.label, self.batches, self.seen = "", None, 0

    def start(self, label: str, batches: int | None) -> None:
        self.index += 1
        self.label, self.batches, self.seen = label, batches, 0
        self._draw()

    def skip(self, label: str) -> None:
        self.index += 1
        if self.enabled:
            sys.stderr.write(f"\rrank [{self.index}/{self.total}] {label}: not ranked\n")
            sys.stderr.flush()

    def step(self) -> None:
        self.seen += 1
        self._draw()

    def done(self, seconds: float) -> None:
        if self.enabled:
            sys.stderr.write(
                f"\rrank [{self.index}/{self.total}] {self.label}: {self.seen} batches, "
                f"{seconds:.1f} s\n"
            )
            sys.stderr.flush()

    def _draw(self) -> None:
        if not self.tty:
            return
        width = 24
        if self.batches:
            filled = int(width * self.seen / self.batches)
            bar = "#" * filled + "-" * (width - filled)
            count = f"{self.seen}/{self.batches}"
        else:
            bar, count = "?" * 3, str(self.seen)
        sys.stderr.write(f"\rrank [{self.index}/{self.total}] {self.label} [{bar}] {count}")
        sys.stderr.flush()


# ---------------------------------------------------------------------- rank
def rank(
    data: Any,
    models: str | Sequence[str],
    *,
    weights: Any = "imagenet",
    image_size: int | None = None,
    batch_size: int = 32,
    stages: bool = False,
    controls: bool = False,
    progress: bool = True,
    seed: int = 0,
    features: str = "head",
    standardize: bool = True,
) -> RankResult:
    """Rank `models` by how well their frozen features suit the labelled images of `data`.

    For each candidate: one forward pass over every image, giving the features the
    default recipe's head reads (`recipes.lp_ft_features`: the last three stages, each
    average and max pooled) and, where the weights keep the pretrained classifier, its
    probabilities. Then LogME on the features and LEEP on the probabilities
    (`zoo_transfer.transferability`). Nothing is trained and nothing is printed but a
    progress line on stderr.

    Args:
        data: a folder with one subfolder per class (any source `zoo_transfer.data.load`
            reads: a numpy `(x, y)` pair, `"tfds:NAME"`), or a `Splits` (its training
            and validation images both count).
        models: names (`"mobilenet.a025_224"`), aliases or `fnmatch` patterns matched
            against `zoo_transfer.list_models` (`"mobilenet_v2.a035_*"`), or a list.
        weights: `"imagenet"` (Keras' cache; default), None (random weights), a weights
            file or folder, or a `{name: weights}` dict (models not in it get
            `"imagenet"`).
        image_size: the side images are resized to (default: each card's input side).
            A `Splits` is used at its own side unless this is given.
        batch_size: images per forward pass.
        stages: also fit a converged linear probe (`linear_head.choose_l2`) on each
            stage's globally average-pooled map, from the same pass, and report the
            accuracy on a held-out stratified fifth of each class.
        controls: rank a random-weight copy of each model (weights=None) beside it
            (not beside a model that could not be scored).
        progress: show a progress line on stderr.
        seed: the held-out fifth of the stage probes and the random controls' weights
            (it seeds Keras' global generators, `keras.utils.set_random_seed`, before
            building a control).
        features: what LogME scores. `"head"` (default): the features `zoo-transfer
            train`'s default head fits its linear probe on, so the score speaks of the
            model that training would give; on the three tasks of `benchmarks/rank.py`
            its order matched the trained accuracies better on every task (Spearman
            0.77/0.14/0.37 -> 0.89/0.66/0.60, raw). A card whose default cut is not a stage
            falls back to `"trunk"`. `"trunk"`: the card's feature layer, globally
            average-pooled (a one-stage head's input; `D` is smaller, so it is faster
            for very wide models). Each row says which (`RankRow.features`).
        standardize: True (default): LogME scores each feature centred and scaled to
            unit variance, with each class's target centred (`logme(...,
            standardize=True)`), as `train`'s probe standardises its features and fits
            an unpenalised bias. LogME's prior is one precision for every weight, so on
            raw features a feature's scale would decide its prior; the probe has no
            such preference. On the four tasks of `benchmarks/rank.py` it raised the
            rank correlation on every task (0.89/0.66/0.60/0.77 -> 0.94/0.71/0.77/0.89).
            False: the features as they are, as in You et al. (`RankRow.standardized`).

    Returns:
        `RankResult`, rows best first. A model whose weights cannot be had (missing
        offline, corrupt, not fitting) gets a row with `error` naming it and the fix;
        the others are ranked.

    Memory: LogME keeps `D x D` statistics, whatever the number of images; LEEP keeps
    the source probabilities (`N x 1000` floats for ImageNet) and the stage probes every
    stage's pooled features (`N x` the sum of the stage widths).

    Raises `TooFewImagesError` (a class with fewer than 2 images, named),
    `UnknownModelError`, `ArgumentError` (a pattern that matches nothing, weights for a
    model not ranked, a weights path that does not exist) and `DataError`.

    ```python
    result = rank("fashion/train", ["mobilenet.a025_224"], image_size=64,
                  weights={"mobilenet.a025_224": "mobilenet_v1_0.25_224.weights.h5"},
                  controls=True)
    [(r.label, round(r.logme, 3)) for r in result.rows]
    # [('mobilenet.a025_224 (...weights.h5)', ...), ('mobilenet.a025_224 (random)', ...)]
    ```
    """
    names = resolve_models(models)
    chosen = _weights_of(names, weights)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(
            f"Expected `batch_size` to be a positive int. Received: batch_size={batch_size!r}"
        )
    if features not in FEATURE_CHOICES:
        raise ArgumentError(
            f"Expected features to be one of {', '.join(FEATURE_CHOICES)}. Received: "
            f"features={features!r}"
        )
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ArgumentError(
            f"Expected `image_size` to be a positive int or None (each card's side). "
            f"Received: image_size={image_size!r}"
        )
    total = len(names) + (sum(chosen[n] is not None for n in names) if controls else 0)
    meter = _Progress(progress, total)
    loaded: dict[InputSpec, _Images] = {}
    rows: list[RankRow] = []
    try:
        for name in names:
            card = get_card(name)
            side = image_size
            if side is None:
                side = _splits_side(data) or int(card.input_size[0])
            spec = InputSpec.from_card(card, side)
            if spec not in loaded:
                loaded[spec] = _images(data, spec, batch_size)
            rows.append(
                _score(name, chosen[name], loaded[spec], stages, seed, meter, features, standardize)
            )
            if controls and chosen[name] is not None:
                # a control beside a model that could not be scored would say nothing
                if rows[-1].error is None:
                    rows.append(
                        _score(name, None, loaded[spec], stages, seed, meter, features, standardize)
                    )
                else:
                    meter.index += 1
    finally:
        for images in loaded.values():
            images.close()
    first = next(iter(loaded.values()))
    scored = sorted((r for r in rows if r.error is None), key=lambda r: -r.logme)
    n_images = max((r.n_images for r in scored), default=0)
    return RankResult(
        rows=scored + [r for r in rows if r.error is not None],
        class_names=first.class_names,
        n_images=n_images,
        source=first.source,
        stages=stages,
    )


def _splits_side(data: Any) -> int | None:
    if not _is_splits(data):
        return None
    return _side(data.train_images)


__all__ = ["RANDOM", "RankResult", "RankRow", "rank", "resolve_models"]


def _side(source: Any) -> int:
    """The current side of a resizable source (a TF variable, or an int off TensorFlow)."""
    size = source.size
    return int(size.numpy() if hasattr(size, "numpy") else size)


def _probe_layout(name: str) -> tuple[list[str], str] | None:
    """The maps and pooling of the `lp_ft` head (`recipes.lp_ft_features`), or None."""
    from zoo_transfer.recipes import lp_ft_features

    try:
        return lp_ft_features(name)
    except BuildArgumentError:  # a card whose cut is not a stage: nothing to store
        return None


def _probe_features(out: dict[str, np.ndarray], layout: tuple[list[str], str]) -> np.ndarray:
    """The rows `lp_ft`'s `head_concat` gives: each map's average (then max) pool."""
    stages, pooling = layout
    parts = []
    for stage in stages:
        parts.append(out[stage or FEATURES])
        if pooling == "avgmax":
            parts.append(out[_MAX + stage])
    return np.concatenate(parts, axis=-1)
