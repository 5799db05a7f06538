"""DeiT (Touvron et al., ICML 2021): ViT's encoder (:class:`~vitkit.models.vit.model.VisionTransformer`,
reused as it is) plus, for the distilled models, the distillation token of §4:

    z_0 = [x_class; x_distil; x_p^1 E; ...; x_p^N E] + E_pos     (E_pos has N + 2 entries)
    logits_cls = head(LN(z_L^0)),  logits_dist = head_dist(LN(z_L^1))

"At test time, both the class or the distillation embeddings produced by the transformer are
associated with linear classifiers and able to infer the image label. [...] we add the softmax output
by the two classifiers to make the prediction" (§4, "Classification with our approach: joint
classifiers"): in eval mode, and in train mode unless asked otherwise, ``forward`` returns the mean of
the two heads' logits, as timm's ``VisionTransformerDistilled`` (whose ``forward_head`` averages the
logits, as transformers' ``DeiTForImageClassificationWithTeacher`` does). Training with a teacher
(:mod:`vitkit.objectives.distill`) calls :meth:`DeiT.set_distilled_training`, after which a model in
train mode returns both logits ``(cls, dist)``: timm's ``distilled_training`` semantics, followed here.

State-dict names are timm's: ViT's, plus ``dist_token`` and ``head_dist``.
"""

from __future__ import annotations

import torch
from torch import nn

from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vitkit.models.deit.config import DeiTConfig
from vitkit.models.vit.model import VisionTransformer

#: DeiT's evaluation crop (its ``--eval-crop-ratio`` / timm's ``crop_pct``) at 224 px; the 384-px
#: fine-tunes are evaluated on the whole resized image (crop 1.0)
CROP_PCT = 0.875


def deit_preprocessing(image_size: tuple[int, int]) -> Preprocessing:
    """DeiT's evaluation transform (timm's ``deit_*`` configs): bicubic resize of the shorter side,
    centre crop :data:`CROP_PCT` (1.0 above 224 px), ImageNet mean and std."""
    return Preprocessing(image_size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic",
                         crop_pct=CROP_PCT if max(image_size) <= 224 else 1.0, crop_mode="center")


class DeiT(VisionTransformer):
    """A DeiT built from a :class:`~vitkit.models.deit.config.DeiTConfig` (module notes)."""

    config: DeiTConfig

    def __init__(self, config: DeiTConfig) -> None:
        super().__init__(config)
        dim = config.hidden_size
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.distilled else None
        self.head_dist: nn.Module | None = (self._new_head(config.num_classes)
                                            if config.distilled and config.dist_head else None)
        if self.dist_token is not None:
            nn.init.trunc_normal_(self.dist_token, std=0.02)  # timm's VisionTransformerDistilled.init_weights
        #: timm's ``distilled_training``: in train mode, return (cls, dist) logits instead of their mean
        self.distilled_training = False
        self.preprocessing = deit_preprocessing(config.image_size)

    def set_distilled_training(self, enable: bool = True) -> None:
        """timm's switch: a model in train mode returns both heads' logits (for a teacher's loss)."""
        self.distilled_training = enable

    def reset_head(self, num_classes: int) -> None:
        """Both heads replaced by zero-initialised D x K layers (§3.2 of the ViT paper, for each token)."""
        super().reset_head(num_classes)
        if self.head_dist is not None:
            self.head_dist = self._new_head(num_classes).to(self.patch_embed.proj.weight.device)

    def _prepend_and_embed(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """z_0: [class] and distillation tokens prepended (in that order, timm's and transformers'), E_pos added."""
        if self.dist_token is None:
            return super()._prepend_and_embed(tokens, grid)
        batch = tokens.shape[0]
        prefix = [self.cls_token.expand(batch, -1, -1), self.dist_token.expand(batch, -1, -1)]
        return self.pos_embed(torch.cat([*prefix, tokens], dim=1), grid)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """y: a distilled model's representation is the mean of its [class] and distillation tokens
        (timm's ``forward_head(pre_logits=True)``); without the distillation head, ViT's ([class] token)."""
        if self.head_dist is None:
            return super().pool(tokens)
        return (tokens[:, 0] + tokens[:, 1]) / 2

    def head_logits(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the [class] token's logits, the distillation token's or None) from the encoder's tokens."""
        if self.head_dist is None:
            return self.forward_head(self.pool(tokens)), None
        return self.forward_head(tokens[:, 0]), self.head_dist(tokens[:, 1])

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """The averaged logits of the two heads (B, K) (module notes); ``(cls, dist)`` in train mode after
        :meth:`set_distilled_training`; with ``return_attention=True`` also the per-layer attention weights."""
        out = self.encode(x, return_attention=return_attention)
        logits = self.logits_from_tokens(out.tokens)
        return (logits, out.attentions) if return_attention else logits

    def logits_from_tokens(self, tokens: torch.Tensor):
        """The two heads' averaged logits (B, K) from the encoder's tokens, or ``(cls, dist)`` in train
        mode after :meth:`set_distilled_training` (what :meth:`forward` returns)."""
        cls_logits, dist_logits = self.head_logits(tokens)
        if dist_logits is None:
            return cls_logits
        if self.distilled_training and self.training:
            return cls_logits, dist_logits
        return (cls_logits + dist_logits) / 2
