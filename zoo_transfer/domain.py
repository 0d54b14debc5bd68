"""How similar your images are to a model's pretraining data, measured instead of guessed.

The classic transfer-learning table (README) asks two questions: how much data, and is
it like the pretraining data? The second is measured here from the model's own source
head: a classifier is about as confident on images of its own domain as it is accurate
there (its card's `top1`), and much less confident on images unlike any it was trained
on. So

    similarity = (mean top-1 probability of the source head on your images - 1/K)
                 / (the card's top-1 accuracy on its own validation data - 1/K)

(K classes; 1/K is what a head that knows nothing scores) is near 1 for images of the
pretraining domain and falls towards 0 away from it. The
images are read at the card's own input side (at other sides the confidence moves: a
model shown 28 px clothes at 128 px is more confident than at 224 px).

Measured with the two classifiers whose weights are available offline here: the
ImageNet MobileNet 0.25 (top-1 0.516) gives 0.97 on 100 ImageNet images and 0.45 on
Fashion-MNIST; the demo's `digitnet` (digits 0-4, top-1 1.0) gives 0.82 on digits 5-9
and 0.65 on Fashion-MNIST. The threshold `SIMILARITY_THRESHOLD = 0.7` separates all
four, the last by a small margin: it is a calibration on two models, and
`--similar/--different` still override it.

```python
from zoo_transfer.domain import measure_domain
measure = measure_domain("mobilenet.a025_224", "photos/", weights="mn.weights.h5")
measure.similar, measure.similarity, measure.reason
```
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from zoo_transfer.errors import ArgumentError

SIMILARITY_THRESHOLD = 0.7  # see the module docstring: measured on two models
DEFAULT_MAX_IMAGES = 200  # a stratified sample is plenty for a mean confidence


@dataclass(frozen=True)
class DomainMeasure:
    """A measured answer to "is my data like the pretraining data?".

    Args:
        model: the card's name.
        confidence: the source head's mean top-1 probability on the images.
        reference: the card's top-1 accuracy on its own validation data.
        similarity: `(confidence - 1/K) / (reference - 1/K)` for K source classes.
        similar: `similarity >= threshold`.
        threshold: the threshold used.
        images: how many images were measured.
    """

    model: str
    confidence: float
    reference: float
    similarity: float
    similar: bool
    threshold: float
    images: int

    @property
    def reason(self) -> str:
        """One sentence saying what was measured and what it means."""
        verdict = "similar to" if self.similar else "different from"
        relation = ">=" if self.similar else "<"
        return (
            f"{self.model}'s source head is on average {self.confidence:.2f} sure of its top "
            f"class on {self.images} of your images: similarity {self.similarity:.2f} "
            f"against its {self.reference:.2f} top-1 accuracy on its own data ({relation} "
            f"{self.threshold:.2f}), so your images look {verdict} its pretraining data."
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data, with the reason."""
        return {**asdict(self), "reason": self.reason}


def judge(
    model: str,
    source_probs: Any,
    reference: float,
    *,
    threshold: float = SIMILARITY_THRESHOLD,
) -> DomainMeasure:
    """The measure from source-head probabilities `(N, K)` you already have.

    ```python
    judge("resnet50", probs, reference=get_card("resnet50").top1).similar
    ```
    """
    probs = np.asarray(source_probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0 or not np.all(np.isfinite(probs)):
        raise ArgumentError(
            "Expected source-head probabilities as a finite (images, classes) array. "
            f"Received shape {probs.shape}."
        )
    if not 0.0 < float(reference) <= 1.0:
        raise ArgumentError(
            f"Expected the reference top-1 accuracy in (0, 1]. Received: {reference!r}"
        )
    confidence = float(probs.max(axis=1).mean())
    chance = 1.0 / probs.shape[1]  # a head that knows nothing is this sure: 1/K
    similarity = (confidence - chance) / max(float(reference) - chance, 1e-9)
    return DomainMeasure(
        model=model,
        confidence=confidence,
        reference=float(reference),
        similarity=similarity,
        similar=bool(similarity >= threshold),
        threshold=float(threshold),
        images=len(probs),
    )


def measure_domain(
    model: str,
    data: Any,
    *,
    weights: Any = "imagenet",
    max_images: int = DEFAULT_MAX_IMAGES,
    threshold: float = SIMILARITY_THRESHOLD,
    seed: int = 0,
    batch_size: int = 32,
) -> DomainMeasure:
    """Measure how similar `data` is to `model`'s pretraining data (see the module doc).

    Args:
        model: a zoo name whose card has a classifier (`num_classes`) and a `top1`.
        data: a folder of `<class>/<image>` files, a numpy `(x, y)` pair, or a `Splits`
            (its training images).
        weights: the weights with the classifier (`"imagenet"`, a `.weights.h5` file).
        max_images: at most this many images, a stratified sample fixed by `seed`.
        threshold: the similarity at and above which the data counts as similar.

    Raises `ArgumentError` for a card without a classifier or a top-1 accuracy, and the
    weights errors of `build` (`WeightsUnavailableError` offline).
    """
    import zoo_transfer
    from zoo_transfer.input_spec import InputSpec
    from zoo_transfer.registry import get_card

    card = get_card(model)
    if not card.num_classes or not card.top1:
        raise ArgumentError(
            f"{card.name} has no pretrained classifier with a known top-1 accuracy to "
            "measure the domain with. Pass --similar or --different (similar=...) instead."
        )
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ArgumentError(f"Expected `max_images` to be a positive int. Received: {max_images!r}")
    spec = InputSpec.from_card(card)  # the card's own side: see the module docstring
    images = _sample(data, spec, max_images, seed)
    classifier = zoo_transfer.build(card.name, num_classes=None, weights=weights)
    probs = np.concatenate(
        [
            np.asarray(classifier.predict_on_batch(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
    )
    return judge(card.name, probs, float(card.top1), threshold=threshold)


def _sample(data: Any, spec: Any, max_images: int, seed: int) -> np.ndarray:
    """Up to `max_images` images of `data` at `spec`'s side, stratified by class."""
    from zoo_transfer.data import load_image
    from zoo_transfer.folders import list_image_folder

    rng = np.random.default_rng(seed)
    if isinstance(data, (str, os.PathLike)):
        listing = list_image_folder(data)
        rows = _stratified(np.asarray(listing.labels), max_images, rng)
        out = []
        for i in rows:
            try:
                out.append(load_image(listing.paths[i], input_spec=spec))
            except Exception:  # unreadable files are the readers' business, not ours
                continue
        if not out:
            raise ArgumentError(f"No readable images in {os.fspath(data)!r} to measure.")
        return np.stack(out)
    if hasattr(data, "train_images"):  # a Splits
        batches = [np.asarray(x) for x, _ in data.train_images.in_order().dataset()]
        x = np.concatenate(batches)
        y = np.zeros(len(x), dtype=np.int64)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1]).reshape(-1)
    else:
        raise ArgumentError(
            "Expected a folder, an (images, labels) pair or a Splits to measure. "
            f"Received: {type(data).__name__}"
        )
    x = x[_stratified(y, max_images, rng)]
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    import keras

    resized = keras.ops.image.resize(
        x.astype("float32"), spec.image_size, interpolation=spec.interpolation
    )
    return np.clip(np.round(keras.ops.convert_to_numpy(resized)), 0, 255).astype("float32")


def _stratified(labels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices: every class in turn, each in a random order, until `limit`."""
    groups = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]
    return np.sort(np.asarray(order[:limit], dtype=np.int64))
