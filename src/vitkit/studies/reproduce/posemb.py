"""Table 8 / App. D.4 in miniature: which position embedding a ViT uses matters little; having none hurts.

Design. App. D.4 explains why the kinds come out alike: at ViT's resolution the patches form a coarse
grid (14x14 at 224 px with 16-px patches), where "learning to represent the spatial relations is
equally easy" for 1-D, 2-D and relative embeddings, while none at all leaves a bag of patches and costs
about 3 points (Table 8). A miniature shows this only on a grid where the kinds *can* differ: on the
4x4 grid of 16-px digits a 1-D and a 2-D table of 16 positions are nearly one thing and relative
offsets span -3..3. So the experiment runs on the budget's finer grid (``grid_*``: MNIST at its own 28 px
in 4-px patches, 7x7 tokens, 13x13 relative offsets) -- the run Fig. 9 and Fig. 7 share -- and each
model is trained until its gate passes (:meth:`~vitkit.studies.reproduce.lab.Lab.gate`: validation
accuracy well above chance and a training loss that has plateaued), since Table 8 compares converged
ViT-B/16s, not arms stopped while still learning. An arm that did not train makes the claim
inconclusive, never "does not hold".

Experiment: the grid ViT is pre-trained once per kind of position embedding (none, learned 1-D,
learned 2-D, relative) and seed, with everything else equal, on the pre-training images left after a
validation split; the measure is the paper's, few-shot linear accuracy of the frozen representation on
the transfer set (the upstream validation and test accuracies are reported beside it).
"""

from __future__ import annotations

from pathlib import Path

from vitkit.studies.reproduce.claim import Claim, ClaimResult, PaperReference, Plot
from vitkit.studies.reproduce.plots import bars
from vitkit.studies.reproduce.stats import (
    Condition,
    Gate,
    Summary,
    ahead,
    all_of,
    equivalent,
    gate_cell,
    interval_text,
    level,
    pp,
)

#: vitkit's posemb kind -> the paper's row name and its Table 8 value (ViT-B/16, ImageNet 5-shot linear)
KINDS = {"none": ("No Pos. Emb.", 0.61382), "learned_1d": ("1-D Pos. Emb.", 0.64206),
         "learned_2d": ("2-D Pos. Emb.", 0.64001), "relative": ("Rel. Pos. Emb.", 0.64032)}
MIN_EFFECT = 0.01
MIN_MARGIN = 0.01

PAPER = PaperReference(
    source="Table 8 (App. D.4)",
    statement=("A ViT without position embeddings is clearly worse than with them; 1-D, 2-D and relative "
               "position embeddings perform about the same (ViT-B/16, ImageNet 5-shot linear accuracy)."),
    numbers=tuple({"setting": name, "value": round(100 * value, 3), "unit": "% ImageNet 5-shot linear, ViT-B/16"}
                  for name, value in KINDS.values()),
)


def decide(fewshot: dict[str, Summary]) -> list[Condition]:
    """The two conditions of Table 8 from the few-shot accuracy of each kind (keys of :data:`KINDS`)."""
    some = [k for k in KINDS if k != "none"]
    pairs = [(a, c) for i, a in enumerate(some) for c in some[i + 1:]]
    family = len(some) + len(pairs)  # every comparison below
    outcomes = {k: ahead(fewshot[k], fewshot["none"], MIN_EFFECT, family) for k in some}
    c1 = Condition(
        "no position embedding is clearly worse",
        f"each of 1-D, 2-D, relative ahead of none: {level(family)} above 0 and the difference > "
        f"{pp(MIN_EFFECT)}",
        all_of(outcomes.values()),
        "; ".join(f"{KINDS[k][0]} - none = {interval_text(fewshot[k], fewshot['none'], family)}" for k in some))
    gap = min(fewshot[k].mean for k in some) - fewshot["none"].mean
    margin = max(MIN_MARGIN, gap / 3)
    equal = {f"{a}~{c}": equivalent(fewshot[a], fewshot[c], margin, family) for a, c in pairs}
    c2 = Condition(
        "1-D, 2-D and relative are about equal",
        f"every pair within a margin of one third of the smallest gap to none (at least {pp(MIN_MARGIN)}): "
        f"{level(family)} inside (-margin, margin) (equal), wholly outside (they differ)",
        all_of(equal.values()), f"margin {pp(margin)}; " + "; ".join(
            f"{KINDS[a][0]} - {KINDS[c][0]} = {interval_text(fewshot[a], fewshot[c], family)}" for a, c in pairs),
        {"margin": margin})
    return [c1, c2]


