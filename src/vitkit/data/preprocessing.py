"""What an image must go through before a model sees it; saved with every checkpoint and written
into every export.

One source of truth for the normalisation constants and for the evaluation geometry. The
official ViT weights expect pixels in [-1, 1] (mean = std = 0.5, "inception" normalisation);
ImageNet mean/std is the other common choice.

The evaluation transform, exactly (:meth:`Preprocessing.resize_geometry`), for a model input of
H x W = ``image_size`` and an RGB image of h x w pixels:

1. resize with Pillow's ``Image.resize`` and ``interpolation`` (Pillow filters antialias when
   shrinking) to a size set by ``crop_mode``:

   * ``"squash"``: (floor(H / crop_pct), floor(W / crop_pct)), whatever the image's aspect ratio.
     With ``crop_pct = 1`` this is the plain resize of the whole image to H x W that the paper's
     reference code evaluates with (vit_jax ``tf.image.resize(im, [crop, crop])``) and that
     Hugging Face's ViTImageProcessor does -- a new model's default (a training run writes the
     geometry its recipe calls for: :func:`vitkit.train.recipes.evaluation_crop`);
   * ``"center"``: keeping the aspect ratio (timm's default, torchvision's ``Resize``): for a
     square input, S = floor(H / crop_pct) on the shorter side and int(S * long / short) on the
     longer one; for a non-square input, both sides scaled by min(h / floor(H / crop_pct),
     w / floor(W / crop_pct)) and rounded;

2. crop H x W from the centre, offsets int(round((resized - H) / 2)) (Python's round, as
   torchvision's ``CenterCrop``);
3. scale the 8-bit values by 1/255 and normalise ``(x - mean) / std`` per channel; NCHW float32.

These are the arithmetic of timm's ``transforms_imagenet_eval`` (``crop_mode`` "squash" and
"center") and, for the plain resize, of transformers' ViTImageProcessor, so each exported
checkpoint tells its own client the same transform (``formats.hf``, ``formats.timm``, and
:meth:`Preprocessing.to_export_dict` for ONNX metadata).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError
from vitkit.options import Option, to_pair

INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_MODES = ("squash", "center")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
#: The evaluation crop as options, one definition each for training (``TrainConfig``, where None lets the
#: recipe decide) and for the commands that evaluate a checkpoint (``vitkit eval``, where None keeps its own).
CROP_PCT = Option("float", "evaluation: the crop's share of the resized image", low=0, high=1, low_open=True)
CROP_MODE = Option("choice", "evaluation resize: squash = the whole image to the model's size (the reference "
                             "code's, with crop-pct 1), center = the shorter side, keeping the aspect ratio (timm's)",
                   choices=CROP_MODES)
#: What a saved preprocessing without ``crop_mode`` meant: vitkit resized the shorter side then.
LEGACY_CROP_MODE = "center"


def crop_pct_for(size: int, resized: int) -> float:
    """The ``crop_pct`` whose floor(size / crop_pct) is exactly ``resized`` (e.g. 224 of 256 ->
    0.875): size / resized, nudged down where floating point would floor one short."""
    pct = size / resized
    while math.floor(size / pct) < resized:
        pct = math.nextafter(pct, 0.0)
    return pct


@dataclass
class Preprocessing(DictConfig):
    """Evaluation preprocessing (see the module notes for the exact transform)."""

    image_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = INCEPTION_MEAN
    std: tuple[float, ...] = INCEPTION_STD
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    crop_mode: str = "squash"

    def __post_init__(self) -> None:
        self.image_size = to_pair(self.image_size)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        self.crop_pct = float(self.crop_pct)
        # an edited config.json or a foreign file: a NaN or zero here makes every input NaN
        if min(self.image_size) < 1:
            raise VitkitError(f"preprocessing image_size must be positive, got {self.image_size}")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise VitkitError(f"preprocessing mean {self.mean} and std {self.std} must be finite")
        if not 0.0 < self.crop_pct <= 1.0:
            raise VitkitError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.crop_mode not in CROP_MODES:
            raise VitkitError(f"crop_mode must be one of {CROP_MODES}, got {self.crop_mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise VitkitError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise VitkitError(f"mean {self.mean} and std {self.std} must have one entry per channel, std > 0")

    @property
    def is_plain_resize(self) -> bool:
        """The whole image resized to the model's size, nothing cropped (the reference code's)."""
        return self.crop_mode == "squash" and self.crop_pct == 1.0

    def with_crop(self, crop_pct: float | None = None, crop_mode: str | None = None) -> Preprocessing:
        """This preprocessing with the crop fields that are given (None keeps the field): what
        ``--crop-pct`` / ``--crop-mode`` do to a model's own."""
        given = {name: value for name, value in (("crop_pct", crop_pct), ("crop_mode", crop_mode))
                 if value is not None}
        return self.replace(**given) if given else self

    def scale_size(self) -> tuple[int, int]:
        """(floor(H / crop_pct), floor(W / crop_pct)): the size the crop is taken from (squash) or
        whose shorter side the image is resized to (center)."""
        height, width = self.image_size
        return math.floor(height / self.crop_pct), math.floor(width / self.crop_pct)

    def resize_geometry(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
        """For an image of ``width`` x ``height``: ((resized width, resized height), crop box
        (left, top, right, bottom) in the resized image)."""
        out_h, out_w = self.image_size
        scale_h, scale_w = self.scale_size()
        if self.crop_mode == "squash":
            new_w, new_h = scale_w, scale_h
        elif scale_h == scale_w:  # torchvision Resize(int): the shorter side to S, the longer truncated
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = scale_h, int(scale_h * long / short)
            new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        else:  # timm ResizeKeepRatio: both sides by the smaller ratio, rounded
            ratio = min(height / scale_h, width / scale_w)
            new_w, new_h = round(width / ratio), round(height / ratio)
        new_w, new_h = max(new_w, out_w), max(new_h, out_h)
        top, left = int(round((new_h - out_h) / 2.0)), int(round((new_w - out_w) / 2.0))
        return (new_w, new_h), (left, top, left + out_w, top + out_h)

    def describe(self) -> str:
        """One line: what the transform does."""
        height, width = self.image_size
        if self.is_plain_resize:
            geometry = f"resize the whole image to {height}x{width}"
        elif self.crop_mode == "squash":
            scale_h, scale_w = self.scale_size()
            geometry = f"resize to {scale_h}x{scale_w}, centre-crop {height}x{width}"
        else:
            geometry = f"resize the shorter side to {self.scale_size()[0]} (crop_pct {self.crop_pct:g}), " \
                       f"centre-crop {height}x{width}"
        return (f"{geometry} ({self.interpolation}), x/255, (x - {list(self.mean)}) / {list(self.std)}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(image_size=list(self.image_size), mean=list(self.mean), std=list(self.std))
        return out

    def to_export_dict(self) -> dict[str, Any]:
        """The exact transform as a self-describing dictionary, for exports that carry free-form
        metadata (ONNX ``metadata_props``): everything a client needs to reproduce ``vitkit predict``."""
        scale_h, scale_w = self.scale_size()
        return {
            "input": {"layout": "NCHW", "channels": "RGB", "dtype": "float32", "height": self.image_size[0],
                      "width": self.image_size[1]},
            "resize": {"library": "Pillow Image.resize", "interpolation": self.interpolation,
                       "crop_mode": self.crop_mode, "crop_pct": self.crop_pct,
                       "scale_size": [scale_h, scale_w],
                       "rule": ("resize to scale_size" if self.crop_mode == "squash" else
                                "square input: shorter side to scale_size[0], longer side int(S * long / short); "
                                "else both sides by min(h / scale_size[0], w / scale_size[1]), rounded")},
            "crop": {"size": list(self.image_size), "offsets": "int(round((resized - size) / 2)), Python round"},
            "rescale_factor": 1 / 255,
            "mean": list(self.mean),
            "std": list(self.std),
            "description": self.describe(),
            "vitkit_preprocessing": self.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Lenient, unlike the architecture: keys other tools store beside these are ignored. A
        dictionary without ``crop_mode`` was written when vitkit always resized the shorter side."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        fields.setdefault("crop_mode", LEGACY_CROP_MODE)
        return cls(**fields)
