"""Fig. 9 (App. D.3) in miniature: a [class] token and global average pooling both work, each at its own
learning rate.

Experiment: the budget's ViT is pre-trained with either classifier at a small grid of peak
learning rates (multiples of the budget's rate), several seeds each; the measure is few-shot
linear accuracy on the transfer set (Fig. 9 plots ImageNet 5-shot linear accuracy).
"""

from __future__ import annotations

from pathlib import Path

from vitkit.studies.reproduce.claim import Claim, ClaimResult, PaperReference, Plot
from vitkit.studies.reproduce.plots import curves
from vitkit.studies.reproduce.stats import Condition, Summary, ahead, equivalent, pp

#: two classifiers count as equally good when their best results are within this margin
MARGIN = 0.02
MIN_EFFECT = 0.005
NAMES = {"token": "class token", "gap": "GAP"}

PAPER = PaperReference(
    source="Fig. 9 (App. D.3)",
    statement=("Class-token and global-average-pooling classifiers work similarly well, but need different "
               "learning rates: GAP trained with the class token's learning rate is clearly worse."),
    numbers=(
        {"setting": "class token, learning rate", "value": 8e-4, "unit": "Adam peak lr (Fig. 9 legend)"},
        {"setting": "GAP, learning rate that works", "value": 3e-4, "unit": "Adam peak lr (Fig. 9 legend)"},
        {"setting": "GAP at the class token's rate", "value": 8e-4, "unit": "Adam peak lr, the worse curve"},
    ),
    note="Fig. 9 shows 5-shot linear ImageNet accuracy over training epochs as curves; it prints no accuracies.",
)


def decide(lrs: list[float], acc: dict[str, list[Summary]]) -> tuple[list[Condition], dict[str, int]]:
    """Fig. 9's two conditions from the accuracy of each classifier ("token", "gap") at each learning
    rate; also returns each classifier's best learning rate (its index)."""
    best = {c: max(range(len(lrs)), key=lambda i, c=c: acc[c][i].mean) for c in NAMES}

    c1 = Condition(
        "both classifiers work (each at its best learning rate)",
        f"best class token and best GAP within {pp(MARGIN)}: |difference| + 2 SE <= margin (equal), "
        f"|difference| - 2 SE > margin (not equal)",
        equivalent(acc["token"][best["token"]], acc["gap"][best["gap"]], MARGIN),
        f"class token {acc['token'][best['token']].text()} at lr {lrs[best['token']]:g}, GAP "
        f"{acc['gap'][best['gap']].text()} at lr {lrs[best['gap']]:g}")
    if best["token"] != best["gap"]:
        drops = {c: ahead(acc[c][best[c]], acc[c][best[other]], MIN_EFFECT)
                 for c, other in (("token", "gap"), ("gap", "token"))}
        outcome = True if any(d is True for d in drops.values()) else None
        detail = (f"best rates differ ({lrs[best['token']]:g} vs {lrs[best['gap']]:g}); at the other's best rate: "
                  + ", ".join(f"{NAMES[c]} {pp(acc[c][best[c]].mean - acc[c][best[o]].mean)} lower"
                              for c, o in (("token", "gap"), ("gap", "token"))))
    else:
        shared = best["token"]
        clear = [all(ahead(acc[c][shared], acc[c][i], MIN_EFFECT) is True for i in range(len(lrs)) if i != shared)
                 for c in NAMES]
        outcome = False if all(clear) else None
        detail = f"both are best at lr {lrs[shared]:g}" + (" (clearly, for both)" if all(clear) else "")
    c2 = Condition(
        "each needs its own learning rate",
        f"the best rates in the grid differ and one classifier is worse at the other's best rate by > 2 SE and > "
        f"{pp(MIN_EFFECT)} (true); both clearly best at the same rate (false); otherwise undecided",
        outcome, detail)
    return [c1, c2], best


def run(lab, plot_dir: Path) -> ClaimResult:
    b = lab.budget
    lrs = [b.lr * f for f in b.classifier_lr_factors]
    acc: dict[str, list[Summary]] = {c: [] for c in NAMES}
    upstream: dict[str, list[Summary]] = {c: [] for c in NAMES}
    for classifier in NAMES:
        for lr in lrs:
            runs = [lab.pretrain(b.vit, seed, lr=lr, classifier=classifier,
                                 label=f"vit {classifier} lr {lr:g} seed {seed}") for seed in range(b.seeds)]
            acc[classifier].append(Summary.of(lab.fewshot(r, s) for s, r in enumerate(runs)))
            upstream[classifier].append(Summary.of(r.metrics["test_top1"] for r in runs))
    conditions, best = decide(lrs, acc)
    rows = [{"setting": f"{NAMES[c]}, lr {lr:g}", "few-shot": acc[c][i].text(), "upstream top-1":
             upstream[c][i].text(), "best": "yes" if i == best[c] else ""} for c in NAMES for i, lr in enumerate(lrs)]
    plot = plot_dir / "classifier.png"
    curves({NAMES[c]: (lrs, acc[c]) for c in NAMES}, plot, xlabel="peak learning rate (AdamW)",
           ylabel=f"{b.shots}-shot linear accuracy (%)", title="Class token vs GAP (Fig. 9 in miniature)")
    return ClaimResult(
        setup=(f"{b.vit['model_options']} pre-trained on {lab.pretrain_data} with either classifier at peak "
               f"learning rates {', '.join(f'{lr:g}' for lr in lrs)}; {b.shots}-shot linear on "
               f"{lab.transfer_data}; {b.seeds} seeds"),
        rows=rows, conditions=conditions,
        summaries={"lrs": lrs, "best_lr": {c: lrs[best[c]] for c in NAMES},
                   **{c: [s.to_dict() for s in acc[c]] for c in NAMES}},
        plots=[Plot(plot.name, "Few-shot linear accuracy against the peak learning rate, per classifier (mean and "
                               "std over seeds).")])


def headline(result: ClaimResult) -> str:
    s = result.summaries
    parts = []
    for c in NAMES:
        i = s["lrs"].index(s["best_lr"][c])
        parts.append(f"{NAMES[c]} {100 * s[c][i]['mean']:.1f}% at lr {s['best_lr'][c]:g}")
    return ", ".join(parts)


CLAIM = Claim("classifier", "Class token and GAP: both work, at different learning rates", PAPER, run, headline)
