"""timm's DINOv2 state dicts (``vit_small_patch14_dinov2``, ``vit_giant_patch14_reg4_dinov2``, ...:
``.safetensors``, ``.pth``, ``.bin``, or a timm hub directory), read and written.

Layout facts (timm 1.0 ``vision_transformer.py``: the models' arguments and ``_convert_dinov2``, which turns
an official file into this layout): the official names, LayerScale ``blocks.N.ls{1,2}.gamma`` included,
with three differences -- no ``mask_token``; ViT-g's SwiGLU is ``mlp.fc1`` / ``mlp.fc2`` (``SwiGLUPacked``,
the official ``w12`` / ``w3``); and the register models are ``no_embed_class``: the registers are
``reg_token``, ``pos_embed`` holds the patches' entries only and the [class] token's entry is added into
``cls_token`` (exact: that entry is never interpolated). A classifier is ``head`` on the [class] token.

timm interpolates position embeddings at other resolutions with ``resample_abs_pos_embed`` (bicubic to the
size, antialiased, and only with ``dynamic_img_size=True``): the register releases' way, not the others'
(the export's notes say so). The mask token is not written; a file without one loads it as zeros.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.dinov2 import layout
from vitkit.checkpoints.fidelity import PeerUnavailable, import_peer
from vitkit.checkpoints.mapping import Codec, rule
from vitkit.checkpoints.tensor_files import first_line, open_tensor_file, write_safetensors, write_torch
from vitkit.checkpoints.timm_files import (
    METADATA_KEY,
    TORCH_SUFFIXES,
    hub_files,
    hub_label_names,
    timm_preprocessing,
)
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.errors import VitkitError
from vitkit.models.dinov2.config import DINOv2Config
from vitkit.models.dinov2.model import DINOv2

FORMAT = "timm"
#: how timm resizes position embeddings (``resample_abs_pos_embed``): (offset, antialias) in DINOv2's terms
TIMM_INTERPOLATION = (0.0, True)
#: ``no_embed_class``: the table without the [class] token's entry (zero here, its value is in ``cls_token``)
NO_CLASS_ENTRY = Codec(lambda ts, c: torch.cat([ts[0].new_zeros(1, 1, ts[0].shape[-1]), ts[0]], dim=1),
                       lambda t, c: [t[:, 1:].clone()])


def rules(config: DINOv2Config) -> list[mapping.Rule]:
    """vitkit name <-> timm name: the whole mapping of this format (the [class] entry's fold: :func:`save_timm`)."""
    table = [rule("pos_embed.table", "pos_embed")]
    if config.num_registers:
        table = [rule("register_tokens", "reg_token"), rule("pos_embed.table", "pos_embed", codec=NO_CLASS_ENTRY)]
    return [*table, rule("{path}", "{path}")]


def is_timm_layout(keys) -> bool:
    """LayerScale beside ``pos_embed`` without the official files' mask token."""
    return set(keys) >= layout.LAYER_SCALE and "pos_embed" in keys and layout.MASK_TOKEN not in keys


def load_timm(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
              image_size: tuple[int, int] | None = None) -> DINOv2:
    """Load a timm DINOv2 state dict file or timm hub directory (eval mode)."""
    path = Path(path)
    weights, hub = hub_files(path) if path.is_dir() else (path, {})
    with open_tensor_file(weights) as source:
        meta = mapping.read_embedded_metadata(source.metadata.get(METADATA_KEY) or source.metadata.get("comment"))
        heads = (meta or {}).get("architecture", {}).get("num_heads") or hub.get("model_args", {}).get("num_heads")
        registers = "reg_token" in set(source.names())
        with mapping.reading_architecture(str(weights), FORMAT, "DINOv2"):
            inferred = layout.infer_config(source, fc1="blocks.0.mlp.fc1.weight", fc2="blocks.0.mlp.fc2.weight",
                                           registers="reg_token", class_position=not registers, num_heads=heads,
                                           image_size=image_size, meta=meta)
        config, meta = layout.reconcile(inferred, meta, str(weights))
        model = layout.load_state(source, config, rules(config), fmt=FORMAT, dtype=dtype, progress=progress)
    pre = timm_preprocessing(config.image_size, hub.get("pretrained_cfg") or {"crop_pct": 1.0},
                             mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return mapping.finish(model, meta, preprocessing=pre, label_names=hub_label_names(hub, config.num_classes))


def timm_tensors(model: DINOv2, progress: bool = False) -> dict[str, torch.Tensor]:
    """The model's tensors in timm's layout: mapped by :func:`rules`, the mask token left out, and with
    registers the [class] token's position entry added into ``cls_token``."""
    tensors = dict(mapping.export_tensors(model, rules(model.config), fmt=FORMAT, progress=progress))
    tensors.pop(layout.MASK_TOKEN)
    if model.config.num_registers:
        tensors["cls_token"] = tensors["cls_token"] + model.pos_embed.table[:, :1].detach().cpu()
    return tensors


def timm_twin(model: DINOv2, dst: Path | None):
    """The export check's model of timm's (:mod:`vitkit.checkpoints.fidelity`): timm's own
    ``VisionTransformer`` with the DINOv2 arguments of the model's size, filled through timm's
    ``checkpoint_filter_fn`` with the tensors the export writes."""
    stand_in = model, "vitkit's model of timm's DINOv2", []
    vit = import_peer("timm.models.vision_transformer", stand_in)
    c = model.config
    options: dict = {}
    hidden = c.mlp_dim  # timm sizes its MLP as int(D * mlp_ratio), SwiGLUPacked's fc1 with both halves
    if c.ffn == "swiglu":
        options = dict(mlp_layer=import_peer("timm.layers", stand_in).SwiGLUPacked, act_layer=torch.nn.SiLU)
        hidden = 2 * c.mlp_dim
    try:
        theirs = vit.VisionTransformer(
            img_size=c.image_size, patch_size=c.patch_size, in_chans=c.in_channels, num_classes=c.num_classes,
            embed_dim=c.hidden_size, depth=c.depth, num_heads=c.num_heads,
            mlp_ratio=(hidden + 1e-6) / c.hidden_size, qkv_bias=c.qkv_bias,
            init_values=c.layer_scale, reg_tokens=c.num_registers, no_embed_class=bool(c.num_registers), **options)
        theirs.load_state_dict(vit.checkpoint_filter_fn(timm_tensors(model), theirs))
    except (AssertionError, RuntimeError, TypeError, ValueError) as exc:
        raise PeerUnavailable(f"timm's VisionTransformer did not take the export ({first_line(exc)})", stand_in) \
            from None
    return theirs.float().eval(), "timm's own VisionTransformer (DINOv2 arguments)", []


def notes(model: DINOv2) -> list[str]:
    return layout.interpolation_notes(model, "timm", *TIMM_INTERPOLATION) + [
        "timm's VisionTransformer has no mask token: it is not written"]


def save_timm(model: DINOv2, path: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as a timm DINOv2 state dict: ``.safetensors`` or ``.pth``/``.bin``, each with vitkit's
    metadata (the safetensors header, the zip comment)."""
    path = Path(path)
    if path.suffix not in (".safetensors", *TORCH_SUFFIXES):
        raise VitkitError(f"{path}: a timm checkpoint needs a .safetensors, .pth or .bin name")
    tensors = timm_tensors(model, progress)
    if path.suffix == ".safetensors":
        write_safetensors(tensors, path, metadata={METADATA_KEY: mapping.embedded_metadata(model)})
    else:
        write_torch(tensors, path, comment=mapping.embedded_metadata(model))
    return path
