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
    stats,
)
from vitkit.studies.reproduce.stats import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Condition,
    Gate,
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


def test_intervals_are_welch_t_intervals_with_scipys_numbers():
    a, b = around(0.80, 0.01), around(0.78, 0.01)  # diff 0.02, se of the difference 0.01*sqrt(2/3) = 0.0082
    # scipy's Welch test on the same seeds: df 4, the two-sided 95% interval 0.02 +- 2.776 * 0.0082
    welch = scipy_stats.ttest_ind(a.values, b.values, equal_var=False)
    low, high = welch.confidence_interval(0.95)
    assert stats.welch_df(a, b) == pytest.approx(welch.df)
    assert stats.half_width(a, b) == pytest.approx((high - low) / 2)
    assert stats.half_width(a, b, family=5) == pytest.approx(
        (lambda ci: (ci.high - ci.low) / 2)(welch.confidence_interval(1 - 0.05 / 5)))
    assert welch.pvalue > 0.05 and ahead(a, b) is None  # 2 SE (0.016) would have called it: 3 seeds cannot
    c, d = around(0.80, 0.005), around(0.78, 0.005)
    assert scipy_stats.ttest_ind(c.values, d.values, equal_var=False).pvalue < 0.05
    assert ahead(c, d) is True and ahead(d, c) is False
    assert ahead(c, d, min_effect=0.03) is None  # 0.02 in [0.0087, 0.0313]: may or may not reach 0.03
    assert ahead(c, d, min_effect=0.05) is False  # upper end below 0.05: certainly not ahead by that much
    assert ahead(c, d, family=1000) is None  # the same numbers among a thousand comparisons: not enough
    assert ahead(around(0.80, 0.03), around(0.78, 0.03)) is None
    assert ahead(Summary.of([0.9]), Summary.of([0.1])) is None  # one seed decides nothing
    # a constant reference leaves the other side's n - 1 degrees of freedom (scipy's one-sample t)
    one = scipy_stats.ttest_1samp(c.values, 0.78)
    assert stats.half_width(c, Summary.of([0.78] * 3)) == pytest.approx(
        (lambda ci: (ci.high - ci.low) / 2)(one.confidence_interval(0.95)))
    assert equivalent(around(0.80, 0.001), around(0.801, 0.001), margin=0.01) is True
    assert equivalent(around(0.80, 0.001), around(0.85, 0.001), margin=0.01) is False
    assert equivalent(around(0.80, 0.02), around(0.80, 0.02), margin=0.01) is None
    assert "97.5% Welch t interval" in stats.level(2) and "2 comparisons" in stats.level(2)


def test_verdict_is_three_valued():
    met, failed, open_ = (Condition("c", "r", o) for o in (True, False, None))
    assert verdict([met, met]) == HOLDS
    assert verdict([met, open_]) == INCONCLUSIVE
    assert verdict([open_, failed, met]) == FAILS
    # an undecided verdict from arms that all trained says so, and names what the intervals left open
    named = Condition("ViT ahead of the MLP", "r", None)
    assert stats.verdict_text([met, named], [Gate("a", True, "")]) == \
        "inconclusive: every arm trained; undecided: ViT ahead of the MLP"
    assert stats.verdict_text([met, named], [Gate("a", False, "x")]) == "inconclusive: arm a did not train (x)"


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
    # ViT behind ResNets is computed and shown, but not testable at this data scale: no "does not hold" from it
    assert conditions[0].outcome is False and conditions[0].not_testable and verdict(conditions) == HOLDS
    assert verdict(conditions[:1]) == stats.NOT_TESTABLE
    assert stats.verdict_text(conditions[:1]).startswith("not testable at this scale: ViT dominating ResNets")
    weaker_hybrid = dict(curves, hybrid=([1.0, 16.0], [around(0.70), around(0.905)]))  # hybrid behind at small compute
    assert compute.decide(weaker_hybrid)[1].outcome is False and verdict(compute.decide(weaker_hybrid)) == FAILS
    far = dict(curves, bit=([100.0, 400.0], [around(0.8), around(0.9)]))  # no overlap: nothing to compare
    assert compute.decide(far)[0].outcome is None


