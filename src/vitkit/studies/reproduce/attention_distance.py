"""Fig. 7 right (§4.5) in miniature: the mean attention distance grows with depth.

Experiment: a ViT with 1-D position embeddings and a class token is pre-trained per seed on a finer
grid of tokens than the other claims use (the budget's ``attention_*`` settings: MNIST at its own
28 px in 4-px patches, 7x7 tokens -- on a 4x4 grid every head attends about uniformly, so there is
no distance to grow); the mean attention distance of every head in every layer is measured on test
images of the pre-training set with :func:`vitkit.inspect.mean_attention_distance` (patch-to-patch
attention, in pixels). The same measurement on randomly initialised networks of the same shape is the control:
their attention is close to uniform, so any growth with depth there is not learned.
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
    trained, random = [], []
    for seed in range(b.seeds):
        run_ = lab.pretrain(b.attention_model, seed, size=b.attention_size, epochs=b.attention_epochs,
                            label=f"vit {b.attention_size} px seed {seed}")
        model = run_.load()
        trained.append(lab.attention_distance(model))
        control = create_model(model.config, seed=10_000 + seed).eval()
        control.preprocessing = model.preprocessing
        random.append(lab.attention_distance(control))
    trained_a, random_a = np.stack(trained), np.stack(random)
    stride = b.attention_model["model_options"]["patch_size"]
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
        setup=(f"{b.attention_model['model_options']} pre-trained on {lab.pretrain_data} at {b.attention_size} px "
               f"for {b.attention_epochs} epochs ({b.attention_size // stride}x{b.attention_size // stride} patches "
               f"{stride} px apart); about {b.attention_images} test images; {b.seeds} seeds, each against a "
               f"randomly initialised twin"),
        rows=rows, conditions=conditions,
        summaries={"trained": trained_a.tolist(), "random": random_a.tolist(),
                   "growth": Summary.of(_growth(d) for d in trained_a).to_dict(),
                   "random_growth": Summary.of(_growth(d) for d in random_a).to_dict()},
        plots=[Plot(plot.name, "Mean attention distance of every head (dots; colour = head) against depth, all "
                               "seeds; lines: mean over heads per seed.")])


def headline(result: ClaimResult) -> str:
    trained = np.asarray(result.summaries["trained"]).mean(axis=(0, 2))
    return "layers 1→L: " + " → ".join(f"{d:.1f}" for d in trained) + " px"


CLAIM = Claim("attention-distance", "Mean attention distance grows with depth", PAPER, run, headline)
