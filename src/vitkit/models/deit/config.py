"""DeiT's architecture (Touvron et al., ICML 2021, "Training data-efficient image transformers &
distillation through attention") and its released variants (Table 1: DeiT-Ti/S/B at 224 px, DeiT-B
at 384 px, each with and without the distillation token).

DeiT is ViT's architecture (§3 of the DeiT paper: "our architecture is identical to the one proposed
by Dosovitskiy et al.") trained with another recipe, plus, for the distilled models (§4), a
distillation token: a second learned prefix token after the [class] token, with its own position
embedding and its own linear head. :class:`DeiTConfig` is :class:`~vitkit.models.vit.config.ViTConfig`
with that token and the reference code's defaults (timm ``deit.py``: exact GELU, LayerNorm eps 1e-6,
bicubic resampling of position embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vitkit.errors import VitkitError
from vitkit.models.fields import MLP_ACT, PATCH_SIZE
from vitkit.models.vit.config import SIZES, ViTConfig
from vitkit.options import Option, field_options, option_field

#: how the distillation token's head is used: its own linear head beside the [class] token's
#: (timm's ``VisionTransformerDistilled``, transformers' ``DeiTForImageClassificationWithTeacher``)
DISTILLED = Option("bool", "a distillation token after the [class] token, with its own head (DeiT §4)")
DIST_HEAD = Option("bool", "distilled models: the distillation token's own head (off: the [class] token's head "
                           "alone classifies, as transformers' DeiTForImageClassification)")


@dataclass
class DeiTConfig(ViTConfig):
    """A DeiT: a :class:`ViTConfig` with ``distilled`` (the distillation token) and ``dist_head`` (its head)."""

    patch_size: int = option_field(16, PATCH_SIZE)
    mlp_act: str = option_field("gelu", MLP_ACT)
    posemb_resample: str = option_field("bicubic", field_options(ViTConfig)["posemb_resample"])
    distilled: bool = option_field(False, DISTILLED)
    dist_head: bool = option_field(True, DIST_HEAD)

    _keys_are: ClassVar[str] = "DeiTConfig fields"
    family: ClassVar[str] = "deit"

    def validate(self) -> None:
        super().validate()
        if self.distilled:
            if self.classifier != "token":
                raise VitkitError("a distilled DeiT classifies its [class] and distillation tokens: it needs "
                                  "classifier 'token', not 'gap'")
            if self.representation_size:
                raise VitkitError("a distilled DeiT has linear heads on both tokens: representation_size does "
                                  "not apply")

    @property
    def num_prefix_tokens(self) -> int:
        """The [class] token and, when distilled, the distillation token after it."""
        return super().num_prefix_tokens + (1 if self.distilled else 0)


# ---------------------------------------------------------------------------------------------
#: DeiT's Table 1: Ti, S, B are ViT's widths, depths and MLP sizes (the Ti and S sizes are DeiT's own),
#: with 3, 6 and 12 heads of 64; all take 16x16 patches.
DEIT_SIZES = ("Ti", "S", "B")
_SIZE_WORDS = {"Ti": "tiny", "S": "small", "B": "base"}
#: the resolutions each size was released at (DeiT §5.2: DeiT-B fine-tuned at 384)
_RESOLUTIONS = {"Ti": (224,), "S": (224,), "B": (224, 384)}


def _variant_table() -> tuple[dict[str, DeiTConfig], dict[str, str]]:
    variants: dict[str, DeiTConfig] = {}
    aliases: dict[str, str] = {}
    for size in DEIT_SIZES:
        for distilled in (False, True):
            for resolution in _RESOLUTIONS[size]:
                name = f"DeiT-{size}/16" + ("-distilled" if distilled else "") + (
                    f"-{resolution}" if resolution != 224 else "")
                variants[name] = DeiTConfig(name=name, image_size=resolution, distilled=distilled, **SIZES[size])
                word = _SIZE_WORDS[size] + ("_distilled" if distilled else "")
                # timm's names (with the tag of the released weights) and transformers' repository names
                # (facebook/deit-...; without the organisation, which would make the bare repository name a
                # variant name instead of a checkpoint: see vitkit.checkpoints.hub)
                timm_name = f"deit_{word}_patch16_{resolution}"
                for stem in (timm_name, f"{timm_name}.fb_in1k", timm_name.replace("_", "-")):
                    aliases[stem] = name
    return variants, aliases


DEIT_VARIANTS, DEIT_ALIASES = _variant_table()


def variant_name(config: ViTConfig) -> str:
    """The released variant ``config`` is (its resolution preferred), else ``"custom"``."""
    keys = ("hidden_size", "depth", "num_heads", "mlp_dim", "patch_size", "distilled")
    same = [name for name, variant in DEIT_VARIANTS.items()
            if all(getattr(variant, k) == getattr(config, k, None) for k in keys)]
    exact = [name for name in same if DEIT_VARIANTS[name].image_size == config.image_size]
    return (exact or same or ["custom"])[0]
