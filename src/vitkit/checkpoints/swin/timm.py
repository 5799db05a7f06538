"""timm Swin state dicts (``swin_*``: ``.safetensors``, ``.pth``, ``.bin``, or a timm hub directory),
read and written; and reading the architecture off the names and shapes of a Swin state dict,
which the official ``.pth`` files (:mod:`vitkit.checkpoints.swin.official`) share.

Layout facts. timm keeps the official block names (``patch_embed.{proj,norm}``,
``layers.{s}.blocks.{b}.{norm1,attn.qkv,attn.proj,attn.relative_position_bias_table,norm2,mlp.fc1,
mlp.fc2}``, ``norm``) with two differences: patch merging opens a stage instead of closing the
previous one (``layers.{s+1}.downsample`` is the official ``layers.{s}.downsample``) and the head is
``head.fc``. ``relative_position_index`` and ``attn_mask`` are not stored (they are functions of
the window).

The files do not record the resolution or the window directly; they are read off the bias tables,
whose side is 2m-1 for a window of m: the first stage's table gives the window M, and a later stage
whose table is smaller had a map of m x m tokens (official and timm shrink the window to a map no
larger than it), which fixes the resolution. Without such a stage the resolution is the one whose
last stage is exactly one window, patch * M * 2^(stages-1) (224 for M = 7, 384 for M = 12), unless
``image_size=`` or vitkit's metadata (in ``.safetensors`` it writes) says otherwise. vitkit keeps
one (2M-1)^2 table per block: a smaller stored table is its centre (zero outside), which is all a
map of that size reads; on export the centre is cut out again.

timm computes two things its own way: it rolls a shifted map before padding it to whole windows
(the reference code pads first), and it shrinks the window and shift per axis on non-square maps.
Models whose maps divide into whole windows at a square resolution -- every released checkpoint --
run the same in both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.fidelity import PeerUnavailable, import_peer
from vitkit.checkpoints.mapping import Codec, rule
from vitkit.checkpoints.tensor_files import TensorSource, first_line, open_tensor_file, write_safetensors, write_torch
from vitkit.checkpoints.timm_files import (
    METADATA_KEY,
    TORCH_SUFFIXES,
    hub_files,
    hub_label_names,
    timm_preprocessing,
)
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.errors import VitkitError
from vitkit.models.swin.config import SwinConfig, variant_name
from vitkit.models.swin.model import SwinTransformer, window_and_shift

FORMAT = "timm"
TABLE = "attn.relative_position_bias_table"
#: Fields a Swin state dict determines: vitkit's stored metadata must agree with them.
STRUCTURE = ("patch_size", "in_channels", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio",
             "num_classes", "qkv_bias")


# ------------------------------------------------------------------------- bias tables
def _side(table: torch.Tensor) -> int:
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0] or side % 2 == 0:
        raise VitkitError(f"a relative position bias table of {table.shape[0]} rows is not a (2m-1) x (2m-1) square "
                          f"(non-square windows are not supported)")
    return side


def pad_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """A ((2m-1)^2, heads) table placed at the centre of a zero ((2M-1)^2, heads) table (m <= M)."""
    side, full = _side(table), 2 * window - 1
    if side >= full:
        return table
    heads = table.shape[1]
    out = table.new_zeros(full, full, heads)
    start = (full - side) // 2
    out[start:start + side, start:start + side] = table.reshape(side, side, heads)
    return out.reshape(full * full, heads)


def crop_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """The centre ((2m-1)^2, heads) of a larger square table: the offsets an m x m window uses."""
    side, keep = _side(table), 2 * window - 1
    if keep >= side:
        return table
    heads = table.shape[1]
    start = (side - keep) // 2
    return table.reshape(side, side, heads)[start:start + keep, start:start + keep].reshape(keep * keep, heads).clone()


def stage_windows(config: SwinConfig) -> list[int]:
    """The window of each stage at the configured resolution (smaller than M where the map is)."""
    return [window_and_shift(grid, config.window_size, False)[0] for grid in config.stage_grids]


def table_rules(config: SwinConfig) -> list[mapping.Rule]:
    """vitkit's per-block table <-> the file's ``attn.relative_position_bias_table``: padded to (2M-1)^2 on
    the way in, cut to the stage's window on the way out (one rule per stage, as that window is per stage)."""
    def codec(window: int) -> Codec:
        return Codec(lambda ts, c: pad_table(ts[0], c.window_size), lambda t, c: [crop_table(t, window)])

    return [rule(f"layers.{s}.blocks.{{b}}.rel_bias.table", f"layers.{s}.blocks.{{b}}.{TABLE}", codec=codec(window))
            for s, window in enumerate(stage_windows(config))]


