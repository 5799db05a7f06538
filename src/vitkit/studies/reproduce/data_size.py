"""Fig. 3 / Fig. 4 (§4.2) in miniature: ResNets win on little pre-training data, ViT catches up with more.

Experiment: the budget's ViT and BiT ResNet (about the same compute per image) are pre-trained on
nested, class-balanced subsets of the pre-training set, every subset for the same number of steps
(the smaller sets are seen for more epochs, as the paper's subsets are trained with the same
hyper-parameters). Each pre-trained model is measured twice on the transfer set: few-shot linear
accuracy of the frozen features (Fig. 4) and accuracy after fine-tuning (Fig. 3).
"""

from __future__ import annotations

from pathlib import Path

from vitkit.studies.reproduce.claim import Claim, ClaimResult, PaperReference, Plot
from vitkit.studies.reproduce.lab import FAMILY_NAMES
from vitkit.studies.reproduce.plots import curves
from vitkit.studies.reproduce.stats import Condition, Summary, ahead, pp

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


def decide(sizes: list[int], results: dict[str, dict[str, list[Summary]]]) -> list[Condition]:
    """Per metric (keys of :data:`METRICS`): ResNet ahead on the smallest set, ViT gaining with size.
    ``results[metric][family]`` holds one summary per pre-training size, families "vit" and "bit"."""
    conditions = []
    for metric, name in METRICS.items():
        vit, bit = results[metric]["vit"], results[metric]["bit"]
        conditions.append(Condition(
            f"{name}: ResNet ahead of ViT on the smallest pre-training set ({sizes[0]} images)",
            f"ResNet mean - ViT mean > 2 SE and > {pp(MIN_EFFECT)}", ahead(bit[0], vit[0], MIN_EFFECT),
            f"ResNet {bit[0].text()} vs ViT {vit[0].text()}"))
        gaps = [Summary.of(v - r for v, r in zip(vs.values, rs.values, strict=False)) for vs, rs in zip(vit, bit,
                                                                                                       strict=True)]
        conditions.append(Condition(
            f"{name}: ViT catches up as pre-training data grows",
            f"the ViT - ResNet gap at {sizes[-1]} images exceeds the gap at {sizes[0]} images by > 2 SE and > "
            f"{pp(MIN_EFFECT)}", ahead(gaps[-1], gaps[0], MIN_EFFECT),
            "ViT - ResNet: " + ", ".join(f"{n}: {pp(g.mean)}" for n, g in zip(sizes, gaps, strict=True)),
            {"gap": [g.to_dict() for g in gaps]}))
    return conditions


def run(lab, plot_dir: Path) -> ClaimResult:
    b = lab.budget
    families = {"vit": b.vit, "bit": b.bit}
    sizes: list[int] = []
    results: dict[str, dict[str, list[Summary]]] = {m: {f: [] for f in families} for m in METRICS}
    for fraction in b.data_fractions:
        _, images = lab.pretrain_source(fraction)
        sizes.append(images)
        for family, arch in families.items():
            runs = [lab.pretrain(arch, seed, fraction=fraction, label=f"{family} {images} images seed {seed}")
                    for seed in range(b.seeds)]
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
    steps = lab.steps_for(lab.pretrain_size, b.pretrain_epochs, b.batch_size)
    return ClaimResult(
        setup=(f"ViT {b.vit['model_options']} and BiT {b.bit['model_options']} pre-trained on {sizes} images of "
               f"{lab.pretrain_data} (nested class-balanced subsets, the same {steps} steps each); transfer to "
               f"{lab.transfer_data}: {b.shots}-shot linear and fine-tuned ({b.finetune_epochs} epochs, SGD lr "
               f"{b.finetune_lr}); {b.seeds} seeds"),
        rows=rows, conditions=conditions,
        summaries={"sizes": sizes, **{m: {f: [s.to_dict() for s in results[m][f]] for f in families}
                                      for m in METRICS}},
        plots=[Plot(plot.name, "Transfer accuracy against the number of pre-training images: few-shot linear "
                               "(Fig. 4) and fine-tuned (Fig. 3); mean and std over seeds.")])


def headline(result: ClaimResult) -> str:
    s, sizes = result.summaries["finetune"], result.summaries["sizes"]
    return (f"fine-tuned, ViT - ResNet: {100 * (s['vit'][0]['mean'] - s['bit'][0]['mean']):+.1f} pt at {sizes[0]} "
            f"images, {100 * (s['vit'][-1]['mean'] - s['bit'][-1]['mean']):+.1f} pt at {sizes[-1]}")


CLAIM = Claim("data-size", "More pre-training data: ResNets first, then ViT", PAPER, run, headline)
