"""Transferability scores: how well a frozen model's outputs suit a labelled target task.

Choosing a pretrained model by fine-tuning every candidate costs a training run each.
These scores need one forward pass over the target images instead, and rank the
candidates from what that pass gives:

- `logme(features, labels)`: LogME (You et al., "LogME: Practical Assessment of
  Pre-trained Models for Transfer Learning", ICML 2021). For each class `c`, a Bayesian
  linear regression of the one-hot target `y_c` on the features, with weights
  `w ~ N(0, 1/alpha)` and noise precision `beta`; its log marginal evidence
  `log p(y_c | F, alpha, beta)` at the `alpha`, `beta` that maximise it (MacKay's
  fixed-point iteration), divided by the number of images. The score is the mean over
  classes: higher is better. It uses the features alone, so it scores any backbone.
- `leep(source_probs, labels)`: LEEP (Nguyen et al., "LEEP: A New Measure to Evaluate
  Transferability of Learned Representations", ICML 2020): the mean log-likelihood of
  the target labels under the "expected empirical predictor" built from the source
  head's probabilities. It needs the pretrained classifier (the model's source head).

Both are pure numpy. LogME works from sufficient statistics (`F^T F`, `F^T Y`, the
class counts and `N`), which `LogMEAccumulator` gathers chunk by chunk, so features
that do not fit in memory are scored in one pass; the evidence then comes from the
eigendecomposition of the `D x D` matrix `F^T F`, whatever `N` is (fewer images than
features included).

```python
from zoo_transfer.transferability import LogMEAccumulator, leep, logme
logme(features, labels)                  # e.g. 1.43; higher transfers better
acc = LogMEAccumulator()
for f, y in batches:
    acc.add(f, y)
acc.score()                              # the same number, without holding the features
leep(softmax_outputs, labels)            # e.g. -1.2; higher transfers better
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo_transfer.errors import ScoreInputError, TooFewImagesError
from zoo_transfer.linear_head import SCALE_FLOOR

MIN_PER_CLASS = 2  # a class with fewer images cannot be judged
_LIMIT = 1e15  # alpha and beta stay in [1/_LIMIT, _LIMIT]: a degenerate class cannot overflow
_MAX_STEPS = 1000
_TOL = 1e-10  # relative change of the evidence that ends the fixed-point iteration
_PROB_SUM_TOL = 1e-3  # how far a row of probabilities may sum from 1


@dataclass(frozen=True)
class ClassEvidence:
    """LogME's maximised evidence for one class.

    `alpha` is the prior precision of the weights, `beta` the noise precision, `evidence`
    the log marginal evidence `log p(y_c | F, alpha, beta)` (not divided by `N`), and
    `steps` the fixed-point iterations it took.
    """

    alpha: float
    beta: float
    evidence: float
    steps: int


# ---------------------------------------------------------------------- input checks
def _check_features(features: Any, what: str = "features") -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2:
        raise ScoreInputError(
            f"Expected {what} as a 2-D array (images, features). Received: shape {x.shape}; "
            "pool or flatten feature maps first (e.g. x.mean(axis=(1, 2)))."
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ScoreInputError(f"Expected real numbers in {what}. Received: dtype {x.dtype}.")
    x = x.astype(np.float64, copy=False)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        kind = "NaN" if np.isnan(x).any() else "infinite"
        raise ScoreInputError(
            f"{what} hold {int(bad.sum())} {kind} value(s), the first in row {row}. A "
            "backbone that overflows (mixed precision, an unnormalised input) gives them; "
            "fix the images or the model, or drop those rows."
        )
    return x


def _check_labels(labels: Any, n: int, what: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ScoreInputError(
            f"Expected labels as a 1-D array of class indices. Received: shape {y.shape}; "
            "convert one-hot labels with labels.argmax(axis=1)."
        )
    if len(y) != n:
        raise ScoreInputError(
            f"Expected one label per row of {what}. Received: {n} rows of {what} and "
            f"{len(y)} labels."
        )
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise ScoreInputError(
                "Expected integer class indices as labels. Received: float labels with "
                "NaN or fractions, e.g. " + repr(y[~(np.isfinite(y) & (y == np.round(y)))][:3])
            )
    elif y.dtype.kind not in "iub":
        raise ScoreInputError(
            f"Expected integer class indices as labels. Received: dtype {y.dtype}; map class "
            "names to indices first (np.unique(names, return_inverse=True)[1])."
        )
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise ScoreInputError(f"Expected class indices >= 0. Received: min(labels)={y.min()}.")
    return y


def _name(index: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and index < len(class_names):
        return repr(str(class_names[index]))
    return str(index)


def check_class_counts(
    counts: Sequence[int] | np.ndarray, class_names: Sequence[str] | None = None
) -> None:
    """Refuse fewer than 2 classes, or a class with fewer than 2 images.

    `counts[c]` is the number of images of class `c`. Raises `TooFewImagesError`
    naming the first such class (by `class_names` when given).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = len(counts) if class_names is None else max(len(class_names), len(counts))
    counts = np.pad(counts, (0, total - len(counts)))
    if total < 2:
        raise TooFewImagesError(
            f"Expected at least 2 classes. Received: {total} class(es); a score compares "
            "how well features tell classes apart.",
            class_name="" if total == 0 else _name(0, class_names).strip("'"),
            count=int(counts.sum()),
        )
    few = np.flatnonzero(counts < MIN_PER_CLASS)
    if len(few):
        c = int(few[0])
        name = _name(c, class_names)
        more = f" (and {len(few) - 1} more class(es))" if len(few) > 1 else ""
        raise TooFewImagesError(
            f"Class {name} has {counts[c]} image(s){more}; every class needs at least "
            f"{MIN_PER_CLASS}. Add images to it, or leave the class out.",
            class_name=str(class_names[c]) if class_names is not None else str(c),
            count=int(counts[c]),
        )


