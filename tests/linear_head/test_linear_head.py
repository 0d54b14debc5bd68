"""The converged linear head matches scikit-learn's logistic regression on the same features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from zoo_transfer.errors import ArgumentError
from zoo_transfer.linear_head import L2_GRID, choose_l2, fit_linear_head, fit_softmax


def _sklearn_choice(x, y, xv, yv, grid=L2_GRID):
    """scikit-learn's LogisticRegression with C picked on the validation split.

    Its objective is C * sum(cross-entropy) + ||W||^2 / 2, ours mean(cross-entropy) +
    l2 * ||W||^2 / 2: the same optimum when C = 1 / (l2 * n).
    """
    fits = []
    for l2 in sorted(grid, reverse=True):
        model = LogisticRegression(C=1.0 / (l2 * len(y)), max_iter=10_000, tol=1e-8)
        model.fit(x, y)
        fits.append((model.score(xv, yv), l2, model))
    return max(fits, key=lambda item: (item[0], item[1]))


def test_the_optimum_and_the_choice_match_scikit_learn():
    x, y = load_digits(return_X_y=True)
    rows = np.random.default_rng(0).permutation(len(y))
    train, val, test = rows[:600], rows[600:1000], rows[1000:]
    z = (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)

    l2, tried, fits = choose_l2(z[train], y[train], z[val], y[val], 10)
    w, b, _ = fits[l2]
    ours = np.argmax(z[test] @ w + b, axis=1)
    _, sk_l2, sk = _sklearn_choice(z[train], y[train], z[val], y[val])
    assert l2 == sk_l2 and len(tried) == len(L2_GRID)
    assert abs(np.mean(ours == y[test]) - sk.score(z[test], y[test])) <= 0.005
    assert np.mean(ours == sk.predict(z[test])) >= 0.99
    np.testing.assert_allclose(w, sk.coef_.T, atol=5e-3)  # the same optimum, not just close


def test_a_warm_start_reaches_the_same_optimum():
    x, y = load_digits(return_X_y=True)
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    cold = fit_softmax(z[:500], y[:500], 10, 1e-3)
    warm = fit_softmax(
        z[:500], y[:500], 10, 1e-3, start=fit_softmax(z[:500], y[:500], 10, 1e-1)[:2]
    )
    np.testing.assert_allclose(cold[0], warm[0], atol=2e-3)


@pytest.fixture(scope="module")
def digits():
    from zoo_transfer.recipes.digitnet import demo_digits

    x, y, x_val, y_val, _ = demo_digits(seed=0, train_per_class=20)
    return x, y, x_val, y_val


def test_the_model_predicts_as_the_fitted_logistic_regression(fresh_keras, digits):
    import zoo_transfer
    from zoo_transfer.features import backbone_features, split_head

    x, y, x_val, y_val = digits
    model = zoo_transfer.build("digitnet", 5)  # the shipped pretrained backbone
    backbone = [w.numpy().copy() for w in model.get_layer("digitnet").weights]
    result = fit_linear_head(model, (x, y), (x_val, y_val))
    accuracy = np.mean(model.predict(x_val, verbose=0).argmax(-1) == y_val)
    assert accuracy == pytest.approx(result.val_accuracy, abs=1e-9)  # standardisation folded in
    for before, after in zip(backbone, model.get_layer("digitnet").weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())

    trunk, _ = split_head(model)
    f, fy = backbone_features(trunk, (x, y))
    fv, fvy = backbone_features(trunk, (x_val, y_val))
    mean, scale = f.mean(0), f.std(0) + 1e-6
    sk_val, _, sk = _sklearn_choice((f - mean) / scale, fy, (fv - mean) / scale, fvy)
    assert abs(result.val_accuracy - sk_val) <= 0.005
    assert result.seconds < 120 and result.iterations > 0


def test_without_validation_a_fifth_of_the_training_images_chooses(fresh_keras, digits):
    import zoo_transfer

    x, y, _, _ = digits
    result = fit_linear_head(zoo_transfer.build("digitnet", 5), (x, y))
    assert result.val_accuracy is None and result.l2 in L2_GRID
    assert result.train_accuracy > 0.8


def test_a_head_with_hidden_layers_is_refused(fresh_keras, digits):
    from zoo_transfer import recipes

    x, y, _, _ = digits
    model, _ = recipes.large_different("digitnet", 5)
    with pytest.raises(ArgumentError, match="one Dense layer.*fit_transfer"):
        fit_linear_head(model, (x, y))
