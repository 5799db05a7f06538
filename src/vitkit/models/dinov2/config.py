"""DINOv2's architecture (Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision",
TMLR 2024) and its released variants, with and without registers (Darcet et al., ICLR 2024, "Vision
Transformers Need Registers").

A DINOv2 backbone is a ViT (:class:`~vitkit.models.vit.config.ViTConfig`, whose fields it keeps) with
five things of its own, each a field here and each read from facebookresearch/dinov2
(``dinov2/models/vision_transformer.py``, ``dinov2/hub/backbones.py``):

* LayerScale on both residual branches (``init_values``: ``layer_scale``; the released weights carry
  the learned scales, the training configs start them at 1e-5);
* the feed-forward layer: the MLP for S, B and L, SwiGLU for g (``ffn_layer="swiglufused"``, whose
  hidden size is (int(2/3 * 4D) + 7) // 8 * 8: 4096 for D = 1536; ``mlp_dim`` is that width);
* ``num_registers`` register tokens after the [class] token (0, or 4 in the ``_reg`` releases), which
  get no position embedding;
* the interpolation of the position embeddings at another grid (``interpolate_pos_encoding``):
  bicubic, with the scale factor (n + ``interpolate_offset``) / M where the offset is non-zero (0.1, the
  releases without registers) else the target size, and with antialiasing where
  ``interpolate_antialias`` (the releases with registers);
* a learned mask token (iBOT's masked patches), held and usable, as the releases hold it.

The released backbones are 518 px (a 37x37 grid of 14-px patches) without a head (``num_classes=0``);
they run at any resolution whose sides 14 divides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vitkit.errors import VitkitError
from vitkit.models.vit.config import ViTConfig
from vitkit.options import Option, field_options, option_field

FFN_KINDS = ("mlp", "swiglu")
_VIT = field_options(ViTConfig)


def swiglu_hidden(dim: int, mlp_ratio: float = 4.0) -> int:
    """The hidden width of DINOv2's ``SwiGLUFFNFused`` (``dinov2/layers/swiglu_ffn.py``) for a width ``dim``:
    two thirds of ``dim * mlp_ratio``, rounded up to a multiple of 8."""
    return (int(int(dim * mlp_ratio) * 2 / 3) + 7) // 8 * 8


@dataclass
class DINOv2Config(ViTConfig):
    """A DINOv2 backbone: a ViT's fields with DINOv2's defaults, plus its own (see the module notes)."""

    image_size: tuple[int, int] = option_field((518, 518), _VIT["image_size"])
    patch_size: int = option_field(14, _VIT["patch_size"])
    num_classes: int = option_field(0, _VIT["num_classes"])
    mlp_act: str = option_field("gelu", _VIT["mlp_act"])
    num_registers: int = option_field(0, Option("int", "register tokens after the [class] token (Darcet et al. "
                                                       "2024; the _reg releases: 4)", low=0, high=256))
    layer_scale: float = option_field(1e-5, Option("float", "initial LayerScale of both residual branches",
                                                   low=0, low_open=True))
    ffn: str = option_field("mlp", Option("choice", "the feed-forward layer (swiglu: ViT-g's SwiGLU, mlp_dim its "
                                                    "hidden width)", choices=FFN_KINDS))
    interpolate_offset: float = option_field(0.1, Option("float", "DINOv2's position-embedding interpolation: "
                                                                  "scale (n + offset) / M, 0: to the size n",
                                                         low=0, high=1))
    interpolate_antialias: bool = option_field(False, Option("bool", "antialias the bicubic position-embedding "
                                                                     "interpolation (the _reg releases)"))

    _keys_are: ClassVar[str] = "DINOv2Config fields"
    family: ClassVar[str] = "dinov2"

    def validate(self) -> None:
        """ViT's checks, then what a DINOv2 backbone is: a [class] token read as y, learned 1-D position
        embeddings, no hybrid stem, no pre-logits layer."""
        super().validate()
        fixed = {"classifier": ("token", self.classifier), "posemb": ("learned_1d", self.posemb),
                 "resnet_layers": (None, self.resnet_layers), "representation_size": (None, self.representation_size),
                 "fc_norm": (False, self.fc_norm), "relative_grid": (None, self.relative_grid)}
        for name, (want, have) in fixed.items():
            if have != want:
                raise VitkitError(f"a DINOv2 model has {name}={want!r}, not {have!r}")

    @property
    def num_prefix_tokens(self) -> int:
        """The [class] token and the registers, in that order, before the patches."""
        return 1 + self.num_registers

    def describe(self) -> str:
        registers = f", {self.num_registers} registers" if self.num_registers else ""
        return super().describe()[:-1] + registers + ")"


#: DINOv2's sizes (``vit_small`` ... ``vit_giant2`` of ``dinov2/models/vision_transformer.py``): width D,
#: depth L, heads, the feed-forward layer and its hidden width.
SIZES: dict[str, dict[str, Any]] = {
    "S": dict(hidden_size=384, depth=12, num_heads=6, mlp_dim=1536),
    "B": dict(hidden_size=768, depth=12, num_heads=12, mlp_dim=3072),
    "L": dict(hidden_size=1024, depth=24, num_heads=16, mlp_dim=4096),
    "g": dict(hidden_size=1536, depth=40, num_heads=24, mlp_dim=swiglu_hidden(1536), ffn="swiglu"),
}
#: the official hub names' size letters and transformers' size words
HUB_SIZES = {"S": "s", "B": "b", "L": "l", "g": "g"}
HF_SIZES = {"S": "small", "B": "base", "L": "large", "g": "giant"}
TIMM_SIZES = {"S": "small", "B": "base", "L": "large", "g": "giant"}
#: the released register count and the interpolation that goes with it (``dinov2/hub/backbones.py``)
REGISTERS = dict(num_registers=4, interpolate_offset=0.0, interpolate_antialias=True)


def variant_name(size: str, registers: bool) -> str:
    return f"DINOv2-{size}/14" + ("-reg" if registers else "")


def _variants() -> tuple[dict[str, DINOv2Config], dict[str, str]]:
    variants, aliases = {}, {}
    for size, dims in SIZES.items():
        for registers in (False, True):
            name = variant_name(size, registers)
            variants[name] = DINOv2Config(name=name, **dims, **(REGISTERS if registers else {}))
            reg = "_reg" if registers else ""
            aliases[f"dinov2_vit{HUB_SIZES[size]}14{reg}"] = name
            aliases[f"facebook/dinov2-{'with-registers-' if registers else ''}{HF_SIZES[size]}"] = name
            aliases[f"vit_{TIMM_SIZES[size]}_patch14_{'reg4_' if registers else ''}dinov2"] = name
    return variants, aliases


VARIANTS, ALIASES = _variants()
