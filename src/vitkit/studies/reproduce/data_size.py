"""Fig. 3 / Fig. 4 (§4.2) in miniature: ResNets win on little pre-training data, ViT catches up with more.

Experiment: the budget's ViT and BiT ResNet (about the same compute per image) are pre-trained on
nested, class-balanced subsets of the pre-training set, at least four sizes over at least 1.5 decades in
the ``small`` budget and above. Each subset holds out a validation split of its own images and trains with
early stopping on it (:mod:`vitkit.train.early_stop`): every subset may take the number of steps the full
set gets in ``pretrain_epochs`` (the smaller sets are seen for more epochs, as the paper's subsets are
trained with the same hyper-parameters), and each run's model is its best evaluation on its validation
split, so a small subset is not scored after it has over-fitted for hundreds of epochs (size would be
confounded with over-fitting). Each run is gated (validation accuracy well above chance, and early stopping
or a plateaued loss). Each pre-trained model is measured twice on the transfer set: few-shot linear
accuracy of the frozen features (Fig. 4: far from the ceiling, the curve that can show a slope) and
accuracy after fine-tuning (Fig. 3). "ViT catches up" is the slope of log error against log data, steeper
for ViT than for the ResNet, and undecided where a curve is at its ceiling; where the curves would cross is
reported only as an extrapolation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vitkit.studies.reproduce.claim import Claim, ClaimResult, PaperReference, Plot
from vitkit.studies.reproduce.lab import FAMILY_NAMES
from vitkit.studies.reproduce.plots import curves
from vitkit.studies.reproduce.stats import Condition, Summary, ahead, interval_text, level, pp

MIN_EFFECT = 0.005
METRICS = {"fewshot": "few-shot linear (Fig. 4)", "finetune": "fine-tuned (Fig. 3)"}

PAPER = PaperReference(
    source="Fig. 3 and Fig. 4 (§4.2); Table 5",
    statement=("Pre-trained on the smallest data sets, ViT underperforms ResNets (BiT) of comparable cost; as the "
               "pre-training set grows, ViT catches up and overtakes them. \"ViT-B/32 is slightly faster than "
               "ResNet50; it performs much worse on the 9M subset, but better on 90M+ subsets\" (Fig. 4, JFT "
               "subsets, 5-shot linear on ImageNet)."),
    numbers=(
        {"setting": "ViT-B/16, pre-trained on ImageNet", "value": 77.91, "unit": "% ImageNet top-1 (Table 5)"},
        {"setting": "ViT-B/16, pre-trained on ImageNet-21k", "value": 83.97, "unit": "% ImageNet top-1 (Table 5)"},
        {"setting": "ViT-B/16, pre-trained on JFT-300M", "value": 84.15, "unit": "% ImageNet top-1 (Table 5)"},
        {"setting": "ViT-L/16, pre-trained on ImageNet", "value": 76.53, "unit": "% ImageNet top-1 (Table 5)"},
        {"setting": "ViT-L/16, pre-trained on JFT-300M", "value": 87.12, "unit": "% ImageNet top-1 (Table 5)"},
    ),
    note="The BiT curves of Fig. 3 and all of Fig. 4 are plots; the paper prints no numbers for them.",
)


#: accuracy at or above which a curve is at its ceiling: the error left is too small for its slope to mean anything
CEILING = 0.95
#: the smallest error a slope is computed from (an accuracy of 100% would make log(error) infinite)
ERROR_FLOOR = 1e-4


def error_slopes(sizes: list[int], curve: list[Summary]) -> Summary:
    """Per seed, the least-squares slope of log(1 - accuracy) against log(pre-training images): how fast the
    error falls with data (more negative: faster)."""
    logs = np.log(np.asarray(sizes, dtype=float))
    seeds = min(s.n for s in curve)
    slopes = []
    for k in range(seeds):
        errors = np.log(np.maximum([1.0 - s.values[k] for s in curve], ERROR_FLOOR))
        slopes.append(float(np.polyfit(logs, errors, 1)[0]))
    return Summary.of(slopes)


def crossover(sizes: list[int], vit: list[Summary], bit: list[Summary]) -> str:
    """Where the two mean log-error lines cross, said as what it is: an extrapolation of the fitted lines."""
    logs = np.log(np.asarray(sizes, dtype=float))
    fits = {name: np.polyfit(logs, np.log(np.maximum([1.0 - s.mean for s in c], ERROR_FLOOR)), 1)
            for name, c in (("vit", vit), ("bit", bit))}
    (bv, av), (bb, ab) = fits["vit"], fits["bit"]
    if bv >= bb:
        return "the fitted lines do not cross beyond the data (ViT's error does not fall faster)"
    return f"the fitted lines cross at about {math.exp((ab - av) / (bv - bb)):.3g} images (an extrapolation)"


def decide(sizes: list[int], results: dict[str, dict[str, list[Summary]]]) -> list[Condition]:
    """Per metric (keys of :data:`METRICS`): ResNet ahead on the smallest set; ViT's error falling faster
    with data than the ResNet's (a steeper slope of log error against log images), undecided where a
    curve reaches the ceiling (:data:`CEILING`: a gap that closes because both are near 100% says nothing).
    ``results[metric][family]`` holds one summary per pre-training size, families "vit" and "bit"."""
    conditions = []
    family = 2 * len(METRICS)  # two comparisons per metric
    for metric, name in METRICS.items():
        vit, bit = results[metric]["vit"], results[metric]["bit"]
        conditions.append(Condition(
            f"{name}: ResNet ahead of ViT on the smallest pre-training set ({sizes[0]} images)",
            f"ResNet - ViT: {level(family)} above 0 and the difference > {pp(MIN_EFFECT)}",
            ahead(bit[0], vit[0], MIN_EFFECT, family),
            f"ResNet {bit[0].text()} vs ViT {vit[0].text()}: {interval_text(bit[0], vit[0], family)}"))
        vit_slope, bit_slope = error_slopes(sizes, vit), error_slopes(sizes, bit)
        top = max(s.mean for s in [*vit, *bit])
        outcome = None if top >= CEILING else ahead(bit_slope, vit_slope, 0.0, family)
        ceiling = f"; at the ceiling ({100 * top:.1f}% >= {100 * CEILING:g}%): undecided" if top >= CEILING else ""
        conditions.append(Condition(
            f"{name}: ViT catches up as pre-training data grows (its error falls faster)",
            f"slope of log(error) against log(images), ResNet - ViT: {level(family)} above 0; undecided when any "
            f"mean accuracy reaches {100 * CEILING:g}% (a ceiling, not catching up)", outcome,
            f"slopes: ViT {vit_slope.text(1.0, 3, '')}, ResNet {bit_slope.text(1.0, 3, '')}{ceiling}; "
            + crossover(sizes, vit, bit),
            {"vit_slope": vit_slope.to_dict(), "bit_slope": bit_slope.to_dict()}))
    return conditions


def run(lab, plot_dir: Path) -> ClaimResult:
    b = lab.budget
    families = {"vit": b.vit, "bit": b.bit}
    sizes: list[int] = []
    results: dict[str, dict[str, list[Summary]]] = {m: {f: [] for f in families} for m in METRICS}
    gates = []
    steps = lab.steps_for(lab.pretrain_size, b.data_epochs or b.pretrain_epochs, b.batch_size)
    sources = {fraction: lab.subset_validation_source(fraction) for fraction in b.data_fractions}

    def pretrain_and_finetune(fraction: float, family: str, seed: int):
        source = sources[fraction]  # (spec, the images a run trains on: the subset less its validation split)
        run = lab.pretrain(families[family], seed, source=source, epochs=steps * b.batch_size / source[1],
                           early_stop=b.data_patience, label=f"{family} {source[1]} images seed {seed}")
        lab.finetune(run, seed)
        return run

    trained = lab.parallel(pretrain_and_finetune, [(fraction, family, seed) for fraction in b.data_fractions
                                                   for family in families for seed in range(b.seeds)])
    for fraction in b.data_fractions:
        images = sources[fraction][1]
        sizes.append(images)
        for family, arch in families.items():
            runs = [trained[fraction, family, seed] for seed in range(b.seeds)]
            gates += [lab.gate(r, f"{FAMILY_NAMES[arch['model']]} on {images} images seed {s}")
                      for s, r in enumerate(runs)]
            results["fewshot"][family].append(Summary.of(lab.fewshot(r, s) for s, r in enumerate(runs)))
            results["finetune"][family].append(Summary.of(lab.finetune(r, s) for s, r in enumerate(runs)))

    conditions = decide(sizes, results)
    rows = []
    for i, n in enumerate(sizes):
        row = {"setting": f"{n} pre-training images"}
        for metric, name in METRICS.items():
            for family in families:
                row[f"{FAMILY_NAMES[families[family]['model']]} {name.split(' (')[0]}"] = \
                    results[metric][family][i].text()
        rows.append(row)
    plot = plot_dir / "data_size.png"
    panels = {name: {FAMILY_NAMES[families[f]["model"]]: (sizes, results[m][f]) for f in families}
              for m, name in METRICS.items()}
    curves({}, plot, xlabel="pre-training images", ylabel=f"{lab.transfer_data} accuracy (%)", title="",
           panels=panels)
    return ClaimResult(
        setup=(f"ViT {b.vit['model_options']} and BiT {b.bit['model_options']} pre-trained on {sizes} images of "
               f"{lab.pretrain_data} (nested class-balanced subsets, {100 * b.validation_share:g}% of each held out "
               f"for early stopping after {b.data_patience} evaluations without a better one, at most {steps} "
               f"steps each); transfer to "
               f"{lab.transfer_data}: {b.shots}-shot linear and fine-tuned ({b.finetune_epochs} epochs, SGD lr "
               f"{b.finetune_lr}); {b.seeds} seeds"),
        rows=rows, conditions=conditions, gates=gates,
        summaries={"sizes": sizes, **{m: {f: [s.to_dict() for s in results[m][f]] for f in families}
                                      for m in METRICS}},
        plots=[Plot(plot.name, "Transfer accuracy against the number of pre-training images: few-shot linear "
                               "(Fig. 4) and fine-tuned (Fig. 3); mean and std over seeds.")])


def headline(result: ClaimResult) -> str:
    s, sizes = result.summaries["finetune"], result.summaries["sizes"]
    return (f"fine-tuned, ViT - ResNet: {100 * (s['vit'][0]['mean'] - s['bit'][0]['mean']):+.1f} pt at {sizes[0]} "
            f"images, {100 * (s['vit'][-1]['mean'] - s['bit'][-1]['mean']):+.1f} pt at {sizes[-1]}")


CLAIM = Claim("data-size", "More pre-training data: ResNets first, then ViT", PAPER, run, headline)
