"""LogME: the fixed point is the evidence's maximum, chunks add up, information scores higher."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo_transfer.errors import ScoreInputError, TooFewImagesError
from zoo_transfer.transferability import LogMEAccumulator, logme


def _evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, alpha, beta) straight from its closed form, with no eigendecomposition.

    A = alpha I + beta F^T F, m = beta A^-1 F^T y:
    N/2 log beta + D/2 log alpha - N/2 log 2 pi - beta/2 ||F m - y||^2 - alpha/2 m^T m
    - 1/2 log |A|.
    """
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    residual = float(np.sum((f @ m - y) ** 2))
    return 0.5 * (
        n * math.log(beta)
        + d * math.log(alpha)
        - n * math.log(2 * math.pi)
        - beta * residual
        - alpha * float(m @ m)
        - np.linalg.slogdet(a)[1]
    )


def _evidence_grid(f: np.ndarray, y: np.ndarray, las: np.ndarray, lbs: np.ndarray) -> np.ndarray:
    """The evidence at every (log10 alpha, log10 beta) of a grid, from the SVD of `F`.

    With `F = U S V^T` and `u = U^T y`, `A`'s eigenvalues are `alpha + beta s^2` (and
    `alpha` for the directions `F` does not span); the grid test checks this against
    the plain closed form `_evidence` at its best point.
    """
    n, d = f.shape
    left, s, _ = np.linalg.svd(f, full_matrices=False)
    spanned = s > 1e-12 * s.max()
    u, sigma = (left.T @ y)[spanned], (s * s)[spanned]
    rest = float(y @ y - u @ u)
    alpha = (10.0**las)[:, None, None]
    beta = (10.0**lbs)[None, :, None]
    t = alpha + beta * sigma
    mm = (beta * beta * sigma * u * u / (t * t)).sum(-1)
    residual = rest + (u * u * (alpha / t) ** 2).sum(-1)
    logdet = np.log(t).sum(-1) + (d - len(sigma)) * np.log(alpha[..., 0])
    a, b = alpha[..., 0], beta[..., 0]
    return 0.5 * (
        n * np.log(b) + d * np.log(a) - n * math.log(2 * math.pi) - b * residual - a * mm - logdet
    )


EDGE = (-4.0, 8.0)  # the grid's range of log10 alpha and log10 beta


