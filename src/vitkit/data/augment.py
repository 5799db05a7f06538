"""Batch augmentation of the modern ViT recipe (DeiT/AugReg): RandAugment, Mixup, CutMix and
label smoothing, on batches of tensors, on any device. The paper itself (§4.1) trains with crop +
flip only; these are opt-in.

The augmentations are kornia's (``kornia.augmentation.auto.RandAugment``,
``RandomMixUpV2``, ``RandomCutMixV2``); this module only turns their outputs into soft targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vitkit.data.transforms import normalize
from vitkit.errors import VitkitError


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) ids -> (B, K) targets: ``1 - smoothing + smoothing / K`` on the label, ``smoothing / K`` elsewhere."""
    target = torch.full((labels.shape[0], num_classes), smoothing / num_classes, device=labels.device)
    return target.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + smoothing / num_classes)


class BatchAugment:
    """``(images, labels) -> (images, soft targets (B, K))`` for one training batch.

    - ``randaugment``: kornia's RandAugment with ``randaugment_n`` operations at magnitude
      ``randaugment_m`` (kornia's scale, 0..30 exclusive). kornia draws one set of operations
      per call, so the batch is cut into ``randaugment_groups`` chunks that each draw their own.
    - ``mixup``: the Beta(alpha, alpha) concentration of the Mixup weight (0 = off; DeiT uses 0.8).
      kornia's RandomMixUpV2 mixes; only its lambda is drawn here from the Beta distribution,
      because kornia draws it uniformly.
    - ``cutmix``: the Beta(alpha, alpha) concentration of the CutMix area (0 = off; DeiT uses 1.0),
      kornia's RandomCutMixV2; targets use the area actually pasted.
    - both on: each batch uses one of them, chosen with probability 0.5 (as timm/DeiT do).
    - ``label_smoothing``: ε of ``(1 - ε) one_hot + ε / K``, applied before mixing.

    Images may be normalised (as :func:`vitkit.data.loader.make_loader` yields them): pass the
    ``mean``/``std`` they were normalised with, so RandAugment sees [0, 1] pixels (Mixup and
    CutMix are linear, normalisation does not matter to them). Without ``mean``/``std`` the
    images are taken to be in [0, 1].
    """

    def __init__(self, *, randaugment: bool = False, mixup: float = 0.0, cutmix: float = 0.0,
                 label_smoothing: float = 0.0, num_classes: int, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, randaugment_n: int = 2, randaugment_m: float = 10,
                 randaugment_groups: int = 4) -> None:
        if num_classes < 2:
            raise VitkitError(f"num_classes must be at least 2, got {num_classes}")
        if mixup < 0 or cutmix < 0:
            raise VitkitError(f"mixup and cutmix are Beta concentrations >= 0, got {mixup} and {cutmix}")
        if not 0.0 <= label_smoothing < 1.0:
            raise VitkitError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if (mean is None) != (std is None):
            raise VitkitError("pass both mean and std (or neither)")
        self.num_classes = num_classes
        self.label_smoothing = float(label_smoothing)
        self.mixup, self.cutmix = float(mixup), float(cutmix)
        self.mean = tuple(mean) if mean is not None else None
        self.std = tuple(std) if std is not None else None
        self.randaugment_groups = max(1, int(randaugment_groups))
        self._randaugment = self._mixer = self._cutter = None
        if randaugment:
            from kornia.augmentation.auto import RandAugment

            if not 0 < randaugment_m < 30:
                raise VitkitError(f"randaugment_m must be in (0, 30) (kornia's scale), got {randaugment_m}")
            self._randaugment = RandAugment(n=int(randaugment_n), m=randaugment_m)
        if self.mixup > 0:
            from kornia.augmentation import RandomMixUpV2

            self._mixer = RandomMixUpV2(data_keys=["input", "class"])
        if self.cutmix > 0:
            from kornia.augmentation import RandomCutMixV2

            self._cutter = RandomCutMixV2(beta=self.cutmix, data_keys=["input", "class"], use_correct_lambda=True)

    def _rand_augment(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if self.mean is not None:
            x = x * torch.tensor(self.std, device=x.device, dtype=x.dtype).view(-1, 1, 1) \
                + torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(-1, 1, 1)
        x = x.clamp(0.0, 1.0)
        x = torch.cat([self._randaugment(chunk) for chunk in x.chunk(self.randaugment_groups)])
        return normalize(x, self.mean, self.std) if self.mean is not None else x

    def _mix(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mixed images, partner labels, weight of the *original* label) per image."""
        use_cutmix = self._cutter is not None and (self._mixer is None or float(torch.rand(())) < 0.5)
        if use_cutmix:
            mixed, info = self._cutter(images, labels)
            # (num_mix=1, B, 3): original label, partner label, 1 - pasted area fraction
            return mixed, info[0, :, 1].long(), info[0, :, 2].to(images.dtype)
        params = self._mixer.forward_parameters(images.shape)
        beta = torch.distributions.Beta(torch.tensor(self.mixup), torch.tensor(self.mixup))
        params["mixup_lambdas"] = beta.sample((images.shape[0],)).to(params["mixup_lambdas"])
        mixed, info = self._mixer(images, labels, params=params)
        # (B, 3): original label, partner label, weight of the partner
        return mixed, info[:, 1].long(), (1.0 - info[:, 2]).to(images.dtype)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) float, labels (B,) ids -> images, soft targets (B, K) summing to 1."""
        labels = labels.to(images.device).long()
        if self._randaugment is not None:
            images = self._rand_augment(images)
        targets = smooth_one_hot(labels, self.num_classes, self.label_smoothing).to(images.dtype)
        if self._mixer is None and self._cutter is None:
            return images, targets
        images, partner, keep = self._mix(images, labels)
        partner_targets = smooth_one_hot(partner.to(images.device), self.num_classes, self.label_smoothing)
        keep = keep.to(images.device).view(-1, 1)
        return images, keep * targets + (1.0 - keep) * partner_targets.to(images.dtype)

    def __repr__(self) -> str:
        return (f"BatchAugment(randaugment={self._randaugment is not None}, mixup={self.mixup}, "
                f"cutmix={self.cutmix}, label_smoothing={self.label_smoothing}, num_classes={self.num_classes})")
