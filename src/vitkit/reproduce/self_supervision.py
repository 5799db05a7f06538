"""§4.6 (App. B.1.2): self-supervised pre-training by masked patch prediction.

The paper's claim: ViT-B/16 pre-trained by masked patch prediction on JFT reaches 79.9% on
ImageNet after fine-tuning, 2% better than training from scratch and 4% behind supervised
pre-training. The miniature needs vitkit's masked-patch-prediction objective; until this vitkit
has one, the claim is reported as "not available" with the reason -- no number is made up.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from vitkit.reproduce.claim import Claim, ClaimResult, PaperReference

PAPER = PaperReference(
    source="§4.6; App. B.1.2",
    statement=("Masked patch prediction (50% of patch embeddings corrupted; predict each corrupted patch's 3-bit mean "
               "colour) lets ViT-B/16 reach 79.9% ImageNet accuracy: 2% above training from scratch, 4% below "
               "supervised pre-training."),
    numbers=({"setting": "ViT-B/16, masked patch prediction on JFT, fine-tuned", "value": 79.9,
              "unit": "% ImageNet top-1"},),
)


def objective_available() -> bool:
    """Whether this vitkit has a masked-patch-prediction training objective."""
    return importlib.util.find_spec("vitkit.objectives") is not None


def run(lab, plot_dir: Path) -> ClaimResult:
    reason = ("vitkit's reproduce has no masked-patch-prediction experiment yet: the objective (vitkit.objectives, "
              "§4.6 / App. B.1.2) is not part of this version" if not objective_available() else
              "vitkit.objectives exists, but this version of vitkit reproduce does not run it yet")
    return ClaimResult(setup="not run", rows=[], conditions=[], notes=[reason], available=False)


CLAIM = Claim("self-supervision", "Self-supervised pre-training by masked patch prediction", PAPER, run,
              lambda result: "not available")