# ---------------------------------------------------------------------- LogME
def _evidence(
    alpha: float, beta: float, sigma: np.ndarray, u2: np.ndarray, rest: float, n: int, d: int
) -> tuple[float, float, float, float]:
    """Log evidence at `(alpha, beta)`, and `gamma`, `m^T m`, the residual for the update.

    In the eigenbasis of `F^T F` (eigenvalues `sigma > 0`), `u2 = z^2 / sigma` with
    `z = V^T F^T y` is `y`'s squared length along each direction of the features' span,
    and `rest` its squared length outside the span. With `t = alpha + beta * sigma`:
    `m^T m = sum(beta^2 sigma u2 / t^2)`, `||F m - y||^2 = rest + sum(u2 alpha^2 / t^2)`,
    `log|A| = sum(log t) + (d - len(sigma)) log alpha`.
    """
    t = alpha + beta * sigma
    mm = float(np.sum(beta * beta * sigma * u2 / (t * t)))
    residual = rest + float(np.sum(u2 * (alpha / t) ** 2))
    logdet = float(np.sum(np.log(t))) + (d - len(sigma)) * math.log(alpha)
    evidence = 0.5 * (
        n * math.log(beta)
        + d * math.log(alpha)
        - n * math.log(2 * math.pi)
        - beta * residual
        - alpha * mm
        - logdet
    )
    gamma = float(np.sum(beta * sigma / t))
    return evidence, gamma, mm, residual


def _maximise(sigma: np.ndarray, z: np.ndarray, yy: float, n: int, d: int) -> ClassEvidence:
    """MacKay's fixed point for one class: `alpha = gamma / m^T m`, `beta = (n - gamma) / res`."""
    u2 = z * z / sigma
    rest = max(yy - float(u2.sum()), 0.0)
    alpha, beta = 1.0, 1.0
    evidence, gamma, mm, residual = _evidence(alpha, beta, sigma, u2, rest, n, d)
    steps = 0
    while steps < _MAX_STEPS:
        steps += 1
        alpha = min(max(gamma / mm, 1 / _LIMIT), _LIMIT) if mm > 0 else _LIMIT
        beta = min(max((n - gamma) / residual, 1 / _LIMIT), _LIMIT) if residual > 0 else _LIMIT
        new, gamma, mm, residual = _evidence(alpha, beta, sigma, u2, rest, n, d)
        done = abs(new - evidence) <= _TOL * max(1.0, abs(new))
        evidence = new
        if done:
            break
    return ClassEvidence(alpha, beta, evidence, steps)