@pytest.mark.parametrize("token, gap, expected", [
    ([0.70, 0.80, 0.74], [0.79, 0.72, 0.60], HOLDS),   # both ~0.80, best at different rates, swapping hurts
    ([0.70, 0.80, 0.74], [0.60, 0.70, 0.65], FAILS),   # GAP clearly worse even at its best
    ([0.70, 0.80, 0.74], [0.70, 0.80, 0.74], FAILS),   # the same rate is clearly best for both
])
def test_class_token_vs_gap_rule(token, gap, expected):
    acc = {"token": [around(v) for v in token], "gap": [around(v) for v in gap]}
    conditions, best = classifier.decide([1e-4, 3e-4, 1e-3], acc, acc)
    assert verdict(conditions) == expected
    assert best["token"] == int(np.argmax(token))


def test_class_token_vs_gap_checks_fig9s_direction_and_chooses_on_the_validation_split():
    lrs = [1e-4, 3e-4, 1e-3]
    # the reverse of Fig. 9: the token best at the lowest rate, GAP at the highest -- never "holds"
    reversed_ = {"token": [around(v) for v in (0.80, 0.74, 0.70)], "gap": [around(v) for v in (0.60, 0.72, 0.79)]}
    conditions, best = classifier.decide(lrs, reversed_, reversed_)
    assert best == {"token": 0, "gap": 2} and conditions[1].outcome is False and verdict(conditions) == FAILS
    # the best rate comes from the validation numbers, not from the scored ones (no winner's curse)
    scored = {"token": [around(v) for v in (0.70, 0.80, 0.74)], "gap": [around(v) for v in (0.79, 0.72, 0.60)]}
    validation = {"token": [around(v) for v in (0.9, 0.5, 0.5)], "gap": [around(v) for v in (0.9, 0.5, 0.5)]}
    conditions, best = classifier.decide(lrs, scored, validation)
    assert best == {"token": 0, "gap": 0} and verdict(conditions) != HOLDS


def test_attention_distance_rule():
    layers = np.linspace(2.0, 8.0, 4)[None, :, None] + np.zeros((3, 4, 2))
    trained = layers + np.random.default_rng(0).normal(0, 0.05, layers.shape)
    random = 5.0 + np.random.default_rng(1).normal(0, 0.05, layers.shape)
    assert verdict(attention_distance.decide(trained, random, stride=4)) == HOLDS
    assert verdict(attention_distance.decide(trained[:, ::-1], random, stride=4)) == FAILS  # shrinking


def test_small_data_rule():
    results = {small_data.DEFAULT: around(0.50), small_data.RECIPE: around(0.97), "no label smoothing":
               around(0.965), "+ RandAugment": around(0.90)}
    assert verdict(small_data.decide(results, around(0.93), around(0.96), around(0.93), validation=results)) == HOLDS
    better = dict(results, **{"no label smoothing": around(0.985)})  # a change beats the preset
    conditions = small_data.decide(better, around(0.93), around(0.96), around(0.93), validation=better)
    assert conditions[3].outcome is False and verdict(conditions) == FAILS
    assert small_data.decide(results, around(0.99), around(0.96), around(0.93),
                             validation=results)[2].outcome is False


@pytest.mark.parametrize("mpp, scratch, supervised, expected", [
    (0.92, 0.90, 0.96, HOLDS),          # the paper's shape: +2 points over scratch, behind supervised
    (0.895, 0.90, 0.96, FAILS),         # no gain over training from scratch
    (0.97, 0.90, 0.96, FAILS),          # ahead of supervised pre-training
    (0.904, 0.90, 0.96, INCONCLUSIVE),  # a gain inside the seeds' noise
])
def test_self_supervision_conditions(mpp, scratch, supervised, expected):
    finetuned = {"mpp": around(mpp), "scratch": around(scratch), "supervised": around(supervised)}
    assert verdict(self_supervision.decide(finetuned)) == expected


def test_data_size_at_the_ceiling_never_holds():
    # ViT 90 -> 98.5%, ResNet 97 -> 99%: the gap closes because both reach 100%, not because ViT catches up
    conditions = data_size.decide([500, 4000], _sizes([0.90, 0.985], [0.97, 0.99]))
    assert conditions[1].outcome is None and "ceiling" in conditions[1].detail and verdict(conditions) != HOLDS