def rules(config: SwinConfig) -> list[mapping.Rule]:
    """vitkit name <-> timm name: the whole mapping of this format."""
    return [
        *table_rules(config),
        rule("layers.{s}.downsample.{path}", "layers.{s1}.downsample.{path}"),
        rule("head.{p}", "head.fc.{p}"),
        rule("{path}", "{path}"),
    ]


# ------------------------------------------------------------------- architecture inference
def is_swin_state_dict(keys) -> bool:
    return "patch_embed.proj.weight" in keys and any(k.endswith(TABLE) for k in keys)


def infer_swin_config(source: TensorSource, *, head: str, image_size: tuple[int, int] | None = None,
                      meta: dict | None = None) -> SwinConfig:
    """The architecture of an official or timm Swin state dict (``head``: the classifier's weight name)."""
    keys = set(source.names())
    where = str(source.path)
    if not is_swin_state_dict(keys):
        raise VitkitError(f"{where}: not a Swin state dict (no patch_embed.proj.weight / {TABLE})")
    embed_dim, in_channels, patch, _ = source.shape("patch_embed.proj.weight")
    depths = mapping.stage_layout(keys, r"layers\.(\d+)\.blocks\.(\d+)\.")
    if not depths or min(depths) < 1:
        raise VitkitError(f"{where}: Swin stages without blocks (layers.S.blocks.B...): {list(depths)}")
    tables = [source.shape(f"layers.{s}.blocks.0.{TABLE}") for s in range(len(depths))]
    sides = []
    for shape in tables:
        side = math.isqrt(shape[0])
        if side * side != shape[0] or side % 2 == 0:
            raise VitkitError(f"{where}: a bias table of {shape[0]} rows is not (2m-1)^2 (non-square windows, e.g. "
                              f"timm at a non-square resolution, are not supported)")
        sides.append(side)
    windows = [(side + 1) // 2 for side in sides]
    window = windows[0]
    fc1 = source.shape("layers.0.blocks.0.mlp.fc1.weight")[0]
    fields = dict(
        patch_size=patch, in_channels=in_channels, embed_dim=embed_dim, depths=depths,
        num_heads=tuple(shape[1] for shape in tables), window_size=window, mlp_ratio=fc1 / embed_dim,
        qkv_bias="layers.0.blocks.0.attn.qkv.bias" in keys,
        num_classes=source.shape(head)[0] if head in keys else 0,
    )
    stored = (meta or {}).get("architecture", {}).get("image_size")
    size = tuple(stored) if stored else image_size
    if size is None:
        shrunk = [(s, m) for s, m in enumerate(windows) if m < window]
        side = shrunk[0][1] * patch * 2 ** shrunk[0][0] if shrunk else patch * window * 2 ** (len(depths) - 1)
        size = (side, side)
    config = SwinConfig(image_size=size, **fields)
    expected = stage_windows(config)
    if any(m != window and m != e for m, e in zip(windows, expected, strict=True)):
        raise VitkitError(f"{where}: windows per stage {windows} do not fit a {size[0]}x{size[1]} model (it has "
                          f"{expected}); pass image_size= with the resolution the model was trained at")
    return config.replace(name=variant_name(config))


def load_swin_state_dict(source: TensorSource, table: Callable[[SwinConfig], list[mapping.Rule]], *, head: str,
                         fmt: str, dtype: torch.dtype | None, progress: bool, image_size: tuple[int, int] | None,
                         meta: dict | None, ignore=lambda key: False) -> tuple[SwinTransformer, dict]:
    """Infer, reconcile with vitkit's metadata, load: the part the timm and official readers share
    (``table(config)``: the format's rules)."""
    with mapping.reading_architecture(str(source.path), fmt, "Swin"):
        inferred = infer_swin_config(source, head=head, image_size=image_size, meta=meta)
    config, meta = mapping.reconcile(inferred, meta, str(source.path), structure=STRUCTURE)
    model = mapping.load_mapped(source, config, table(config), fmt=fmt, dtype=dtype, progress=progress, ignore=ignore)
    return model, meta


def load_swin_timm(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
                   image_size: tuple[int, int] | None = None) -> SwinTransformer:
    """Load a timm Swin state dict file or timm hub directory (eval mode)."""
    path = Path(path)
    weights, hub = hub_files(path) if path.is_dir() else (path, {})
    with open_tensor_file(weights) as source:
        meta = mapping.read_embedded_metadata(source.metadata.get(METADATA_KEY) or source.metadata.get("comment"))
        model, meta = load_swin_state_dict(source, rules, head="head.fc.weight", fmt=FORMAT, dtype=dtype,
                                           progress=progress, image_size=image_size, meta=meta)
    pre = timm_preprocessing(model.config.image_size, hub.get("pretrained_cfg"), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return mapping.finish(model, meta, preprocessing=pre, label_names=hub_label_names(hub, model.config.num_classes))


def check_exportable(config: SwinConfig) -> None:
    """What a timm Swin file cannot hold: a stage whose map is no larger than the window on one side
    only (or non-square and smaller than it), where timm builds a non-square window and bias table."""
    for stage, (rows, cols) in enumerate(config.stage_grids):
        window = config.window_size
        if rows != cols and min(rows, cols) < window:
            raise VitkitError(f"timm's Swin gives stage {stage + 1} ({rows}x{cols} tokens at {config.image_size[0]}x"
                              f"{config.image_size[1]}) a {min(rows, window)}x{min(cols, window)} window and bias "
                              f"table, this model a square one; export to hf or native")


def timm_differences(config: SwinConfig) -> list[str]:
    """Where timm's SwinTransformer computes this model otherwise at its own resolution: it rolls a
    shifted map before padding it to whole windows (the reference code after), and decides window
    and shift per axis (the reference code from the shorter side)."""
    out = []
    for stage, ((rows, cols), depth) in enumerate(zip(config.stage_grids, config.depths, strict=True)):
        window = config.window_size
        if depth > 1 and min(rows, cols) > window and (rows % window or cols % window):
            out.append(f"stage {stage + 1} ({rows}x{cols} tokens): timm rolls the map before padding it to whole "
                       f"{window}x{window} windows, the reference code (and this model) after")
        elif depth > 1 and min(rows, cols) <= window < max(rows, cols):
            out.append(f"stage {stage + 1} ({rows}x{cols} tokens): timm shifts the windows along the longer side, "
                       f"the reference code (and this model) not at all")
    return out


def timm_twin(model: SwinTransformer, dst: Path | None):
    """The export check's model of timm's Swin (:mod:`vitkit.checkpoints.fidelity`): timm's own
    SwinTransformer built from the model's arguments and filled through timm's ``checkpoint_filter_fn``
    with the tensors the export writes. Where timm cannot run here the stand-in is this model itself
    where timm computes the same, none (the export is refused unless approximations are allowed)
    where not, and the check says timm did not run and why."""
    where = "timm's SwinTransformer"
    c = model.config
    differences = timm_differences(c)
    stand_in = (None if differences else model), (where if differences else f"vitkit's model of {where}"), differences
    timm_swin = import_peer("timm.models.swin_transformer", stand_in)
    state = dict(mapping.export_tensors(model, rules(c), fmt=FORMAT))
    try:
        theirs = timm_swin.SwinTransformer(
            img_size=c.image_size, patch_size=c.patch_size, in_chans=c.in_channels, num_classes=c.num_classes,
            embed_dim=c.embed_dim, depths=c.depths, num_heads=c.num_heads, window_size=c.window_size,
            mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias)
        theirs.load_state_dict(timm_swin.checkpoint_filter_fn(state, theirs))
    except (AssertionError, RuntimeError, TypeError, ValueError) as exc:
        raise PeerUnavailable(f"timm's SwinTransformer did not take the export ({first_line(exc)})", stand_in) from None
    return theirs.float().eval(), "timm's own SwinTransformer", differences


def save_swin_timm(model: SwinTransformer, path: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as a timm Swin state dict: ``.safetensors`` or ``.pth``/``.bin``, each with vitkit's
    metadata (heads, labels, preprocessing: the safetensors header, the zip comment)."""
    path = Path(path)
    if path.suffix not in (".safetensors", *TORCH_SUFFIXES):
        raise VitkitError(f"{path}: a timm checkpoint needs a .safetensors, .pth or .bin name")
    tensors = dict(mapping.export_tensors(model, rules(model.config), fmt=FORMAT, progress=progress))
    if path.suffix == ".safetensors":
        write_safetensors(tensors, path, metadata={METADATA_KEY: mapping.embedded_metadata(model)})
    else:
        write_torch(tensors, path, comment=mapping.embedded_metadata(model))
    return path