def _grid_maximum(f: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(evidence, log10 alpha, log10 beta) at the best point of a brute-force grid.

    Steps of 0.02 over `EDGE` in both (the evidence can be a ridge 0.05 wide), then
    finer grids around the best point.
    """

    def best_of(las: np.ndarray, lbs: np.ndarray) -> tuple[float, float, float]:
        values = _evidence_grid(f, y, las, lbs)
        i, j = np.unravel_index(int(np.argmax(values)), values.shape)
        return float(values[i, j]), float(las[i]), float(lbs[j])

    best = best_of(np.linspace(*EDGE, 601), np.linspace(*EDGE, 601))
    for width in (0.04, 0.008, 0.0016):
        _, la0, lb0 = best
        zoom = np.linspace(-width, width, 41)
        best = max(best, best_of(np.clip(la0 + zoom, *EDGE), np.clip(lb0 + zoom, *EDGE)))
    # the grid's formula is the closed form
    assert best[0] == pytest.approx(_evidence(f, y, 10 ** best[1], 10 ** best[2]), rel=1e-6)
    return best


def _task(n: int, d: int, k: int = 3, noise: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    f = np.eye(k)[y] @ rng.normal(size=(k, d)) + noise * rng.normal(size=(n, d))
    return f, y


@pytest.mark.parametrize(
    ("n", "d", "noise"), [(40, 5, 0.8), (60, 8, 1.0), (12, 30, 0.8)], ids=["N>D", "N>>D", "N<D"]
)
def test_the_fixed_point_is_the_maximum_of_the_evidence_on_a_grid(n, d, noise):
    f, y = _task(n, d, noise=noise)
    acc = LogMEAccumulator()
    acc.add(f, y)
    per_class = acc.evidences()
    interior = 0
    for c, found in enumerate(per_class):
        target = (y == c).astype(float)
        # the reported evidence is the closed form at the reported alpha and beta
        assert found.evidence == pytest.approx(_evidence(f, target, found.alpha, found.beta), 1e-7)
        grid, la, lb = _grid_maximum(f, target)
        # no point of the grid is better (where the supremum is at beta -> infinity, the
        # iteration stops once a step gains less than 1e-10 of the evidence)
        assert found.evidence >= grid - 1e-6 * max(1.0, abs(grid))
        if EDGE[0] + 0.5 < min(la, lb) and max(la, lb) < EDGE[1] - 0.5:  # inside: the same max
            interior += 1
            assert found.evidence == pytest.approx(grid, abs=1e-4)
            assert math.log10(found.alpha) == pytest.approx(la, abs=0.1)
            assert math.log10(found.beta) == pytest.approx(lb, abs=0.1)
    assert interior >= 1  # the problem is not all at the grid's edge
    assert acc.score() == pytest.approx(np.mean([e.evidence for e in per_class]) / n)


def test_chunked_accumulation_equals_one_shot():
    f, y = _task(90, 12, k=4, seed=1)
    order = np.random.default_rng(2).permutation(90)
    f, y = f[order], y[order]
    acc = LogMEAccumulator()
    for lo, hi in [(0, 1), (1, 7), (7, 40), (40, 41), (41, 90)]:  # uneven chunks, one image alone
        acc.add(f[lo:hi], y[lo:hi])
    assert acc.n == 90
    assert acc.score() == pytest.approx(logme(f, y), rel=1e-10)
    # float32 chunks (what a backbone gives) are accumulated in float64
    acc32 = LogMEAccumulator()
    for part in np.array_split(np.arange(90), 4):
        acc32.add(f[part].astype(np.float32), y[part])
    assert acc32.score() == pytest.approx(logme(f.astype(np.float32), y), rel=1e-9)


def test_a_class_seen_first_in_a_later_chunk_counts():
    f, y = _task(30, 4, k=3, seed=3)
    order = np.argsort(y, kind="stable")  # class 2 only arrives in the last chunk
    acc = LogMEAccumulator()
    acc.add(f[order][:20], y[order][:20])
    acc.add(f[order][20:], y[order][20:])
    assert list(acc.counts) == [10, 10, 10]
    assert acc.score() == pytest.approx(logme(f, y), rel=1e-10)


@pytest.mark.parametrize(("n", "d"), [(300, 16), (20, 64)], ids=["N>D", "N<D"])
def test_informative_features_score_higher_than_the_same_features_shuffled(n, d):
    f, y = _task(n, d, k=5, noise=1.5, seed=4)
    shuffled = f[np.random.default_rng(5).permutation(n)]  # same features, labels lost
    assert logme(f, y) > logme(shuffled, y) + 0.05


def test_more_information_scores_higher():
    scores = [logme(*_task(200, 10, k=4, noise=noise, seed=6)) for noise in (0.5, 1.0, 2.0, 4.0)]
    assert scores == sorted(scores, reverse=True)


def test_a_class_with_fewer_than_two_images_is_named():
    f, y = _task(21, 4, k=3)
    y = y.copy()
    y[y == 1] = 0
    y[5] = 1  # class 1 keeps one image
    with pytest.raises(TooFewImagesError, match=r"Class 'shirt' has 1 image\(s\)") as info:
        logme(f, y, class_names=["coat", "shirt", "bag"])
    assert info.value.class_name == "shirt" and info.value.count == 1
    with pytest.raises(TooFewImagesError, match="Class 1 has 1 image"):
        logme(f, y)


def test_a_named_class_without_images_and_a_single_class_are_refused():
    f, y = _task(20, 4, k=2)
    with pytest.raises(TooFewImagesError, match="Class 'bag' has 0 image"):
        logme(f, y, class_names=["coat", "shirt", "bag"])
    with pytest.raises(TooFewImagesError, match="at least 2 classes"):
        logme(f, np.zeros(20, int))


def test_mismatched_lengths_nan_and_shapes_are_named():
    f, y = _task(20, 4)
    with pytest.raises(ScoreInputError, match="20 rows of features and 19 labels"):
        logme(f, y[:19])
    bad = f.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ScoreInputError, match="1 NaN value.*row 7"):
        logme(bad, y)
    bad[7, 2] = np.inf
    with pytest.raises(ScoreInputError, match="infinite"):
        logme(bad, y)
    with pytest.raises(ScoreInputError, match=r"2-D array.*\(20, 2, 2\)"):
        logme(f.reshape(20, 2, 2), y)
    with pytest.raises(ScoreInputError, match="one-hot"):
        logme(f, np.eye(3)[y])
    with pytest.raises(ScoreInputError, match="integer class indices"):
        logme(f, y + 0.5)
    acc = LogMEAccumulator()
    acc.add(f, y)
    with pytest.raises(ScoreInputError, match="Expected 4 features per image.*5"):
        acc.add(np.ones((3, 5)), [0, 1, 2])


@pytest.mark.parametrize("scale", [1e-18, 1e-6, 1e6])
def test_the_score_does_not_depend_on_the_features_scale(scale):
    # the maximised evidence is invariant to F -> cF (alpha -> c^2 alpha): tiny features,
    # such as a random network's vanishing activations, are scored like any others
    f, y = _task(60, 8, seed=7)
    assert logme(f * scale, y) == pytest.approx(logme(f, y), rel=1e-7)


def _centred_basis(n: int) -> np.ndarray:
    """`(n, n - 1)` orthonormal columns spanning the vectors that sum to 0."""
    q, _ = np.linalg.qr(np.eye(n)[:, :-1] - 1.0 / n)
    return q


def test_standardized_logme_is_the_evidence_of_the_probes_regression():
    # standardize=True scores what linear_head fits: features centred and scaled (std +
    # 1e-6), the intercept left free. With the constant direction projected out (n - 1
    # dimensions), that is the plain evidence of the centred target on those features.
    f, y = _task(60, 8, noise=1.0, seed=4)
    f = np.abs(f) * np.geomspace(1e-3, 1e3, 8) + np.linspace(0, 50, 8)  # scales and offsets
    z = (f - f.mean(axis=0)) / (f.std(axis=0) + 1e-6)
    q = _centred_basis(len(y))
    acc = LogMEAccumulator()
    acc.add(f, y)
    per_class = acc.evidences(standardize=True)
    for c, found in enumerate(per_class):
        target = q.T @ (y == c).astype(float)
        assert found.evidence == pytest.approx(
            _evidence(q.T @ z, target, found.alpha, found.beta), rel=1e-7
        )
        grid, _, _ = _grid_maximum(q.T @ z, target)
        assert found.evidence >= grid - 1e-6 * max(1.0, abs(grid))
        assert found.evidence == pytest.approx(grid, abs=1e-4)
    assert acc.score(standardize=True) == pytest.approx(
        np.mean([e.evidence for e in per_class]) / len(y)
    )
    # the raw score is still the default, and a different number here
    assert acc.score() == pytest.approx(logme(f, y))
    assert abs(acc.score() - acc.score(standardize=True)) > 0.01


def test_standardized_logme_ignores_each_features_scale_offset_and_constants():
    f, y = _task(300, 12, k=4, noise=1.5, seed=5)
    base = logme(f, y, standardize=True)
    scales = np.geomspace(1.0, 1e4, 12)
    moved = f * scales + 1e3 * np.arange(12)  # each feature its own unit and zero
    assert logme(moved, y, standardize=True) == pytest.approx(base, rel=1e-6)
    # (only the floor added to the std, 1e-6 as in the probe, tells units apart)
    assert logme(moved, y) != pytest.approx(logme(f, y), rel=1e-3)  # raw LogME is not
    # a constant feature (a dead ReLU) carries nothing and changes nothing
    dead = np.concatenate([f, np.full((300, 2), 7.25)], axis=1)
    assert logme(dead, y, standardize=True) == pytest.approx(base, rel=1e-8)
    # float32 chunks with a large common offset: no cancellation in the centring
    acc = LogMEAccumulator()
    shifted = (f + 100.0).astype(np.float32)
    for part in np.array_split(np.arange(300), 7):
        acc.add(shifted[part], y[part])
    assert acc.score(standardize=True) == pytest.approx(
        logme(shifted.astype(np.float64), y, standardize=True), rel=1e-9
    )
    assert acc.score(standardize=True) == pytest.approx(base, rel=1e-5)
    # informative features still beat the same features shuffled against the labels
    shuffled = np.random.default_rng(6).permutation(f)
    assert base > logme(shuffled, y, standardize=True) + 0.05