def test_data_size_catching_up_is_a_steeper_error_slope_with_the_crossover_as_an_extrapolation():
    conditions = data_size.decide([100, 300, 1000, 3000], _sizes([0.50, 0.62, 0.72, 0.80], [0.60, 0.66, 0.71, 0.75]))
    assert conditions[1].outcome is True and "extrapolation" in conditions[1].detail
    assert conditions[1].numbers["vit_slope"]["mean"] < conditions[1].numbers["bit_slope"]["mean"] < 0


def test_small_data_without_evidence_is_not_non_superiority():
    results = {small_data.DEFAULT: around(0.50), small_data.RECIPE: around(0.97),
               "no label smoothing": around(0.99, 0.03)}  # 2 points above the preset, seeds far apart
    conditions = small_data.decide(results, around(0.93), around(0.96), around(0.93), validation=results)
    assert conditions[3].outcome is None and verdict(conditions) == INCONCLUSIVE


def test_an_arm_that_did_not_train_makes_the_claim_inconclusive_with_its_numbers():
    finetuned = {"mpp": around(0.92), "scratch": around(0.90), "supervised": around(0.96)}
    conditions = self_supervision.decide(finetuned)
    assert verdict(conditions) == HOLDS
    # MPP on grayscale digits: 8 colours used, 60% of patches class 0; loss 3.78 nats against entropy 1.23
    counts = [600, 100, 100, 100, 50, 25, 15, 10] + [0] * 504
    untrained = stats.mpp_gate("mpp", colour_accuracy=0.55, loss=3.78, class_counts=counts)
    assert not untrained.passed and "marginal entropy" in untrained.detail
    assert verdict(conditions, [untrained]) == INCONCLUSIVE
    assert stats.verdict_text(conditions, [untrained]).startswith("inconclusive: arm mpp did not train (colour")
    failed = [Condition("c", "r", False)]
    assert verdict(failed, [untrained]) == INCONCLUSIVE  # never "does not hold" from an arm that did not train
    assert stats.mpp_gate("mpp", colour_accuracy=0.7, loss=1.0, class_counts=counts).passed


def test_supervised_gate_needs_accuracy_well_above_chance_and_a_plateaued_loss():
    flat = [2.3, 1.5, 1.0, 0.8, 0.7, 0.65, 0.64, 0.63, 0.63, 0.62, 0.62, 0.62]
    falling = [2.3, 2.2, 2.1, 2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3, 1.2]
    assert stats.supervised_gate("vit", 0.9, 10, flat).passed
    assert not stats.supervised_gate("vit", 0.28, 10, flat).passed  # 5-shot at 28%: barely above chance
    assert not stats.supervised_gate("vit", 0.9, 10, falling).passed  # still learning
    short = stats.supervised_gate("vit", 0.9, 10, flat[:4])
    assert not short.passed and "only 4 losses logged" in short.detail
    # a label-smoothed loss still creeping towards its floor after most of its fall has plateaued (the small
    # budget's preset on the folder: 10% of its value, 4% of its fall); a curve with 13% of its fall left has not
    smoothed = [2.24, 1.92, 1.62, 1.42, 1.2, 1.05, 0.94, 0.89, 0.84, 0.8, 0.75, 0.72, 0.72, 0.69, 0.67, 0.69, 0.65,
                0.64, 0.62, 0.62, 0.61, 0.6, 0.59, 0.58, 0.56]
    assert stats.plateaued(smoothed) is True
    assert stats.plateaued([2.3, 2.0, 1.8, 1.65, 1.55, 1.47, 1.42, 1.35, 1.3, 1.25, 1.2, 1.16]) is False
    assert stats.plateaued([2.3] * 12) is True  # never fell: flat (the accuracy half of the gate decides)
    # early stopping ended it (a data-size subset): trained as far as its validation split can tell, even with
    # its training loss still falling as it over-fits; the accuracy half still decides
    stopped = stats.supervised_gate("vit", 0.9, 10, falling, stopped_early=True)
    assert stopped.passed and "early stopping ended it" in stopped.detail
    assert not stats.supervised_gate("vit", 0.3, 10, falling, stopped_early=True).passed


def test_small_data_a_variant_two_points_above_the_preset_never_holds():
    results = {small_data.DEFAULT: around(0.50), small_data.RECIPE: around(0.95), "no label smoothing": around(0.95)}
    above = dict(results, **{"no label smoothing": around(0.97, 0.001)})  # 2 points above, seeds close together
    conditions = small_data.decide(results, around(0.90), around(0.96), around(0.93), validation=above)
    assert conditions[3].outcome is False and "better: no label smoothing" in conditions[3].detail
    assert verdict(conditions) == FAILS
    # significantly above by less than the margin, the interval reaching past it: measurably better, not "holds"
    assert stats.not_superior(around(0.958, 0.001), around(0.95, 0.001), margin=0.01) is False
    assert stats.not_superior(around(0.953, 0.001), around(0.95, 0.001), margin=0.01) is True  # inside the margin


