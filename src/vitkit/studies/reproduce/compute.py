"""Fig. 5 (§4.4) in miniature: transfer accuracy against pre-training compute for ViT, ResNet, hybrid.

Experiment: three sizes of each family (the budget's ladders) are pre-trained on the whole
pre-training set for the same number of steps; pre-training compute is 3 x forward FLOPs
(vitkit.count_flops; the backward pass costs about twice the forward) x images seen. The measure
is the fine-tuned accuracy on the transfer set (Fig. 5 plots fine-tuned transfer accuracy).
Families are compared at equal compute by interpolating a family's curve (linear in log compute,
seed by seed) at the other family's compute, within the range it covers. Every pre-training run is gated
(its accuracy on the pre-training test split well above chance, its loss plateaued): a point of a curve
from a model that did not train would move the comparison by how far it got, not by its compute.
"""

from __future__ import annotations

from pathlib import Path

from vitkit.studies.reproduce.claim import Claim, ClaimResult, PaperReference, Plot
from vitkit.studies.reproduce.lab import FAMILY_NAMES
from vitkit.studies.reproduce.plots import curves
from vitkit.studies.reproduce.stats import Condition, Summary, ahead, all_of, interpolate_at, interval_text, level, pp

MIN_EFFECT = 0.005

PAPER = PaperReference(
    source="Fig. 5 (§4.4); Table 6 (App. D.5)",
    statement=("Pre-trained on JFT-300M, ViT dominates ResNets on the performance/compute trade-off, using about "
               "2-4x less compute for the same transfer accuracy (average over five data sets); hybrids slightly "
               "outperform ViT at small computational budgets, and the difference vanishes for larger models."),
    numbers=(
        {"setting": "ViT-L/16, 14 epochs: ImageNet fine-tuned / pre-training exaFLOPs", "value": "87.12 / 1567",
         "unit": "% / exaFLOPs (Table 6)"},
        {"setting": "ViT-H/14, 14 epochs", "value": "88.08 / 4262", "unit": "% / exaFLOPs (Table 6)"},
        {"setting": "ResNet200x3 (BiT), 14 epochs", "value": "87.22 / 3306", "unit": "% / exaFLOPs (Table 6)"},
    ),
    note=("The paper's comparison is at JFT-300M scale; Fig. 3/4 predict the opposite ordering on small "
          "pre-training sets, which is where the miniature is."),
)


def _at(curve: tuple[list[float], list[Summary]], x: float) -> Summary | None:
    return interpolate_at(x, curve[0], curve[1])


#: why Fig. 5's first comparison cannot be observed in the miniature (the claim's own note)
NOT_AT_THIS_SCALE = ("ViT dominating ResNets at equal compute is a JFT-300M result; on a few thousand images Fig. 3/4 "
                     "predict the opposite ordering, so this comparison says nothing about Fig. 5 here")


def _versus(name: str, a_name: str, a: tuple[list[float], list[Summary]], b_name: str,
            b: tuple[list[float], list[Summary]], points: list[int], family: int) -> Condition:
    """``a`` ahead of ``b`` at each chosen point of ``a``, ``b`` interpolated at the same compute."""
    outcomes, parts = [], []
    for i in points:
        other = _at(b, a[0][i])
        if other is None:
            parts.append(f"{a_name} at {a[0][i]:.3g} TFLOPs: outside the {b_name} range")
            continue
        outcomes.append(ahead(a[1][i], other, MIN_EFFECT, family))
        parts.append(f"{a_name} - {b_name} at {a[0][i]:.3g} TFLOPs: {interval_text(a[1][i], other, family)}")
    return Condition(name, f"{a_name} - interpolated {b_name}: {level(family)} above 0 and the difference > "
                           f"{pp(MIN_EFFECT)} at each compared point (points outside the other curve's compute range "
                           f"are skipped)", all_of(outcomes) if outcomes else None, "; ".join(parts))