def run(lab, plot_dir: Path) -> ClaimResult:
    b = lab.budget
    fewshot: dict[str, Summary] = {}
    validation: dict[str, Summary] = {}
    upstream: dict[str, Summary] = {}
    gates: list[Gate] = []
    trained = lab.parallel(lambda kind, seed: lab.grid_trained(seed, posemb=kind),
                           [(kind, seed) for kind in KINDS for seed in range(b.seeds)])
    epochs = {kind: [trained[kind, seed][1] for seed in range(b.seeds)] for kind in KINDS}
    for kind in KINDS:
        runs = [trained[kind, seed][0] for seed in range(b.seeds)]
        gates += [lab.gate(r, f"{KINDS[kind][0]} seed {seed}") for seed, r in enumerate(runs)]
        fewshot[kind] = Summary.of(lab.fewshot(r, seed) for seed, r in enumerate(runs))
        validation[kind] = Summary.of(r.metrics["test_top1"] for r in runs)
        upstream[kind] = Summary.of(lab.test_accuracy(r, "pretrain") for r in runs)

    conditions = decide(fewshot)
    rows = [{"setting": KINDS[k][0], "paper": f"{100 * KINDS[k][1]:.2f}%", "few-shot": fewshot[k].text(),
             "upstream validation top-1": validation[k].text(), "upstream test top-1": upstream[k].text(),
             "trained (gate)": gate_cell(gates, KINDS[k][0]), "epochs": ", ".join(f"{e:g}" for e in epochs[k])}
            for k in KINDS]
    plot = plot_dir / "posemb.png"
    bars([KINDS[k][0] for k in KINDS], [fewshot[k] for k in KINDS], plot,
         ylabel=f"{b.shots}-shot linear accuracy (%)", title="Position embeddings (Table 8 in miniature)")
    return ClaimResult(
        setup=(f"{b.grid_model['model']} {b.grid_model['model_options']} {lab.grid_setup()} with each position "
               f"embedding (a run whose gate failed trained afresh for {b.longer_schedules(b.grid_epochs)} epochs in "
               f"turn until it passed), "
               f"{100 * b.validation_share:g}% of each class held out as the validation split of its gate; "
               f"measure: {b.shots}-shot linear accuracy on {lab.transfer_data} (frozen features, {b.draws} draws), "
               f"{b.seeds} seeds"),
        rows=rows, conditions=conditions, gates=gates,
        summaries={"fewshot": {k: s.to_dict() for k, s in fewshot.items()},
                   "upstream_validation_top1": {k: s.to_dict() for k, s in validation.items()},
                   "upstream_top1": {k: s.to_dict() for k, s in upstream.items()}, "epochs": epochs},
        plots=[Plot(plot.name, "Few-shot linear accuracy per kind of position embedding (bars: mean and std "
                               "over seeds; dots: seeds).")])


SHORT = {"none": "none", "learned_1d": "1-D", "learned_2d": "2-D", "relative": "rel."}


def headline(result: ClaimResult) -> str:
    s = result.summaries["fewshot"]
    return ", ".join(f"{SHORT[k]} {100 * s[k]['mean']:.1f}%" for k in KINDS)


CLAIM = Claim("posemb", "Position embeddings: none is worse, the kinds are alike", PAPER, run, headline)