def test_small_data_compares_the_variants_on_the_validation_split_not_the_test_split():
    test = {small_data.DEFAULT: around(0.50), small_data.RECIPE: around(0.95), "no drop path": around(0.99)}
    validation = dict(test, **{"no drop path": around(0.95)})  # the variant's lead is on the test split only
    conditions = small_data.decide(test, around(0.90), around(0.96), around(0.93), validation=validation)
    assert conditions[3].outcome is True and "+0.00 pt" in conditions[3].detail
    assert conditions[2].outcome is True and "95.0" in conditions[2].detail  # the MLP comparison: test numbers


def test_class_token_vs_gap_needs_gap_worse_at_the_tokens_rate():
    lrs = [1e-4, 3e-4, 1e-3]
    # the validation split puts GAP's best rate below the token's, but on the scored numbers GAP at the token's
    # rate is as good as at its own: the second half of Fig. 9 is not shown
    scored = {"token": [around(v) for v in (0.70, 0.74, 0.80)], "gap": [around(v) for v in (0.72, 0.79, 0.79)]}
    validation = {"token": [around(v) for v in (0.90, 0.93, 0.95)], "gap": [around(v) for v in (0.92, 0.95, 0.94)]}
    conditions, best = classifier.decide(lrs, scored, validation)
    assert best == {"token": 2, "gap": 1} and conditions[1].outcome is None and verdict(conditions) != HOLDS
    # the same with GAP clearly worse at the token's rate: holds
    scored["gap"] = [around(v) for v in (0.72, 0.79, 0.70)]
    assert verdict(classifier.decide(lrs, scored, validation)[0]) == HOLDS
    # reversed rates with GAP's drop in the reverse direction: GAP best at the highest rate never holds
    backwards = {"token": [around(v) for v in (0.80, 0.74, 0.70)], "gap": [around(v) for v in (0.70, 0.74, 0.79)]}
    conditions, best = classifier.decide(lrs, backwards, backwards)
    assert best == {"token": 0, "gap": 2} and verdict(conditions) != HOLDS


def test_a_fine_grid_design_whose_arms_did_not_train_is_inconclusive():
    fewshot = {k: around(m) for k, m in {"none": 0.60, "learned_1d": 0.70, "learned_2d": 0.702,
                                         "relative": 0.699}.items()}
    conditions = posemb.decide(fewshot)
    assert verdict(conditions) == HOLDS
    falling = [2.3 - 0.1 * i for i in range(24)]  # still learning when the 7x7 run stopped
    gates = [stats.supervised_gate(f"{name} seed 0", 0.9, 10, [2.3, 1.0, 0.5] + [0.4] * 21)
             for name in ("1-D Pos. Emb.", "2-D Pos. Emb.", "Rel. Pos. Emb.")]
    gates.append(stats.supervised_gate("No Pos. Emb. seed 0", 0.9, 10, falling))
    assert all(g.passed for g in gates[:3]) and not gates[3].passed
    assert verdict(conditions, gates) == INCONCLUSIVE
    assert stats.verdict_text(conditions, gates).startswith("inconclusive: arm No Pos. Emb. seed 0 did not train")
    assert stats.gate_cell(gates, "No Pos. Emb.") == "0 of 1 seeds"
    # a contradicted claim is inconclusive too when an arm did not train: never "does not hold" from it
    flat_none = {**fewshot, "none": around(0.70)}
    assert verdict(posemb.decide(flat_none)) == FAILS and verdict(posemb.decide(flat_none), gates) == INCONCLUSIVE
    # the attention-distance design on the same trained arms
    layers = np.linspace(2.0, 8.0, 3)[None, :, None] + np.zeros((3, 3, 2))
    distance = attention_distance.decide(layers + 0.01 * np.arange(3)[:, None, None], np.full((3, 3, 2), 5.0), 4)
    assert verdict(distance) == HOLDS and verdict(distance, gates[3:]) == INCONCLUSIVE
