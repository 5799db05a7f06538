"""Table 8 / App. D.4 in miniature: which position embedding a ViT uses matters little; having none hurts.

Experiment: the budget's ViT is pre-trained once per kind of position embedding (none, learned
1-D, learned 2-D, relative) and seed, with everything else equal; the measure is the paper's,
few-shot linear accuracy of the frozen representation on the transfer set (the upstream test
accuracy is reported beside it).
"""

from __future__ import annotations

from pathlib import Path

from vitkit.studies.reproduce.claim import Claim, ClaimResult, PaperReference, Plot
from vitkit.studies.reproduce.plots import bars
from vitkit.studies.reproduce.stats import Condition, Summary, ahead, all_of, equivalent, interval_text, level, pp

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
    upstream: dict[str, Summary] = {}
    for kind in KINDS:
        runs = [lab.pretrain(b.vit, seed, posemb=kind, label=f"vit posemb {kind} seed {seed}")
                for seed in range(b.seeds)]
        fewshot[kind] = Summary.of(lab.fewshot(r, seed) for seed, r in enumerate(runs))
        upstream[kind] = Summary.of(r.metrics["test_top1"] for r in runs)

    conditions = decide(fewshot)
    rows = [{"setting": KINDS[k][0], "paper": f"{100 * KINDS[k][1]:.2f}%", "few-shot": fewshot[k].text(),
             "upstream top-1": upstream[k].text()} for k in KINDS]
    plot = plot_dir / "posemb.png"
    bars([KINDS[k][0] for k in KINDS], [fewshot[k] for k in KINDS], plot,
         ylabel=f"{b.shots}-shot linear accuracy (%)", title="Position embeddings (Table 8 in miniature)")
    return ClaimResult(
        setup=(f"{b.vit['model']} {b.vit['model_options']} pre-trained on {lab.pretrain_data} "
               f"({lab.pretrain_size} images, {b.image_size} px) with each position embedding; measure: "
               f"{b.shots}-shot linear accuracy on {lab.transfer_data} (frozen features, {b.draws} draws), "
               f"{b.seeds} seeds"),
        rows=rows, conditions=conditions,
        summaries={"fewshot": {k: s.to_dict() for k, s in fewshot.items()},
                   "upstream_top1": {k: s.to_dict() for k, s in upstream.items()}},
        plots=[Plot(plot.name, "Few-shot linear accuracy per kind of position embedding (bars: mean and std "
                               "over seeds; dots: seeds).")])


SHORT = {"none": "none", "learned_1d": "1-D", "learned_2d": "2-D", "relative": "rel."}


def headline(result: ClaimResult) -> str:
    s = result.summaries["fewshot"]
    return ", ".join(f"{SHORT[k]} {100 * s[k]['mean']:.1f}%" for k in KINDS)


CLAIM = Claim("posemb", "Position embeddings: none is worse, the kinds are alike", PAPER, run, headline)
