"""The verdict rules of ``vitkit reproduce`` on constructed numbers (no training): each claim's
conditions come out as met, contradicted or undecided exactly when the stated thresholds say so."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from vitkit.studies.reproduce import (
    attention_distance,
    classifier,
    compute,
    data_size,
    posemb,
    self_supervision,
    small_data,
)
from vitkit.studies.reproduce.stats import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Condition,
    Summary,
    ahead,
    equivalent,
    interpolate_at,
    verdict,
)


def around(mean: float, spread: float = 0.002, n: int = 3) -> Summary:
    """n values with the given mean and a sample standard deviation of ``spread``."""
    offsets = np.linspace(-1.0, 1.0, n)
    offsets = offsets / np.std(offsets, ddof=1) if n > 1 else offsets
    return Summary.of(mean + spread * offsets)


def test_summary_matches_numpy_and_scipy():
    s = Summary.of([0.91, 0.95, 0.93, 0.90])
    assert s.mean == pytest.approx(np.mean([0.91, 0.95, 0.93, 0.90]))
    assert s.std == pytest.approx(np.std([0.91, 0.95, 0.93, 0.90], ddof=1))
    assert s.se == pytest.approx(scipy_stats.sem([0.91, 0.95, 0.93, 0.90]))
    with pytest.raises(ValueError):
        Summary.of([0.5, math.nan])


def test_a_difference_counts_beyond_two_standard_errors_and_the_minimum_effect():
    a, b = around(0.80, 0.01), around(0.78, 0.01)  # diff 0.02, se of the difference 0.01*sqrt(2/3) = 0.0082
    assert ahead(a, b) is True and ahead(b, a) is False
    assert ahead(a, b, min_effect=0.03) is None  # 0.02 +- 0.016 may or may not reach 0.03
    assert ahead(a, b, min_effect=0.05) is False  # 0.02 + 2 SE < 0.05: certainly not ahead by that much
    assert ahead(around(0.80, 0.03), around(0.78, 0.03)) is None  # 2 SE = 0.049 > 0.02
    assert equivalent(around(0.80, 0.001), around(0.801, 0.001), margin=0.01) is True
    assert equivalent(around(0.80, 0.001), around(0.85, 0.001), margin=0.01) is False
    assert equivalent(around(0.80, 0.02), around(0.80, 0.02), margin=0.01) is None


def test_verdict_is_three_valued():
    met, failed, open_ = (Condition("c", "r", o) for o in (True, False, None))
    assert verdict([met, met]) == HOLDS
    assert verdict([met, open_]) == INCONCLUSIVE
    assert verdict([open_, failed, met]) == FAILS


def test_interpolation_is_linear_in_log_compute_and_stays_inside_the_curve():
    xs = [1.0, 100.0]
    curve = [around(0.5, 0.0), around(0.7, 0.0)]
    assert interpolate_at(10.0, xs, curve).mean == pytest.approx(0.6)
    assert interpolate_at(0.5, xs, curve) is None and interpolate_at(200.0, xs, curve) is None


POSEMB_CASES = [
    ({"none": 0.60, "learned_1d": 0.70, "learned_2d": 0.702, "relative": 0.699}, HOLDS),
    ({"none": 0.70, "learned_1d": 0.70, "learned_2d": 0.701, "relative": 0.699}, FAILS),   # none is not worse
    ({"none": 0.60, "learned_1d": 0.70, "learned_2d": 0.62, "relative": 0.699}, FAILS),    # 2-D far from the rest
]


@pytest.mark.parametrize("means, expected", POSEMB_CASES)
def test_table8_rule(means, expected):
    assert verdict(posemb.decide({k: around(m) for k, m in means.items()})) == expected


def test_table8_rule_is_inconclusive_when_the_seeds_disagree():
    noisy = {k: around(m, 0.05) for k, m in {"none": 0.60, "learned_1d": 0.66, "learned_2d": 0.66,
                                            "relative": 0.66}.items()}
    assert verdict(posemb.decide(noisy)) == INCONCLUSIVE


def _sizes(vit, bit):
    return {m: {"vit": [around(v) for v in vit], "bit": [around(r) for r in bit]} for m in data_size.METRICS}


@pytest.mark.parametrize("vit, bit, expected", [
    ([0.50, 0.70, 0.85], [0.60, 0.72, 0.80], HOLDS),     # ResNet first, ViT overtakes
    ([0.65, 0.75, 0.80], [0.60, 0.72, 0.85], FAILS),     # ViT ahead on the smallest set
    ([0.50, 0.60, 0.65], [0.60, 0.70, 0.80], FAILS),     # the gap widens instead of closing
])
def test_data_size_rule(vit, bit, expected):
    assert verdict(data_size.decide([100, 300, 1000], _sizes(vit, bit))) == expected


def test_compute_rule_compares_families_at_equal_compute():
    curves = {"vit": ([1.0, 4.0, 16.0], [around(0.80), around(0.85), around(0.90)]),
              "bit": ([1.0, 4.0, 16.0], [around(0.75), around(0.80), around(0.85)]),
              "hybrid": ([1.0, 16.0], [around(0.84), around(0.905)])}
    assert verdict(compute.decide(curves)) == HOLDS
    curves["bit"] = ([1.0, 4.0, 16.0], [around(0.85), around(0.90), around(0.95)])  # ResNet above ViT everywhere
    conditions = compute.decide(curves)
    assert conditions[0].outcome is False and verdict(conditions) == FAILS
    far = dict(curves, bit=([100.0, 400.0], [around(0.8), around(0.9)]))  # no overlap: nothing to compare
    assert compute.decide(far)[0].outcome is None


@pytest.mark.parametrize("token, gap, expected", [
    ([0.70, 0.80, 0.74], [0.79, 0.72, 0.60], HOLDS),   # both ~0.80, best at different rates, swapping hurts
    ([0.70, 0.80, 0.74], [0.60, 0.70, 0.65], FAILS),   # GAP clearly worse even at its best
    ([0.70, 0.80, 0.74], [0.70, 0.80, 0.74], FAILS),   # the same rate is clearly best for both
])
def test_class_token_vs_gap_rule(token, gap, expected):
    conditions, best = classifier.decide([1e-4, 3e-4, 1e-3], {"token": [around(v) for v in token],
                                                              "gap": [around(v) for v in gap]})
    assert verdict(conditions) == expected
    assert best["token"] == int(np.argmax(token))


def test_attention_distance_rule():
    layers = np.linspace(2.0, 8.0, 4)[None, :, None] + np.zeros((3, 4, 2))
    trained = layers + np.random.default_rng(0).normal(0, 0.05, layers.shape)
    random = 5.0 + np.random.default_rng(1).normal(0, 0.05, layers.shape)
    assert verdict(attention_distance.decide(trained, random, stride=4)) == HOLDS
    assert verdict(attention_distance.decide(trained[:, ::-1], random, stride=4)) == FAILS  # shrinking


def test_small_data_rule():
    results = {small_data.DEFAULT: around(0.50), small_data.RECIPE: around(0.97), "no label smoothing":
               around(0.965), "+ RandAugment": around(0.90)}
    assert verdict(small_data.decide(results, around(0.93), around(0.96), around(0.93))) == HOLDS
    better = dict(results, **{"no label smoothing": around(0.985)})  # a change beats the preset
    conditions = small_data.decide(better, around(0.93), around(0.96), around(0.93))
    assert conditions[3].outcome is False and verdict(conditions) == FAILS
    assert small_data.decide(results, around(0.99), around(0.96), around(0.93))[2].outcome is False


@pytest.mark.parametrize("mpp, scratch, supervised, expected", [
    (0.92, 0.90, 0.96, HOLDS),          # the paper's shape: +2 points over scratch, behind supervised
    (0.90, 0.90, 0.96, FAILS),          # no gain over training from scratch
    (0.97, 0.90, 0.96, FAILS),          # ahead of supervised pre-training
    (0.904, 0.90, 0.96, INCONCLUSIVE),  # a gain inside the seeds' noise
])
def test_self_supervision_conditions(mpp, scratch, supervised, expected):
    finetuned = {"mpp": around(mpp), "scratch": around(scratch), "supervised": around(supervised)}
    assert verdict(self_supervision.decide(finetuned)) == expected
