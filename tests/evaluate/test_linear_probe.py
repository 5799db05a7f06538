"""The linear probe (MAE's protocol): a BatchNorm without affine parameters and one linear layer trained on
fixed features, checked against scikit-learn's logistic regression on the same features and against the
affine map it must be at test time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from vitkit.data.sources import stratified_split
from vitkit.evaluate.linear_probe import LinearProbe, train_probe


def digits_features():
    x, y = load_digits(return_X_y=True)
    train, test = stratified_split(y, 0.2, 0)
    return x[train].astype(np.float32), y[train], x[test].astype(np.float32), y[test]


def test_probe_matches_logistic_regression_on_the_same_features():
    train_x, train_y, test_x, test_y = digits_features()
    probe = train_probe(torch.from_numpy(train_x), torch.from_numpy(train_y).long(), 10, epochs=30, batch_size=128,
                        lr=0.05, warmup_epochs=3, seed=0)
    with torch.no_grad():
        ours = float((probe(torch.from_numpy(test_x)).argmax(1).numpy() == test_y).mean())
    scaler = StandardScaler().fit(train_x)
    reference = LogisticRegression(max_iter=2000).fit(scaler.transform(train_x), train_y)
    theirs = reference.score(scaler.transform(test_x), test_y)
    assert theirs > 0.9 and ours >= theirs - 0.03, (ours, theirs)


def test_probe_is_a_fixed_affine_map_at_test_time():
    probe = LinearProbe(5, 3)
    assert not list(probe.norm.parameters())  # BatchNorm without affine: nothing learned but the linear layer
    generator = torch.Generator().manual_seed(0)
    probe.train()
    for _ in range(20):
        probe(torch.randn(16, 5, generator=generator) * 3 + 1)
    probe.eval()
    x = torch.randn(4, 5, generator=generator)
    mean, var = probe.norm.running_mean, probe.norm.running_var
    expected = ((x - mean) / torch.sqrt(var + 1e-6)) @ probe.linear.weight.t() + probe.linear.bias
    torch.testing.assert_close(probe(x), expected)
    assert probe.linear.weight.std() < 0.02 and torch.all(probe.linear.bias == 0)  # N(0, 0.01) and zeros at the start


def test_probe_normalises_with_eps_1e6_inside_the_square_root():
    # MAE's main_linprobe: BatchNorm1d(D, affine=False, eps=1e-6). A feature of variance 1e-6 (collapsed features
    # are that flat) standardises 1e-3 above its mean to 1e-3 / sqrt(1e-6 + 1e-6) = 0.707; torch's default eps
    # 1e-5 would give 0.30, no eps 1.0.
    probe = LinearProbe(1, 1)
    with torch.no_grad():
        probe.linear.weight.fill_(1.0)
    a = 1e-3 / 2 ** 0.5
    probe.train()
    probe(torch.tensor([[-a], [a]]))  # mean 0, unbiased variance 2 a^2 = 1e-6
    probe.eval()
    assert float(probe.norm.running_var[0]) == pytest.approx(1e-6, rel=1e-4)
    assert float(probe(torch.tensor([[1e-3]]))[0, 0]) == pytest.approx(1e-3 / (2e-6) ** 0.5, rel=1e-4)
