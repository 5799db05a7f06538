"""§4.6 (App. B.1.2) in miniature: self-supervised pre-training by masked patch prediction.

The paper's claim: ViT-B/16 pre-trained by masked patch prediction reaches 79.9% on ImageNet after
fine-tuning, 2% better than training from scratch and 4% behind supervised pre-training.

Experiment: the budget's ViT (GAP classifier: masked patch prediction never trains a [class]
token's output) is pre-trained on the pre-training set without its labels by masked patch
prediction (:mod:`vitkit.objectives.mpp`, B.1.2's corruption, 3-bit mean-colour targets and its
Adam recipe at base lr 2e-4), with its labels (the supervised recipe of the other claims), or not
at all (the same architecture, randomly initialised); each is then fine-tuned on the transfer set
with the same schedule, several seeds. Few-shot linear accuracy of the frozen features is reported
beside (not part of the verdict: the paper's numbers are after fine-tuning).
"""

from __future__ import annotations

from pathlib import Path

from vitkit.studies.reproduce.claim import Claim, ClaimResult, PaperReference, Plot
from vitkit.studies.reproduce.plots import bars
from vitkit.studies.reproduce.stats import Condition, Summary, ahead, interval_text, level, pp

MIN_EFFECT = 0.005
ARMS = {"scratch": "from scratch (random init)", "mpp": "masked patch prediction (no labels)",
        "supervised": "supervised pre-training (labels)"}
#: App. B.1.2's base learning rate for masked patch prediction
MPP_LR = 2e-4

PAPER = PaperReference(
    source="§4.6; App. B.1.2",
    statement=("Masked patch prediction (50% of patch embeddings corrupted; predict each corrupted patch's 3-bit mean "
               "colour) lets ViT-B/16 reach 79.9% ImageNet accuracy: 2% above training from scratch, 4% below "
               "supervised pre-training."),
    numbers=({"setting": "ViT-B/16, masked patch prediction on JFT, fine-tuned", "value": 79.9,
              "unit": "% ImageNet top-1"},
             {"setting": "improvement over training from scratch", "value": 2.0, "unit": "points"},
             {"setting": "gap to supervised pre-training", "value": -4.0, "unit": "points"}),
)


def decide(finetuned: dict[str, Summary]) -> list[Condition]:
    """The paper's two conditions on the fine-tuned accuracies of the three arms."""
    family = 2
    gain = ahead(finetuned["mpp"], finetuned["scratch"], MIN_EFFECT, family)
    gap = ahead(finetuned["supervised"], finetuned["mpp"], MIN_EFFECT, family)
    rule = (f"{level(family)}: above 0 and the difference > {pp(MIN_EFFECT)} (true); its upper end < "
            f"{pp(MIN_EFFECT)} (false)")
    return [
        Condition("masked patch prediction beats training from scratch (after fine-tuning)", rule, gain,
                  f"{finetuned['mpp'].text()} vs {finetuned['scratch'].text()} "
                  f"({interval_text(finetuned['mpp'], finetuned['scratch'], family)})"),
        Condition("supervised pre-training stays ahead of masked patch prediction (after fine-tuning)", rule, gap,
                  f"{finetuned['supervised'].text()} vs {finetuned['mpp'].text()} "
                  f"({interval_text(finetuned['supervised'], finetuned['mpp'], family)})"),
    ]


def run(lab, plot_dir: Path) -> ClaimResult:
    b = lab.budget
    runs = {arm: [] for arm in ARMS}
    for seed in range(b.seeds):
        runs["scratch"].append(lab.initial(b.vit, seed, classifier="gap", label=f"vit gap init seed {seed}"))
        runs["mpp"].append(lab.pretrain(b.vit, seed, lr=MPP_LR, objective="mpp", classifier="gap",
                                        label=f"vit gap mpp seed {seed}"))
        runs["supervised"].append(lab.pretrain(b.vit, seed, classifier="gap", label=f"vit gap seed {seed}"))
    finetuned = {arm: Summary.of(lab.finetune(r, s) for s, r in enumerate(rs)) for arm, rs in runs.items()}
    fewshot = {arm: Summary.of(lab.fewshot(r, s) for s, r in enumerate(rs)) for arm, rs in runs.items()}
    rows = [{"setting": ARMS[arm], "fine-tuned": finetuned[arm].text(), f"{b.shots}-shot (frozen)": fewshot[arm].text()}
            for arm in ARMS]
    plot = plot_dir / "self_supervision.png"
    bars([ARMS[arm] for arm in ARMS], [finetuned[arm] for arm in ARMS], plot, ylabel="fine-tuned top-1 (%)",
         title="Masked patch prediction (§4.6 in miniature)")
    return ClaimResult(
        setup=(f"{b.vit['model_options']} with GAP, pre-trained on {lab.pretrain_data} by masked patch prediction "
               f"(no labels; Adam, lr {MPP_LR:g}) or supervised (lr {b.lr:g}), or randomly initialised; fine-tuned "
               f"on {lab.transfer_data} with one schedule; {b.seeds} seeds"),
        rows=rows, conditions=decide(finetuned),
        summaries={"finetuned": {arm: s.to_dict() for arm, s in finetuned.items()},
                   "fewshot": {arm: s.to_dict() for arm, s in fewshot.items()}},
        plots=[Plot(plot.name, "Fine-tuned accuracy on the transfer set after each kind of pre-training (mean and "
                               "std over seeds).")])


def headline(result: ClaimResult) -> str:
    s = result.summaries["finetuned"]
    return ", ".join(f"{name} {100 * s[arm]['mean']:.1f}%" for arm, name in
                     (("mpp", "MPP"), ("scratch", "scratch"), ("supervised", "supervised")))


CLAIM = Claim("self-supervision", "Self-supervised pre-training by masked patch prediction", PAPER, run, headline)
