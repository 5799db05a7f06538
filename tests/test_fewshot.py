"""Few-shot linear evaluation (§4.1): closed-form least squares to {-1, 1}^K, L2 chosen on held-out images."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from trainutil import tiny_checkpoint
from vitkit import VitkitError, load_model
from vitkit.data.sources import open_source
from vitkit.evaluate.fewshot import draw_shots, fewshot_evaluate, fewshot_linear_accuracy, ridge_fit


@pytest.mark.parametrize("n, d", [(40, 8), (6, 30)])  # the D x D and the N x N (kernel) forms
def test_ridge_fit_matches_sklearn(n, d):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, 3))
    grid = [0.01, 1.0, 100.0]
    for (w, b), alpha in zip(ridge_fit(x, y, grid), grid, strict=True):
        reference = Ridge(alpha=alpha, fit_intercept=True, solver="cholesky").fit(x, y)
        np.testing.assert_allclose(w, reference.coef_.T, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(b, reference.intercept_, rtol=1e-6, atol=1e-8)


def test_separable_features_are_classified_perfectly():
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=10.0, size=(4, 16))

    def sample(per_class):
        labels = np.repeat(np.arange(4), per_class)
        return centres[labels] + rng.normal(scale=0.5, size=(len(labels), 16)), labels

    fit, hold, test = sample(2), sample(3), sample(50)
    accuracy, l2 = fewshot_linear_accuracy(*fit, *hold, *test, num_classes=4)
    assert accuracy == 1.0 and l2 > 0


def test_draws_are_disjoint_per_class_and_reproducible():
    labels = np.repeat(np.arange(3), 10)
    fit, hold = draw_shots(labels, 3, shots=2, holdout=4, rng=np.random.default_rng(0))
    assert len(fit) == 6 and len(hold) == 12 and not set(fit) & set(hold)
    assert np.bincount(labels[fit]).tolist() == [2, 2, 2]
    again = draw_shots(labels, 3, shots=2, holdout=4, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(fit, again[0])
    small = np.array([0] * 10 + [1] * 10 + [2] * 6)
    with pytest.raises(VitkitError, match="class 'c' has 6 training images; 2 shots \\+ 5 held-out need 7"):
        draw_shots(small, 3, shots=2, holdout=5, rng=np.random.default_rng(0), label_names=["a", "b", "c"])


def test_fewshot_of_a_trained_model_on_digits():
    model = load_model(tiny_checkpoint() / "model")
    train, test = open_source("digits", "train"), open_source("digits", "test")
    results = fewshot_evaluate(model, train, test, shots=(1, 10), draws=3, seed=0)
    assert [r.shots for r in results] == [1, 10]
    one, ten = results
    assert len(one.accuracies) == 3 and one.std > 0
    assert one.mean == pytest.approx(np.mean(one.accuracies)) and one.std == pytest.approx(np.std(one.accuracies,
                                                                                                ddof=1))
    assert ten.mean > one.mean > 0.1  # more shots help; both beat chance
    again = fewshot_evaluate(model, train, test, shots=(1,), draws=3, seed=0)
    assert again[0].accuracies == one.accuracies
