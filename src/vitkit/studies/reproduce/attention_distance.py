"""Fig. 7 right (§4.5) in miniature: the mean attention distance grows with depth.

Design. §4.5 reads Fig. 7 as: some heads attend to most of the image already in the lowest layers, others
stay local there, and the attention distance increases with depth; Fig. 7 is measured on a trained
ViT-L/16 (16x16 patches of 16 px). Two things have to be present for that to show in miniature: room
for distances to differ -- on a 4x4 grid every patch is at most 3 patches from every other and every
head attends about uniformly, so the budget's finer grid is used (``grid_*``: MNIST at its own 28 px in
4-px patches, 7x7 tokens, distances up to 6 patches) -- and a model that has learned something, so the
trained ViTs are the class-token, 1-D runs Table 8 and Fig. 9 share, each with its gate (an arm that did
not train makes the claim inconclusive). Randomly initialised twins are the control: their attention is
close to uniform, so any growth with depth there is not learned.

Experiment: per seed, the grid ViT (1-D position embeddings, class token) pre-trained on the images
left after the validation split; the mean attention distance of every head in every layer is measured
on test images of the pre-training set with :func:`vitkit.inspect.mean_attention_distance`
(patch-to-patch attention, in pixels), and the same on a randomly initialised network of the same shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitkit.studies.reproduce.claim import Claim, ClaimResult, PaperReference, Plot
from vitkit.studies.reproduce.plots import attention_distance
from vitkit.studies.reproduce.stats import Condition, Summary, ahead, interval_text, level

PAPER = PaperReference(
    source="Fig. 7 right (§4.5)",
    statement=("Some heads attend to most of the image already in the lowest layers while others stay local; "
               "the attention distance increases with network depth (ViT-L/16)."),
    note="Fig. 7 is a scatter plot of head distances against depth; the paper prints no numbers for it.",
)


def _growth(distance: np.ndarray) -> float:
    """Last layer's mean over heads minus the first layer's, in pixels."""
    per_layer = distance.mean(axis=1)
    return float(per_layer[-1] - per_layer[0])


def decide(trained_a: np.ndarray, random_a: np.ndarray, stride: float) -> list[Condition]:
    """Fig. 7's conditions from (seeds, layers, heads) distances of trained and randomly initialised
    networks whose patches are ``stride`` pixels apart."""
    min_effect = stride / 4
    family = 2  # the two comparisons below
    growth = Summary.of(_growth(d) for d in trained_a)
    control_growth = Summary.of(_growth(d) for d in random_a)
    zero = Summary.of([0.0] * len(trained_a))
    c1 = Condition("the mean attention distance grows with depth",
                   f"(last layer - first layer) of the mean over heads: {level(family)} above 0 and the growth > a "
                   f"quarter patch ({min_effect:g} px)", ahead(growth, zero, min_effect, family),
                   f"growth {interval_text(growth, zero, family, 1.0, ' px')} (first layer "
                   f"{trained_a[:, 0].mean():.2f} px, last {trained_a[:, -1].mean():.2f} px)")
    c2 = Condition("the growth is learned (random initialisation does not show it)",
                   f"trained growth - random-initialisation growth: {level(family)} above 0 and > {min_effect:g} px",
                   ahead(growth, control_growth, min_effect, family),
                   f"random initialisation: {control_growth.text(1.0, 2, ' px')}; trained - random "
                   f"{interval_text(growth, control_growth, family, 1.0, ' px')}")
    return [c1, c2]


def run(lab, plot_dir: Path) -> ClaimResult:
    from vitkit.models import create_model

    b = lab.budget
    trained, random, gates = [], [], []
    runs = lab.parallel(lab.grid_trained, [(seed,) for seed in range(b.seeds)])
    epochs = [runs[seed,][1] for seed in range(b.seeds)]
    for seed in range(b.seeds):
        run_ = runs[seed,][0]
        gates.append(lab.gate(run_, f"trained ViT seed {seed}"))
        model = run_.load()
        trained.append(lab.attention_distance(model))
        control = create_model(model.config, seed=10_000 + seed).eval()
        control.preprocessing = model.preprocessing
        random.append(lab.attention_distance(control))
    trained_a, random_a = np.stack(trained), np.stack(random)
    stride = b.grid_model["model_options"]["patch_size"]
    conditions = decide(trained_a, random_a, stride)
    rows = []
    for layer in range(trained_a.shape[1]):
        rows.append({"setting": f"layer {layer + 1}",
                     "trained, mean over heads": Summary.of(trained_a[:, layer].mean(axis=1)).text(1.0, 2, " px"),
                     "trained, heads min-max": f"{trained_a[:, layer].min():.2f}-{trained_a[:, layer].max():.2f} px",
                     "random init": Summary.of(random_a[:, layer].mean(axis=1)).text(1.0, 2, " px")})
    plot = plot_dir / "attention_distance.png"
    attention_distance(trained_a, plot, title="Mean attention distance per head (Fig. 7 right in miniature)")
    return ClaimResult(
        setup=(f"{b.grid_model['model_options']} pre-trained on {lab.pretrain_data} at {b.grid_size} px "
               f"at peak lr {b.grid_peak_lr:g} for {', '.join(f'{e:g}' for e in epochs)} epochs (per seed: a run "
               f"whose gate failed trained afresh for longer) ({b.grid_size // stride}x{b.grid_size // stride} "
               f"patches {stride} px apart; the 1-D class-token runs Table 8 and Fig. 9 share, each with its gate); "
               f"about {b.attention_images} test images; {b.seeds} seeds, each against a randomly initialised twin"),
        rows=rows, conditions=conditions, gates=gates,
        summaries={"trained": trained_a.tolist(), "random": random_a.tolist(), "epochs": epochs,
                   "growth": Summary.of(_growth(d) for d in trained_a).to_dict(),
                   "random_growth": Summary.of(_growth(d) for d in random_a).to_dict()},
        plots=[Plot(plot.name, "Mean attention distance of every head (dots; colour = head) against depth, all "
                               "seeds; lines: mean over heads per seed.")])


def headline(result: ClaimResult) -> str:
    trained = np.asarray(result.summaries["trained"]).mean(axis=(0, 2))
    return "layers 1→L: " + " → ".join(f"{d:.1f}" for d in trained) + " px"


CLAIM = Claim("attention-distance", "Mean attention distance grows with depth", PAPER, run, headline)
