"""Distillation from a teacher (DeiT, Touvron et al. 2021, §4): the supervised objective plus a term that
makes the student agree with a frozen teacher on the same augmented batch.

    soft:  L = (1 - α) CE(ψ(Z_s), y) + α τ² KL(ψ(Z_t / τ), ψ(Z_s / τ))          (DeiT eq. 1, α = λ)
    hard:  L = (1 - α) CE(ψ(Z_s), y) + α CE(ψ(Z_s^dist), argmax Z_t)             (DeiT eq. 2 at α = 1/2)

Z_s are the student's logits -- for a student with a distillation token (DeiT) the [class] head's in
the first term and the distillation head's (Z_s^dist) in the second, so each token learns from its own
target as in DeiT §4; for any other student one set of logits serves both terms (soft only: hard
distillation needs the distillation token, a one-line error otherwise). KL is summed over classes per
image (the paper's KL; timm's ``DistillationLoss`` divides its batch sum by the number of logits instead).
The teacher runs in eval mode without gradients on the student's augmented batch, brought back to
pixels with the student's normalisation and through the teacher's own (mean, std, and its resolution by
bicubic resizing when the two differ); it is held outside the module tree, so it is neither optimised
nor saved with the run.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.errors import VitkitError
from vitkit.models.protocol import VitkitModel
from vitkit.objectives.base import pixels_01
from vitkit.objectives.supervised import Supervised

#: the two kinds of distillation (``--distill``)
DISTILL_KINDS = ("hard", "soft")
#: what a run with a teacher uses where ``--distill``, ``--distill-alpha``, ``--distill-tau`` are left out: DeiT's
#: hard distillation with the two terms weighted equally (eq. 2), timm's ``distillation_alpha`` 0.5 and
#: ``distillation_tau`` 1.0
DISTILL_DEFAULTS: dict[str, Any] = {"kind": "hard", "alpha": 0.5, "tau": 1.0}


def teacher_view(student: VitkitModel, teacher: VitkitModel, images: torch.Tensor) -> torch.Tensor:
    """The student's preprocessed ``images`` as the teacher's preprocessing gives them: back to [0, 1]
    pixels with the student's mean and std, resized to the teacher's resolution, normalised with the teacher's."""
    pixels = pixels_01(student, images)
    size = tuple(teacher.preprocessing.image_size)
    if tuple(pixels.shape[-2:]) != size:
        pixels = F.interpolate(pixels, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    pre = teacher.preprocessing
    mean = torch.tensor(pre.mean, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    std = torch.tensor(pre.std, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    return (pixels - mean) / std


def distillation_term(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str,
                      tau: float) -> torch.Tensor:
    """Per-image distillation loss (B,): hard = CE against the teacher's argmax; soft = τ² KL(teacher ‖ student)
    of the temperature-τ softmaxes."""
    if kind == "hard":
        return F.cross_entropy(student_logits, teacher_logits.argmax(dim=-1), reduction="none")
    log_student = F.log_softmax(student_logits / tau, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / tau, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(dim=-1) * tau * tau


class Distillation(Supervised):
    """The supervised objective with a frozen ``teacher`` (module notes); ``kind`` one of
    :data:`DISTILL_KINDS`, ``alpha`` the distillation term's weight, ``tau`` the soft temperature."""

    def __init__(self, teacher: nn.Module, kind: str = DISTILL_DEFAULTS["kind"],
                 alpha: float = DISTILL_DEFAULTS["alpha"], tau: float = DISTILL_DEFAULTS["tau"], augment=None,
                 loss: str = "softmax") -> None:
        super().__init__(augment=augment, loss=loss)
        if kind not in DISTILL_KINDS:
            raise VitkitError(f"distill must be one of {', '.join(DISTILL_KINDS)}, got {kind!r}")
        if not 0.0 <= alpha <= 1.0 or not tau > 0:
            raise VitkitError(f"distill_alpha must be in [0, 1] and distill_tau > 0, got {alpha} and {tau}")
        self.kind, self.alpha, self.tau = kind, float(alpha), float(tau)
        teacher.eval().requires_grad_(False)
        self._teacher = (teacher,)  # a tuple: not a submodule, so neither optimised nor saved

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def prepare(self, model: VitkitModel) -> None:
        """Hard distillation needs a distillation token; a student that has one returns both heads' logits."""
        has_token = getattr(model, "dist_token", None) is not None and getattr(model, "head_dist", None) is not None
        if self.kind == "hard" and not has_token:
            raise VitkitError(f"--distill hard trains a distillation token's head on the teacher's labels: "
                              f"{model.config.name} has none (use a distilled DeiT, e.g. --model "
                              f"DeiT-Ti/16-distilled, or --distill soft)")
        if has_token:
            model.set_distilled_training(True)

    def forward(self, model: VitkitModel, images: torch.Tensor, labels: torch.Tensor, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if images.shape[0] == 0:  # an all-corrupt micro-batch still joins the step: every head in the graph
            out = model(images)
            return sum(logits.float().sum(dim=1) for logits in (out if isinstance(out, tuple) else (out,))) * 0.0
        if self.augment is not None:
            images, targets = self.augment(images, labels)
        else:
            targets = F.one_hot(labels.long(), model.config.num_classes).to(images.dtype)
        teacher = self.teacher.to(images.device).eval()
        with torch.no_grad():
            teacher_logits = teacher(teacher_view(model, teacher, images)).float()
        out = model(images)
        cls_logits, dist_logits = out if isinstance(out, tuple) else (out, out)
        supervised = self.loss(cls_logits.float(), targets.float())
        distilled = distillation_term(dist_logits.float(), teacher_logits, self.kind, self.tau)
        return (1 - self.alpha) * supervised + self.alpha * distilled