class LogMEAccumulator:
    """LogME from sufficient statistics, gathered one chunk of features at a time.

    Memory is `D x D` (plus `D x K`), whatever the number of images: `add` each chunk
    of features and labels as it comes (a batch of a forward pass), then `score`. The
    result equals `logme` on all the chunks stacked.

    Args:
        class_names: `list[str]`, optional; names the class in errors (class `i` is
            `class_names[i]`) and fixes the number of classes, so a class with no image
            at all is caught.

    ```python
    acc = LogMEAccumulator()
    for features, labels in batches:   # (B, D) floats and (B,) class indices
        acc.add(features, labels)
    acc.score()
    ```
    """

    def __init__(self, class_names: Sequence[str] | None = None):
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.n = 0
        self._ftf: np.ndarray | None = None  # F^T F
        self._fty: np.ndarray | None = None  # F^T Y (D x K), Y one-hot
        self._sum: np.ndarray | None = None  # F^T 1, for `standardize=True`
        self._counts = np.zeros(len(self.class_names or ()), dtype=np.int64)  # y_c^T y_c

    @property
    def num_features(self) -> int | None:
        """`D`, once a chunk has been added."""
        return None if self._ftf is None else self._ftf.shape[0]

    @property
    def counts(self) -> np.ndarray:
        """Images per class so far."""
        return self._counts.copy()

    def add(self, features: Any, labels: Any) -> None:
        """Add a chunk: `features` `(B, D)` and integer class indices `labels` `(B,)`."""
        x = _check_features(features)
        y = _check_labels(labels, len(x), "features")
        if self._ftf is None:
            d = x.shape[1]
            if d == 0:
                raise ScoreInputError("Expected at least one feature per image. Received: D=0.")
            self._ftf = np.zeros((d, d))
            self._fty = np.zeros((d, len(self._counts)))
            self._sum = np.zeros(d)
        elif x.shape[1] != self._ftf.shape[0]:
            raise ScoreInputError(
                f"Expected {self._ftf.shape[0]} features per image, as in the earlier chunks. "
                f"Received: a chunk with {x.shape[1]}."
            )
        if not len(y):
            return
        k = int(y.max()) + 1
        if self.class_names is not None and k > len(self.class_names):
            raise ScoreInputError(
                f"Label {k - 1} has no class name: {len(self.class_names)} names were given "
                f"({self.class_names[:5]}...). Pass every class name, in index order."
            )
        if k > len(self._counts):
            self._counts = np.pad(self._counts, (0, k - len(self._counts)))
            self._fty = np.pad(self._fty, ((0, 0), (0, k - self._fty.shape[1])))
        onehot = np.zeros((len(y), len(self._counts)))
        onehot[np.arange(len(y)), y] = 1.0
        self._ftf += x.T @ x
        self._fty += x.T @ onehot
        self._sum += x.sum(axis=0)
        self._counts += np.bincount(y, minlength=len(self._counts))
        self.n += len(y)

    def _statistics(self, standardize: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """`(F^T F, F^T Y, y_c^T y_c, n)` of the features as scored."""
        counts = self._counts.astype(np.float64)
        if not standardize:
            return self._ftf, self._fty, counts, self.n
        # Centred and scaled to unit variance, as `linear_head` does before fitting
        # (its std + SCALE_FLOOR); the targets are centred too, so the intercept the
        # probe fits unpenalised is not charged to the weights. It costs one dimension.
        mean = self._sum / self.n
        ftf = self._ftf - self.n * np.outer(mean, mean)
        var = np.diag(ftf) / self.n
        # a feature whose spread is below the round-off of F^T F - n mean^2 is constant
        constant = var <= 64 * np.finfo(np.float64).eps * np.diag(self._ftf) / self.n
        ftf[constant, :] = 0.0
        ftf[:, constant] = 0.0
        scale = np.sqrt(np.where(constant, 0.0, var)) + SCALE_FLOOR
        fty = (self._fty - np.outer(mean, counts)) / scale[:, None]
        fty[constant] = 0.0
        return ftf / np.outer(scale, scale), fty, counts - counts**2 / self.n, self.n - 1

    def evidences(self, *, standardize: bool = False) -> list[ClassEvidence]:
        """The maximised evidence of each class, in class order.

        `standardize=True` scores the features centred and scaled to unit variance
        (see `logme`).

        Raises `TooFewImagesError` when there are fewer than 2 classes or a class has
        fewer than 2 images.
        """
        if self._ftf is None or self.n == 0:
            raise ScoreInputError("Expected features of at least one image. Received: none.")
        check_class_counts(self._counts, self.class_names)
        ftf, fty, yy, n = self._statistics(standardize)
        sigma, v = np.linalg.eigh(ftf)
        z_all = v.T @ fty  # (D, K)
        # The maximised evidence does not change when the features are scaled by c (alpha
        # takes c^2), so they are brought to unit scale first: features of 1e-18 (a
        # random network's vanishing activations) or 1e6 keep alpha and beta in range.
        scale = float(sigma.max()) if sigma.max() > 0 else 1.0
        sigma, z_all = sigma / scale, z_all / math.sqrt(scale)
        # directions the features do not span (N < D, or collinear features) carry
        # nothing of y: their eigenvalues are round-off, and are treated as zero.
        d = len(sigma)
        keep = sigma > d * np.finfo(np.float64).eps
        sigma, z_all = sigma[keep], z_all[keep]
        found = [_maximise(sigma, z_all[:, c], float(yy[c]), n, d) for c in range(z_all.shape[1])]
        return [ClassEvidence(e.alpha * scale, e.beta, e.evidence, e.steps) for e in found]

    def score(self, *, standardize: bool = False) -> float:
        """LogME: the mean over classes of the maximised log evidence, divided by `N`.

        `standardize`: score the features centred and scaled to unit variance (`logme`).
        """
        evidences = self.evidences(standardize=standardize)
        return float(np.mean([e.evidence for e in evidences]) / self.n)


def logme(
    features: Any,
    labels: Any,
    *,
    class_names: Sequence[str] | None = None,
    standardize: bool = False,
) -> float:
    """LogME of `features` for the classification task `labels`: higher transfers better.

    The mean over classes of the log marginal evidence of a Bayesian linear regression
    of the class's one-hot target on the features (its prior and noise precisions
    maximised), divided by the number of images. Comparable between models on the same
    images.

    Args:
        features: `(N, D)` array, e.g. a frozen backbone's pooled features.
        labels: `(N,)` integer class indices `0..K-1`.
        class_names: `list[str]`, optional: names classes in errors.
        standardize: False (default, as in You et al.): the features as they are. True:
            each feature centred and scaled to unit variance first (standard deviation
            plus `linear_head.SCALE_FLOOR`), and each class's target centred: the
            regression then matches the probe `zoo_transfer.linear_head` fits (an
            unpenalised intercept, one L2 strength for every standardised feature), so
            a feature's scale does not decide its prior.

    Raises `TooFewImagesError` for fewer than 2 classes or a class with fewer than 2
    images, and `ScoreInputError` for mismatched lengths, NaN or a wrong shape.

    ```python
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    informative = np.eye(3)[y] + 0.3 * rng.normal(size=(300, 3))
    logme(informative, y) > logme(rng.permutation(informative), y)   # True
    ```
    """
    acc = LogMEAccumulator(class_names)
    acc.add(features, labels)
    return acc.score(standardize=standardize)


# ---------------------------------------------------------------------- LEEP
def leep(source_probs: Any, labels: Any, *, class_names: Sequence[str] | None = None) -> float:
    """LEEP of a source classifier for the target task `labels`: higher transfers better.

    With `theta_i` the source head's probabilities over its `Z` classes for image `i`:
    the empirical joint `P(y, z) = mean_i theta_iz [y_i = y]`, the conditional
    `P(y | z) = P(y, z) / P(z)`, and LEEP `= mean_i log(sum_z P(y_i | z) theta_iz)`, the
    average log-likelihood of the "expected empirical predictor". It is at most 0.

    Args:
        source_probs: `(N, Z)` probabilities (rows sum to 1: softmax outputs, not logits).
        labels: `(N,)` integer target class indices `0..K-1`.
        class_names: `list[str]`, optional: names classes in errors.

    ```python
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
    leep(probs, [0, 0, 1, 1])   # -0.3426...
    ```
    """
    theta = _check_features(source_probs, "source_probs")
    y = _check_labels(labels, len(theta), "source_probs")
    if not len(theta):
        raise ScoreInputError("Expected probabilities of at least one image. Received: none.")
    if theta.min() < 0 or np.abs(theta.sum(axis=1) - 1.0).max() > _PROB_SUM_TOL:
        off = (theta < 0).any(axis=1) | (np.abs(theta.sum(axis=1) - 1.0) > _PROB_SUM_TOL)
        row = int(np.argmax(off))
        raise ScoreInputError(
            "Expected source_probs as probabilities: each row >= 0 and summing to 1. "
            f"Received: row {row} sums to {theta[row].sum():.4g} (min {theta[row].min():.4g}). "
            "Apply a softmax to logits first."
        )
    counts = np.bincount(y, minlength=len(class_names or ()))
    check_class_counts(counts, class_names)
    onehot = np.zeros((len(y), len(counts)))
    onehot[np.arange(len(y)), y] = 1.0
    joint = onehot.T @ theta / len(y)  # (K, Z): P(y, z)
    marginal = joint.sum(axis=0)  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    likelihood = np.sum(theta * conditional[y], axis=1)  # sum_z P(y_i | z) theta_iz
    return float(np.mean(np.log(np.maximum(likelihood, np.finfo(np.float64).tiny))))


__all__ = [
    "ClassEvidence",
    "LogMEAccumulator",
    "MIN_PER_CLASS",
    "check_class_counts",
    "leep",
    "logme",
]
