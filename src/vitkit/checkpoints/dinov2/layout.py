"""DINOv2's facts that its dialects share: the architecture read off a state dict in the official or timm
layout (both keep the official block names), the released variant a configuration is, and the reading
itself, where the mask token is optional (timm's files and transformers' ``use_mask_token=False`` have
none: it loads as zeros, the official initial value, and only masked inputs read it).

What a state dict cannot say: the number of heads (qkv is fused; every DINOv2 size has 64-wide heads,
which is the fallback), and how the position embeddings are interpolated: a file with registers gets the
``_reg`` releases' (size-based, antialiased), one without the others' (offset 0.1, not antialiased)
(``dinov2/hub/backbones.py``), unless vitkit's metadata in the file says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.native import load_state_dict_strict
from vitkit.checkpoints.tensor_files import TensorSource
from vitkit.errors import VitkitError
from vitkit.models.dinov2.config import REGISTERS, SIZES, VARIANTS, DINOv2Config
from vitkit.models.dinov2.model import DINOv2

#: Fields the weights themselves determine: vitkit's stored metadata must agree with them.
STRUCTURE = ("hidden_size", "depth", "mlp_dim", "patch_size", "in_channels", "num_classes", "qkv_bias",
             "num_registers", "ffn", "seq_len")
#: the tensor a file may lack (loaded as zeros)
MASK_TOKEN = "mask_token"
#: what marks a DINOv2 state dict among ViT-like ones: LayerScale on both branches (ViT's timm recogniser
#: leaves such files to DINOv2's; one stray ``ls1`` in a ViT file stays ViT's, named as unexpected there)
LAYER_SCALE = frozenset({"blocks.0.ls1.gamma", "blocks.0.ls2.gamma"})


def variant_name(config: DINOv2Config) -> str:
    """The released variant ``config`` is (ignoring resolution and head), else ``"custom"``."""
    keys = ("hidden_size", "depth", "num_heads", "mlp_dim", "ffn", "num_registers", "patch_size")
    for name, variant in VARIANTS.items():
        if all(getattr(variant, k) == getattr(config, k) for k in keys):
            return name
    return "custom"


def heads_for_width(hidden_size: int, source: str) -> int:
    """Heads of a file that does not say (fused qkv): DINOv2's sizes, else 64-wide heads as in all of them."""
    for dims in SIZES.values():
        if dims["hidden_size"] == hidden_size:
            return dims["num_heads"]
    if hidden_size % 64 == 0:
        return hidden_size // 64
    raise VitkitError(f"{source}: cannot tell the number of attention heads of a width-{hidden_size} DINOv2 from its "
                      f"weights (fused qkv); it is no DINOv2 size and not a multiple of 64")


def infer_config(source: TensorSource, *, fc1: str, fc2: str, registers: str, class_position: bool,
                 num_heads: int | None = None, image_size: tuple[int, int] | None = None,
                 meta: dict | None = None) -> DINOv2Config:
    """The architecture of an official or timm DINOv2 state dict. ``fc1``/``fc2``: the names of block 0's
    feed-forward weights (the official SwiGLU's are ``w12``/``w3``); ``registers``: the register tokens'
    name; ``class_position``: whether ``pos_embed`` has the [class] token's entry (timm's register models
    fold it into ``cls_token``)."""
    keys = set(source.names())
    where = str(source.path)
    hidden, in_channels, patch, _ = source.shape("patch_embed.proj.weight")
    fc1_out, fc2_in = source.shape(fc1)[0], source.shape(fc2)[1]
    swiglu = fc1_out == 2 * fc2_in
    patches = source.shape("pos_embed")[1] - (1 if class_position else 0)
    stored = (meta or {}).get("architecture", {}).get("image_size")
    side = math.isqrt(patches)
    if stored and (stored[0] // patch) * (stored[1] // patch) == patches:
        size = tuple(stored)
    elif image_size is not None and (image_size[0] // patch) * (image_size[1] // patch) == patches:
        size = tuple(image_size)
    elif side * side == patches:
        size = (side * patch, side * patch)
    else:
        raise VitkitError(f"{where}: {patches} patch position embeddings are not a square grid; pass image_size= "
                          f"with the resolution the model was trained at")
    num_registers = source.shape(registers)[1] if registers in keys else 0
    with_registers = {**REGISTERS, "num_registers": num_registers} if num_registers else {}
    config = DINOv2Config(
        image_size=size, patch_size=patch, in_channels=in_channels, hidden_size=hidden,
        depth=mapping.count_indexed(keys, r"blocks\.(\d+)\."), num_heads=num_heads or heads_for_width(hidden, where),
        mlp_dim=fc2_in if swiglu else fc1_out, ffn="swiglu" if swiglu else "mlp",
        qkv_bias="blocks.0.attn.qkv.bias" in keys,
        num_classes=source.shape("head.weight")[0] if "head.weight" in keys else 0,
        **with_registers)
    return config.replace(name=variant_name(config))


def reconcile(inferred: DINOv2Config, meta: dict | None, source: str) -> tuple[DINOv2Config, dict]:
    """:func:`vitkit.checkpoints.mapping.reconcile` with DINOv2's :data:`STRUCTURE`."""
    return mapping.reconcile(inferred, meta, source, structure=STRUCTURE)


def load_state(source: TensorSource, config: DINOv2Config, rules: Sequence[mapping.Rule], *, fmt: str,
               dtype: torch.dtype | None, progress: bool, ignore: Callable[[str], bool] = lambda key: False,
               rename: Callable[[str], str] = lambda key: key) -> DINOv2:
    """:func:`vitkit.checkpoints.mapping.load_mapped`, the mask token zeros where the file has none."""
    with mapping.reading_architecture(str(source.path), fmt, "DINOv2"):
        model = mapping.empty_model(config)
    own = model.state_dict()
    stored = {rename(k) for k in source.names()}
    has_mask = all(name in stored for name in mapping.their_names(rules, MASK_TOKEN))
    wanted = own if has_mask else {k: v for k, v in own.items() if k != MASK_TOKEN}
    state = mapping.read_mapped(source, wanted, rules, config=config, fmt=fmt, what=mapping.describe(config),
                                dtype=dtype, progress=progress, ignore=ignore, rename=rename)
    if not has_mask:
        state[MASK_TOKEN] = torch.zeros(own[MASK_TOKEN].shape, dtype=dtype or torch.float32)
    load_state_dict_strict(model, state, str(source.path), assign=True)
    return model


def interpolation_notes(model: DINOv2, target: str, offset: float, antialias: bool) -> list[str]:
    """The export's note when ``target`` interpolates position embeddings otherwise than ``model``
    (bicubic with ``offset`` and ``antialias``): the same at the model's own resolution, not at others."""
    c = model.config
    if (c.interpolate_offset, c.interpolate_antialias) == (offset, antialias):
        return []

    def words(off: float, anti: bool) -> str:
        scale = f"with offset {off:g}" if off else "to the size"
        return f"bicubic {scale}, {'' if anti else 'not '}antialiased"

    return [f"at other resolutions {target} interpolates position embeddings {words(offset, antialias)}, this model "
            f"{words(c.interpolate_offset, c.interpolate_antialias)}"]