def decide(curves_by_family: dict[str, tuple[list[float], list[Summary]]]) -> list[Condition]:
    """Fig. 5's three conditions from ``{family: (compute per size, accuracy per size)}`` for "vit",
    "bit" and "hybrid" (sizes in increasing compute). The first (ViT ahead of ResNets) is computed and
    shown but set aside as not testable at this scale (:data:`NOT_AT_THIS_SCALE`); the verdict rests on
    the hybrid's advantage at small compute and its shrinking with size."""
    vit, bit, hyb = curves_by_family["vit"], curves_by_family["bit"], curves_by_family["hybrid"]
    family = 2  # the two tested comparisons; the set-aside one is shown at the same level
    c1 = _versus("ViT ahead of ResNet at equal pre-training compute", "ViT", vit, "ResNet", bit,
                 list(range(len(vit[0]))), family)
    c1.not_testable = NOT_AT_THIS_SCALE
    c2 = _versus("hybrid ahead of ViT at the smallest budget", "hybrid", hyb, "ViT", vit, [0], family)
    gaps = {}
    for i, x in enumerate(hyb[0]):
        other = _at(vit, x)
        if other is not None:
            gaps[i] = Summary.of(h - v for h, v in zip(hyb[1][i].values, other.values, strict=False))
    inside = sorted(gaps)
    if len(inside) < 2 or inside[0] != 0:
        c3_outcome, c3_detail = None, "fewer than two hybrid sizes (the smallest among them) lie in the ViT range"
    else:
        small, large = gaps[inside[0]], gaps[inside[-1]]
        c3_outcome = ahead(small, large, MIN_EFFECT, family)
        c3_detail = (f"hybrid - ViT: {pp(small.mean)} at the smallest hybrid, {pp(large.mean)} at size "
                     f"{inside[-1] + 1} of {len(hyb[0])} (the largest inside the ViT compute range); difference "
                     f"{interval_text(small, large, family)}")
    c3 = Condition("the hybrid's advantage shrinks for larger models",
                   f"(hybrid - ViT) at the smallest hybrid minus (hybrid - ViT) at the largest hybrid inside the "
                   f"ViT compute range: {level(family)} above 0 and > {pp(MIN_EFFECT)}", c3_outcome, c3_detail)
    return [c1, c2, c3]


def run(lab, plot_dir: Path) -> ClaimResult:
    b = lab.budget
    ladders = {"vit": b.vit_ladder, "bit": b.bit_ladder, "hybrid": b.hybrid_ladder}
    curves_by_family: dict[str, tuple[list[float], list[Summary]]] = {}
    fewshot: dict[str, list[Summary]] = {}
    rows, gates = [], []
    def pretrain_and_finetune(family: str, rung: int, seed: int):
        run = lab.pretrain(ladders[family][rung], seed, label=f"{family} size {rung} seed {seed}")
        lab.finetune(run, seed)
        return run

    trained = lab.parallel(pretrain_and_finetune, [(family, rung, seed) for family, ladder in ladders.items()
                                                   for rung in range(len(ladder)) for seed in range(b.seeds)])
    for family, ladder in ladders.items():
        xs, accs, shots = [], [], []
        for rung, arch in enumerate(ladder):
            runs = [trained[family, rung, seed] for seed in range(b.seeds)]
            gates += [lab.gate(r, f"{FAMILY_NAMES[arch['model']]} size {rung + 1} seed {s}")
                      for s, r in enumerate(runs)]
            xs.append(runs[0].train_tflops)
            accs.append(Summary.of(lab.finetune(r, s) for s, r in enumerate(runs)))
            shots.append(Summary.of(lab.fewshot(r, s) for s, r in enumerate(runs)))
            rows.append({"setting": f"{FAMILY_NAMES[arch['model']]} {arch['model_options']}",
                         "forward MFLOPs/image": f"{runs[0].gflops_per_image * 1e3:.2f}",
                         "pre-training TFLOPs": f"{xs[-1]:.3g}", "fine-tuned": accs[-1].text(),
                         "few-shot": shots[-1].text()})
        curves_by_family[family] = (xs, accs)
        fewshot[family] = shots

    conditions = decide(curves_by_family)
    plot = plot_dir / "compute.png"
    names = {f: FAMILY_NAMES[ladders[f][0]["model"]] for f in ladders}
    curves({}, plot, xlabel="pre-training compute (TFLOPs)", ylabel=f"{lab.transfer_data} accuracy (%)", title="",
           panels={"fine-tuned": {names[f]: curves_by_family[f] for f in ladders},
                   f"{b.shots}-shot linear": {names[f]: (curves_by_family[f][0], fewshot[f]) for f in ladders}})
    return ClaimResult(
        setup=(f"three sizes per family pre-trained on {lab.pretrain_data} ({lab.pretrain_size} images, "
               f"{b.image_size} px, {b.pretrain_epochs} epochs); fine-tuned on {lab.transfer_data} "
               f"({b.finetune_epochs} epochs); {b.seeds} seeds"),
        rows=rows, conditions=conditions, gates=gates,
        summaries={f: {"tflops": curves_by_family[f][0], "finetune": [s.to_dict() for s in curves_by_family[f][1]],
                       "fewshot": [s.to_dict() for s in fewshot[f]]} for f in ladders},
        plots=[Plot(plot.name, "Transfer accuracy against pre-training compute for the three families (mean and "
                               "std over seeds).")])


def headline(result: ClaimResult) -> str:
    s = result.summaries
    return ", ".join(f"{name} {100 * s[f]['finetune'][-1]['mean']:.1f}%" for f, name in
                     (("vit", "ViT"), ("bit", "ResNet"), ("hybrid", "hybrid"))) + " (largest of each, fine-tuned)"


CLAIM = Claim("compute", "Accuracy against pre-training compute: ViT, ResNet, hybrid", PAPER, run, headline)
