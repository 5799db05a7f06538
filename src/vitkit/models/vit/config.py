"""Architecture configuration and the paper's named variants (Table 1, §3.1, §4.1).

A :class:`ViTConfig` holds everything needed to rebuild a model's architecture and nothing
else (no label names, no preprocessing: those live in the checkpoint's metadata). It
round-trips through JSON with :meth:`ViTConfig.to_dict` / :meth:`ViTConfig.from_dict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError
from vitkit.models.fields import (
    ATTENTION_DROPOUT,
    DROP_PATH,
    DROPOUT,
    GN_EPS,
    LAYER_NORM_EPS,
    MLP_ACT,
    PATCH_SIZE,
    QKV_BIAS,
    WS_EPS,
)
from vitkit.options import IMAGE_SIZE, IN_CHANNELS, NAME, NUM_CLASSES, Option, check_fields, option_field

CLASSIFIERS = ("token", "gap")
POSEMB_KINDS = ("none", "learned_1d", "learned_2d", "sincos_2d", "relative")
#: How learned 1-D position embeddings are resized to a new grid (see ``models.posemb.RESAMPLE_MODES``).
POSEMB_RESAMPLE = ("linear", "bicubic")
#: What a saved architecture that lacks a field meant when it was written (before the field existed):
#: vitkit's models used the exact GELU and bicubic position-embedding resampling then.
LEGACY_DEFAULTS = {"mlp_act": "gelu", "posemb_resample": "bicubic"}


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass
class ViTConfig(DictConfig):
    """The architecture of a Vision Transformer or a ResNet+ViT hybrid.

    Field names follow the paper: D = ``hidden_size``, L = ``depth``, MLP size = ``mlp_dim``,
    P = ``patch_size`` (on the image for plain ViT, on the ResNet feature map for hybrids).
    """

    name: str = option_field("custom", NAME)
    image_size: tuple[int, int] = option_field((224, 224), IMAGE_SIZE)
    patch_size: int = option_field(16, PATCH_SIZE)
    in_channels: int = option_field(3, IN_CHANNELS)
    hidden_size: int = option_field(768, Option("int", "width D", low=1))
    depth: int = option_field(12, Option("int", "number of layers L", low=1))
    num_heads: int = option_field(12, Option("int", "attention heads (must divide the width)", low=1))
    mlp_dim: int = option_field(3072, Option("int", "MLP hidden size", low=1))
    num_classes: int = option_field(1000, NUM_CLASSES)
    #: "token": y = LN(z_L^0) of the prepended [class] token (eq. 4); "gap": mean of patch tokens.
    classifier: str = option_field("token", Option("choice", "what y is: the [class] token or the patch mean",
                                                   choices=CLASSIFIERS))
    #: Whether the sequence starts with a [class] token. None: as the classifier says ("token": yes,
    #: "gap": no). A GAP model may keep one (MAE fine-tuning: the patch tokens are pooled while the
    #: [class] token the encoder was pre-trained with stays in the sequence).
    class_token: bool | None = option_field(None, Option("bool", "keep a [class] token in the sequence "
                                                         "(default: only with the token classifier)",
                                                         nullable=True))
    #: Size of the pre-logits layer (Dense + tanh) used at pre-training; None for a linear head.
    representation_size: int | None = option_field(None, Option("int", "pre-logits (Dense+tanh) width (0: none)",
                                                                low=0, nullable=True))
    posemb: str = option_field("learned_1d", Option("choice", "position embedding (App. D.4)", choices=POSEMB_KINDS))
    #: Dropout after every dense layer but qkv, and after adding position embeddings (App. B.1).
    dropout: float = option_field(0.0, DROPOUT)
    attention_dropout: float = option_field(0.0, ATTENTION_DROPOUT)
    drop_path: float = option_field(0.0, DROP_PATH)
    qkv_bias: bool = option_field(True, QKV_BIAS)
    layer_norm_eps: float = option_field(1e-6, LAYER_NORM_EPS)
    #: The MLP's GELU: "gelu_tanh" (the tanh approximation, Flax's ``nn.gelu``: what the paper's
    #: reference code and every official checkpoint compute, and vitkit's default) or "gelu"
    #: (exact; timm's ViT, and Hugging Face's ``hidden_act="gelu"``).
    mlp_act: str = option_field("gelu_tanh", MLP_ACT)
    #: How a learned 1-D position-embedding grid is resized for another resolution (§3.2):
    #: "linear" (scipy.ndimage.zoom order 1, corners aligned: the reference code's) or "bicubic"
    #: (timm's antialiased bicubic).
    posemb_resample: str = option_field("linear", Option("choice", "how position embeddings are resized to a new "
                                                                   "grid (linear: the reference code's)",
                                                         choices=POSEMB_RESAMPLE))
    #: posemb="relative" only: the patch grid the relative-offset tables were learned on, when the
    #: model now runs at another one (set by ``set_image_size``); None: the model's own grid.
    relative_grid: tuple[int, int] | None = option_field(None, Option("size", "relative posemb: the grid the "
                                                                              "offset tables were learned on",
                                                                      low=1, nullable=True))
    #: GAP models only: LayerNorm after pooling (timm/MAE style) instead of before (official code).
    fc_norm: bool = option_field(False, Option("bool", "GAP models: LayerNorm after pooling"))
    #: Hybrid stem: None for plain ViT; () for the root block only (R+ViT-Ti/16); stage depths else.
    resnet_layers: tuple[int, ...] | None = None
    resnet_width: int = option_field(1, Option("int", "width multiplier of the ResNet stem", low=1))
    gn_eps: float = option_field(1e-6, GN_EPS)
    ws_eps: float = option_field(1e-5, WS_EPS)

    _keys_are: ClassVar[str] = "ViTConfig fields"
    #: the model family (:mod:`vitkit.models.registry`) this configuration builds
    family: ClassVar[str] = "vit"

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViTConfig:
        """As saved by :meth:`to_dict`; fields added since a file was written take the value that
        file meant (:data:`LEGACY_DEFAULTS`), not today's default."""
        return super().from_dict({**LEGACY_DEFAULTS, **data})

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check every field against its option definition, then the fields against each other;
        raise :class:`VitkitError` with one line naming the first inconsistency."""
        check_fields(self)
        if self.class_token is None:
            self.class_token = self.classifier == "token"
        if self.classifier == "token" and not self.class_token:
            raise VitkitError("classifier 'token' needs the [class] token (class_token=True)")
        if self.representation_size == 0:
            self.representation_size = None
        if self.resnet_layers is not None:
            layers = self.resnet_layers
            if not isinstance(layers, (list, tuple)) or not all(_is_count(n) for n in layers):
                raise VitkitError(f"resnet_layers: got {layers!r}; allowed: a list of integers >= 1, [] or null")
            self.resnet_layers = tuple(int(n) for n in layers)
        if self.hidden_size % self.num_heads:
            raise VitkitError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.posemb in ("learned_2d", "sincos_2d") and self.hidden_size % 4:
            raise VitkitError(f"posemb {self.posemb} needs hidden_size divisible by 4")
        for side in self.image_size:
            if side % self.stride:
                raise VitkitError(
                    f"image size {self.image_size[0]}x{self.image_size[1]} is not divisible by the "
                    f"patch size {self.stride}"
                )

    # --------------------------------------------------------------- geometry
    @property
    def is_hybrid(self) -> bool:
        return self.resnet_layers is not None

    @property
    def backbone_stride(self) -> int:
        """Downsampling of the ResNet stem: 4 for the root block, x2 per stage after the first."""
        if self.resnet_layers is None:
            return 1
        return 4 * 2 ** max(len(self.resnet_layers) - 1, 0)

    @property
    def stride(self) -> int:
        """Pixels per token side: the effective patch size in image space."""
        return self.backbone_stride * self.patch_size

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.image_size[0] // self.stride, self.image_size[1] // self.stride)

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.class_token else 0

    @property
    def seq_len(self) -> int:
        gh, gw = self.grid_size
        return gh * gw + self.num_prefix_tokens

    def replace(self, **changes: Any) -> ViTConfig:
        """A copy with ``changes``; a new classifier brings its own [class] token choice unless one is given."""
        if changes.get("classifier", self.classifier) != self.classifier and "class_token" not in changes:
            changes["class_token"] = None
        return super().replace(**changes)
    @property
    def relative_table_grid(self) -> tuple[int, int]:
        """The grid whose flattened offsets index the relative-position tables (App. D.4)."""
        return self.relative_grid or self.grid_size

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size)
        if self.resnet_layers is not None:
            out["resnet_layers"] = list(self.resnet_layers)
        if self.relative_grid is not None:
            out["relative_grid"] = list(self.relative_grid)
        return out

    def describe(self) -> str:
        """``ViT-B/16 (D=768, L=12, 12 heads, 224x224)``: for messages."""
        return (f"{self.name} (D={self.hidden_size}, L={self.depth}, {self.num_heads} heads, "
                f"{self.image_size[0]}x{self.image_size[1]})")


# ---------------------------------------------------------------------------------------------
# Table 1 (plus the Ti and S sizes of the official code): width D, depth L, MLP size, heads.
SIZES: dict[str, dict[str, int]] = {
    "Ti": dict(hidden_size=192, depth=12, mlp_dim=768, num_heads=3),
    "S": dict(hidden_size=384, depth=12, mlp_dim=1536, num_heads=6),
    "B": dict(hidden_size=768, depth=12, mlp_dim=3072, num_heads=12),
    "L": dict(hidden_size=1024, depth=24, mlp_dim=4096, num_heads=16),
    "H": dict(hidden_size=1280, depth=32, mlp_dim=5120, num_heads=16),
}
PATCHES = (8, 14, 16, 32)

# Hybrids (§3.1, §4.1, official configs): name -> (size, patch size on the feature map, stages).
# R50 for hybrids keeps stages (3, 4, 9): stage 4 removed, its units moved into stage 3, so the
# feature map is 1/16 of the image. R26+ViT-S/32 and R50+ViT-L/32 keep all four stages (1/32).
# R+ViT-Ti/16 is the root block alone (conv 7x7/2 + max-pool/2 = 1/4) with 8x8 patches; note that
# the official code's effective stride is therefore 32, whatever its name says.
HYBRIDS: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "R50+ViT-B/16": ("B", 1, (3, 4, 9)),
    "R50+ViT-L/32": ("L", 1, (3, 4, 6, 3)),
    "R26+ViT-S/32": ("S", 1, (2, 2, 2, 2)),
    "R+ViT-Ti/16": ("Ti", 8, ()),
}


def _variant_table() -> dict[str, ViTConfig]:
    table: dict[str, ViTConfig] = {}
    for size, dims in SIZES.items():
        for patch in PATCHES:
            name = f"ViT-{size}/{patch}"
            table[name] = ViTConfig(name=name, patch_size=patch, **dims)
    for name, (size, patch, layers) in HYBRIDS.items():
        table[name] = ViTConfig(name=name, patch_size=patch, resnet_layers=layers, **SIZES[size])
    return table


VARIANTS: dict[str, ViTConfig] = _variant_table()
