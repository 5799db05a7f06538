"""Few-shot linear evaluation (§4.1) as big_vision's fewshot_lsr evaluator runs it, checked against the
reference formula written out directly (np.linalg.solve) and sklearn's ridge regression."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from trainutil import tiny_checkpoint

from vitkit import VitkitError, create_model, load_model
from vitkit.data.sources import open_source
from vitkit.evaluate.fewshot import (
    L2_SWEEP,
    class_permutations,
    extract_features,
    fewshot_evaluate,
    fewshot_linear_accuracy,
    fewshot_linear_accuracy_sweep,
    ridge_solutions,
)


def reference_accuracy(fit_x, fit_y, test_x, test_y, num_classes, l2=2.0 ** 10):
    """big_vision's computation spelled out: whiten with the fit set's mean and std (+1e-5), append a
    constant 100 feature, solve (X^T X + l2 I) W = X^T (2 onehot - 1), classify by argmax."""
    mean, std = fit_x.mean(0), fit_x.std(0) + 1e-5
    def prepare(a):
        return np.concatenate([(a - mean) / std, np.full((len(a), 1), 100.0)], axis=1)
    x, t = prepare(fit_x), prepare(test_x)
    y = 2.0 * np.eye(num_classes)[fit_y] - 1.0
    w = np.linalg.solve(x.T @ x + l2 * np.eye(x.shape[1]), x.T @ y)
    return float(np.mean(np.argmax(t @ w, axis=1) == test_y))


@pytest.mark.parametrize("n, d", [(40, 8), (6, 30)])  # the D x D and the N x N (kernel) forms
def test_ridge_solutions_match_sklearn(n, d):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, 3))
    grid = [0.01, 1.0, 100.0]
    for w, alpha in zip(ridge_solutions(x, y, grid), grid, strict=True):
        reference = Ridge(alpha=alpha, fit_intercept=False, solver="cholesky").fit(x, y)
        np.testing.assert_allclose(w, reference.coef_.T, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("per_class, dim", [(1, 24), (5, 24), (10, 8)])
def test_fixed_l2_accuracy_is_the_reference_formula(per_class, dim):
    rng = np.random.default_rng(per_class)
    centres = rng.normal(size=(5, dim))
    fit_y, test_y = np.repeat(np.arange(5), per_class), np.repeat(np.arange(5), 40)
    fit_x = centres[fit_y] + rng.normal(scale=1.5, size=(len(fit_y), dim))
    test_x = centres[test_y] + rng.normal(scale=1.5, size=(len(test_y), dim))
    ours = fewshot_linear_accuracy(fit_x, fit_y, test_x, test_y, 5)
    assert ours == reference_accuracy(fit_x, fit_y, test_x, test_y, 5)
    assert 0.2 < ours < 1.0  # a regime where the regularisation matters


def test_the_sweep_chooses_on_held_out_images():
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=10.0, size=(4, 16))

    def sample(per_class):
        labels = np.repeat(np.arange(4), per_class)
        return centres[labels] + rng.normal(scale=0.5, size=(len(labels), 16)), labels

    fit, hold, test = sample(2), sample(3), sample(50)
    accuracy, l2 = fewshot_linear_accuracy_sweep(*fit, *hold, *test, num_classes=4)
    assert accuracy == 1.0 and l2 in L2_SWEEP
    assert accuracy == reference_accuracy(*fit, *test, 4, l2=l2)


def test_draws_are_big_visions_nested_class_permutations():
    labels = np.repeat(np.arange(3), 10)[np.random.default_rng(5).permutation(30)]
    perms = class_permutations(labels, 3, needed=5, rng=np.random.default_rng(0))
    reference_rng = np.random.default_rng(0)  # big_vision: rng.permutation(np.where(labels == c)[0]) per class
    for c in range(3):
        np.testing.assert_array_equal(perms[c], reference_rng.permutation(np.where(labels == c)[0]))
        assert set(labels[perms[c]]) == {c}
    with pytest.raises(VitkitError, match="class 'c' has 6 training images; the evaluation needs 7"):
        class_permutations(np.array([0] * 10 + [1] * 10 + [2] * 6), 3, needed=7, rng=np.random.default_rng(0),
                           label_names=["a", "b", "c"])


def test_the_representation_is_the_pre_logits_output():
    model = create_model("ViT-Ti/16", depth=1, image_size=16, patch_size=4, hidden_size=32, num_heads=2, mlp_dim=64,
                         num_classes=10, representation_size=24, seed=0).eval()
    digits = open_source("digits", "test")
    feats, _, _ = extract_features(model, digits, range(4))
    pooled, _, _ = extract_features(model, digits, range(4), features="pooled")
    assert feats.shape == (4, 24) and pooled.shape == (4, 32)
    fc = model.pre_logits.fc
    by_hand = np.tanh(pooled @ fc.weight.detach().double().numpy().T + fc.bias.detach().double().numpy())
    np.testing.assert_allclose(feats, by_hand, rtol=0, atol=1e-5)


def test_fewshot_of_a_trained_model_on_digits_follows_the_protocol():
    model = load_model(tiny_checkpoint() / "model")
    train, test = open_source("digits", "train"), open_source("digits", "test")
    results = fewshot_evaluate(model, train, test, shots=(1, 10), draws=3, seed=0)
    one, ten = results
    assert [r.shots for r in results] == [1, 10] and one.l2 == [1024.0] * 3
    assert one.std > 0 and one.mean == pytest.approx(np.mean(one.accuracies))
    assert ten.mean > one.mean > 0.1  # more shots help; both beat chance
    # draw 1 of 10 shots, recomputed from its definition: permutation with seed 0 + 1, first 10 per class
    train_x, train_y, kept = extract_features(model, train, None)
    test_x, test_y, _ = extract_features(model, test, None)
    perms = class_permutations(train.labels(), 10, 10, np.random.default_rng(1))
    fit = np.concatenate([p[:10] for p in perms])
    assert (kept == np.arange(len(train))).all()
    assert ten.accuracies[1] == reference_accuracy(train_x[fit], train_y[fit], test_x, test_y, 10)
    swept = fewshot_evaluate(model, train, test, shots=(1,), draws=2, seed=0, l2_sweep=True)
    assert all(value in L2_SWEEP for value in swept[0].l2)


def test_bad_requests_are_one_line_errors():
    model = create_model("ViT-Ti/16", depth=1, image_size=16, patch_size=4, num_classes=10, seed=0)
    train, test = open_source("digits", "train"), open_source("digits", "test")
    with pytest.raises(VitkitError, match="features: got 'logits'; allowed: one of pre_logits, pooled"):
        fewshot_evaluate(model, train, test, shots=(1,), features="logits")
    with pytest.raises(VitkitError, match="l2: got 0"):
        fewshot_evaluate(model, train, test, shots=(1,), l2=0)
