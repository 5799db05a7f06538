"""What an image must go through before a model sees it; saved with every checkpoint.

One source of truth for the normalisation constants. The official ViT weights expect pixels in
[-1, 1] (mean = std = 0.5, "inception" normalisation); ImageNet mean/std is the other common
choice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from vitkit.config import to_pair
from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError

INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@dataclass
class Preprocessing(DictConfig):
    """Evaluation preprocessing: resize the shorter side to ``image_size / crop_pct``, centre-crop
    ``image_size``, scale to [0, 1], then ``(x - mean) / std`` per channel (RGB, NCHW)."""

    image_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = INCEPTION_MEAN
    std: tuple[float, ...] = INCEPTION_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    def __post_init__(self) -> None:
        self.image_size = to_pair(self.image_size)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        self.validate()

    def validate(self) -> None:
        """One-line errors for values that would make every input NaN or the crop empty (an edited
        ``config.json``, a foreign file): a std of 0, a NaN mean, a crop of nothing."""
        if min(self.image_size) < 1:
            raise VitkitError(f"preprocessing image_size must be positive, got {self.image_size}")
        if not self.mean or len(self.mean) != len(self.std):
            raise VitkitError(f"preprocessing mean {self.mean} and std {self.std} need one value per channel each")
        if not all(math.isfinite(m) for m in self.mean):
            raise VitkitError(f"preprocessing mean must be finite, got {self.mean}")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise VitkitError(f"preprocessing std must be positive and finite, got {self.std}")
        if not (isinstance(self.crop_pct, (int, float)) and 0 < self.crop_pct <= 1):
            raise VitkitError(f"preprocessing crop_pct must be in (0, 1], got {self.crop_pct!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise VitkitError(f"preprocessing interpolation must be one of {INTERPOLATIONS}, got "
                              f"{self.interpolation!r}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(image_size=list(self.image_size), mean=list(self.mean), std=list(self.std))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Lenient, unlike the architecture: keys other tools store beside these are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
