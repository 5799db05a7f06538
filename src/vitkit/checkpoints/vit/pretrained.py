"""The pretrained checkpoints vitkit knows by name: the official bucket's files and well-known hub repos.

Two kinds of name (:func:`vitkit.checkpoints.hub.resolve_checkpoint` reads them; ``vitkit models --pretrained``
lists this table):

* ``official:FOLDER/NAME`` -- a file of Google's public bucket ``gs://vit_models`` (served at
  ``https://storage.googleapis.com/vit_models/...``), by the name the google-research/
  vision_transformer README publishes: ``official:imagenet21k/ViT-B_16`` is
  ``gs://vit_models/imagenet21k/ViT-B_16.npz``. The prefix keeps these apart from the variant
  names of ``--model`` (``ViT-B_16`` builds a randomly initialised ViT-B/16; the checkpoint spec
  ``official:imagenet21k/ViT-B_16`` loads its weights).
* ``hf-hub:ORG/REPO`` -- a Hugging Face Hub repository (transformers or timm layout).

Facts from the official README and its bucket listing (vit_jax.ipynb): ``imagenet21k`` holds the
ImageNet-21k pre-trained models (224 px, 21,843 classes, pre-logits layer);
``imagenet21k+imagenet2012`` their ImageNet fine-tunes at 384 px (``-224`` files at 224 px);
``augreg`` the "How to train your ViT?" models -- listed here are the README's recommended
pre-trained checkpoints and their 384 px ImageNet fine-tunes, and any other published augreg file
name is accepted too; ``sam`` ImageNet models trained with SAM at 224 px (its ``ViT-S_16`` is
accepted but not listed). The two ``imagenet21k`` folders are listed completely.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

OFFICIAL_BUCKET = "vit_models"
OFFICIAL_URL = f"https://storage.googleapis.com/{OFFICIAL_BUCKET}"
#: The official bucket's folders a name may come from.
OFFICIAL_FOLDERS = ("imagenet21k", "imagenet21k+imagenet2012", "augreg", "sam")
#: Folders whose every file is in the table below (names elsewhere are passed on unchecked).
COMPLETE_FOLDERS = ("imagenet21k", "imagenet21k+imagenet2012")


@dataclass(frozen=True)
class Pretrained:
    """One named checkpoint: how to write it, where it comes from, what it was trained on."""

    name: str
    model: str
    resolution: int
    classes: int
    data: str
    #: where the file comes from: the official bucket, or the Hub and the repository's layout
    source: str
    #: the URL or gs:// path the name stands for
    location: str

    def to_dict(self) -> dict:
        return asdict(self)


def _official(folder: str, stem: str, model: str, resolution: int, classes: int, data: str) -> Pretrained:
    return Pretrained(f"official:{folder}/{stem}", model, resolution, classes, data, "official bucket",
                      f"gs://{OFFICIAL_BUCKET}/{folder}/{stem}.npz")


def _hub(repo: str, model: str, resolution: int, classes: int, data: str, library: str) -> Pretrained:
    return Pretrained(f"hf-hub:{repo}", model, resolution, classes, data, f"HF Hub, {library}",
                      f"https://huggingface.co/{repo}")


_I21K = "ImageNet-21k"
_FT = "ImageNet-21k -> ImageNet"

# The README's recommended augreg checkpoints: (model, pre-trained file stem, fine-tuned suffix).
_AUGREG = [
    ("ViT-L/16", "L_16-i21k-300ep-lr_0.001-aug_strong1-wd_0.1-do_0.0-sd_0.0", "lr_0.01"),
    ("ViT-B/16", "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "lr_0.03"),
    ("ViT-S/16", "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "lr_0.03"),
    ("R50+ViT-L/32", "R50_L_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1", "lr_0.01"),
    ("R26+ViT-S/32", "R26_S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0", "lr_0.01"),
    ("ViT-Ti/16", "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "lr_0.03"),
    ("ViT-B/32", "B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0", "lr_0.01"),
    ("ViT-S/32", "S_32-i21k-300ep-lr_0.001-aug_none-wd_0.1-do_0.0-sd_0.0", "lr_0.01"),
    ("R+ViT-Ti/16", "R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "lr_0.03"),
]

PRETRAINED: list[Pretrained] = [
    # gs://vit_models/imagenet21k: the paper's ImageNet-21k pre-training (with the pre-logits layer).
    *(_official("imagenet21k", name.replace("/", "_"), name, 224, 21843, _I21K)
      for name in ("ViT-B/16", "ViT-B/32", "ViT-B/8", "ViT-L/16", "ViT-L/32", "ViT-H/14", "R50+ViT-B/16",
                   "R50+ViT-L/32", "R26+ViT-B/32")),
    # gs://vit_models/imagenet21k+imagenet2012: fine-tuned on ImageNet (§3.2: at 384 px).
    *(_official("imagenet21k+imagenet2012", name.replace("/", "_"), name, 384, 1000, _FT)
      for name in ("ViT-B/16", "ViT-B/32", "ViT-B/8", "ViT-L/16", "ViT-L/32", "R50+ViT-B/16")),
    *(_official("imagenet21k+imagenet2012", name.replace("/", "_") + "-224", name, 224, 1000, _FT)
      for name in ("ViT-B/16", "ViT-L/16")),
    # gs://vit_models/augreg: recommended pre-trained checkpoints and their ImageNet fine-tunes.
    *(_official("augreg", stem, model, 224, 21843, _I21K + " (AugReg)") for model, stem, _ in _AUGREG),
    *(_official("augreg", f"{stem}--imagenet2012-steps_20k-{lr}-res_384", model, 384, 1000, _FT + " (AugReg)")
      for model, stem, lr in _AUGREG),
    # gs://vit_models/sam: ImageNet from scratch with sharpness-aware minimisation.
    *(_official("sam", name.replace("/", "_"), name, 224, 1000, "ImageNet (SAM)")
      for name in ("ViT-B/16", "ViT-B/32", "ViT-L/16", "ViT-L/32")),
    # Hugging Face Hub, transformers layout (converted from the official files).
    *(_hub(f"google/vit-{size}-patch{patch}-{res}", f"ViT-{size[0].upper()}/{patch}", res, 1000, _FT, "transformers")
      for size, patch, res in (("base", 16, 224), ("base", 16, 384), ("base", 32, 384), ("large", 16, 224),
                               ("large", 16, 384), ("large", 32, 384))),
    *(_hub(f"google/vit-{size}-patch{patch}-224-in21k", f"ViT-{size[0].upper()}/{patch}", 224, 0, _I21K,
           "transformers")
      for size, patch in (("base", 16), ("base", 32), ("large", 16), ("huge", 14))),
    # Hugging Face Hub, timm layout.
    *(_hub(f"timm/{name}", model, res, 1000, _FT + (" (AugReg)" if "augreg" in name else ""), "timm")
      for name, model, res in (
          ("vit_tiny_patch16_224.augreg_in21k_ft_in1k", "ViT-Ti/16", 224),
          ("vit_small_patch16_224.augreg_in21k_ft_in1k", "ViT-S/16", 224),
          ("vit_small_patch16_384.augreg_in21k_ft_in1k", "ViT-S/16", 384),
          ("vit_base_patch32_224.augreg_in21k_ft_in1k", "ViT-B/32", 224),
          ("vit_base_patch16_224.augreg2_in21k_ft_in1k", "ViT-B/16", 224),
          ("vit_base_patch16_384.augreg_in21k_ft_in1k", "ViT-B/16", 384),
          ("vit_base_patch8_224.augreg2_in21k_ft_in1k", "ViT-B/8", 224),
          ("vit_large_patch16_224.augreg_in21k_ft_in1k", "ViT-L/16", 224),
          ("vit_large_patch16_384.augreg_in21k_ft_in1k", "ViT-L/16", 384),
          ("vit_small_r26_s32_224.augreg_in21k_ft_in1k", "R26+ViT-S/32", 224),
          ("vit_base_r50_s16_384.orig_in21k_ft_in1k", "R50+ViT-B/16", 384))),
    _hub("timm/vit_base_patch16_224.augreg_in21k", "ViT-B/16", 224, 21843, _I21K + " (AugReg)", "timm"),
]


def list_pretrained(pattern: str = "") -> list[Pretrained]:
    """The known names whose name, model or data contains ``pattern`` (case-insensitive)."""
    needle = pattern.lower()
    return [p for p in PRETRAINED if needle in p.name.lower() or needle in p.model.lower()
            or needle in p.data.lower()]


def official_names(folder: str) -> list[str]:
    """The published file stems of ``folder`` in this table."""
    prefix = f"official:{folder}/"
    return [p.name[len(prefix):] for p in PRETRAINED if p.name.startswith(prefix)]
