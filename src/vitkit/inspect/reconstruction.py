"""What a masked model predicts, drawn: MAE's reconstructions (He et al. 2021, Fig. 2) and masked patch
prediction's colours (App. B.1.2).

* MAE, one row per image: the original (the centre crop the model saw) | the masked input (masked
  patches grey) | the reconstruction | the reconstruction with the visible patches pasted back.
  For a ``norm_pix_loss`` model the predictions are per-patch normalised; they are shown with each
  patch's true mean and standard deviation put back, as MAE's visualisations of such models do.
* Masked patch prediction with a colour target, one row per image: the original | the true 3-bit
  colour of every corrupted patch (or 4x4 cell) | the predicted one; patches left intact are
  hatched (transparent in the arrays).
  With the ``pixels`` target the figure is MAE's, with "corrupted" for "masked".

The masks and corruptions are drawn from a generator seeded with ``seed``, so a report is
reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from vitkit.atomic import atomic_path
from vitkit.inspect.capture import image_batches, model_device
from vitkit.inspect.images import NamedImage
from vitkit.models.vit.model import VisionTransformer
from vitkit.objectives.base import Objective, patchify, pixels_01, unpatchify
from vitkit.objectives.mae import MAE
from vitkit.objectives.mpp import MPP

GREY = 0.5
MAE_FIGURE = "reconstruction.png"
MPP_FIGURE = "mpp_colours.png"


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).clamp(0, 1).cpu().numpy()


def _grey_patches(images: torch.Tensor, mask: torch.Tensor, patch: int, grid: tuple[int, int]) -> torch.Tensor:
    """``images`` (B, C, H, W) with the patches where ``mask`` (B, N) is 1 painted grey."""
    patches = patchify(images, patch)
    patches = torch.where(mask.bool().unsqueeze(-1), torch.full_like(patches, GREY), patches)
    return unpatchify(patches, patch, grid, images.shape[1])


@torch.no_grad()
def mae_reconstructions(model: VisionTransformer, objective: MAE, images: Sequence[NamedImage], *,
                        seed: int = 0, batch_size: int = 8) -> dict[str, np.ndarray]:
    """(N, H, W, 3) arrays in [0, 1]: ``original``, ``masked``, ``reconstruction``, ``pasted``; ``mask``
    (N, rows, cols), 1 where masked; ``loss`` (N,) each image's loss over its masked patches."""
    model.eval()
    objective.eval().to(model_device(model))
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, list] = {k: [] for k in ("original", "masked", "reconstruction", "pasted", "mask", "loss")}
    patch = objective.patch_size
    for x in image_batches(model, [item.image for item in images], batch_size):
        grid = (x.shape[-2] // patch, x.shape[-1] // patch)
        reconstruction, mask, loss = objective.reconstruct(model, x, generator=generator)
        original, recon = pixels_01(model, x), pixels_01(model, reconstruction)
        pasted = unpatchify(torch.where(mask.bool().unsqueeze(-1), patchify(recon, patch), patchify(original, patch)),
                            patch, grid)
        for key, value in (("original", original), ("masked", _grey_patches(original, mask, patch, grid)),
                           ("reconstruction", recon), ("pasted", pasted)):
            out[key].append(_hwc(value))
        out["mask"].append(mask.reshape(-1, *grid).cpu().numpy())
        out["loss"].append(loss.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _level_colours(classes: torch.Tensor, bits: int) -> torch.Tensor:
    """Class ids (...) -> (..., 3) colours at the centres of their 3-bit levels."""
    levels = 2 ** bits
    r, g, b = classes // (levels * levels), (classes // levels) % levels, classes % levels
    return (torch.stack([r, g, b], dim=-1).float() + 0.5) / levels


@torch.no_grad()
def mpp_colour_predictions(model: VisionTransformer, objective: MPP, images: Sequence[NamedImage], *,
                           seed: int = 0, batch_size: int = 8) -> dict[str, np.ndarray]:
    """``original`` (N, H, W, 3); ``true`` and ``predicted`` RGBA colour mosaics (N, rows * d, cols * d, 4),
    intact patches transparent (d = 1 for the mean colour, 4 for the downsized patch); ``corrupted``
    (N, rows, cols); ``accuracy`` (N,): the share of corrupted patches (cells) coloured right."""
    model.eval()
    objective.eval().to(model_device(model))
    opts = objective.options
    cells = opts.downsample if opts.target == "downsampled" else 1
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, list] = {k: [] for k in ("original", "true", "predicted", "corrupted", "accuracy")}
    for x in image_batches(model, [item.image for item in images], batch_size):
        rows, cols = x.shape[-2] // objective.stride, x.shape[-1] // objective.stride
        result = objective.run(model, x, generator=generator)
        predicted = objective.predicted_classes(result.prediction)
        target = result.target
        if cells == 1:
            predicted, target = predicted.unsqueeze(-1), target.unsqueeze(-1)
        hits = (predicted == target).float().mean(dim=-1)
        corrupted = result.corrupted
        accuracy = (hits * corrupted).sum(dim=1) / corrupted.sum(dim=1).clamp(min=1)

        def mosaic(classes: torch.Tensor, corrupted=corrupted, rows=rows, cols=cols) -> np.ndarray:
            colours = _level_colours(classes, opts.color_bits)  # (B, N, cells^2, 3)
            alpha = corrupted[..., None, None].float().expand(*colours.shape[:-1], 1)
            colours = torch.cat([colours, alpha], dim=-1)
            colours = colours.reshape(-1, rows, cols, cells, cells, 4).permute(0, 1, 3, 2, 4, 5)
            return colours.reshape(-1, rows * cells, cols * cells, 4).cpu().numpy()

        out["original"].append(_hwc(pixels_01(model, x)))
        out["true"].append(mosaic(target))
        out["predicted"].append(mosaic(predicted))
        out["corrupted"].append(corrupted.reshape(-1, rows, cols).cpu().numpy())
        out["accuracy"].append(accuracy.cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


@torch.no_grad()
def mpp_pixel_reconstructions(model: VisionTransformer, objective: MPP, images: Sequence[NamedImage], *,
                              seed: int = 0, batch_size: int = 8) -> dict[str, np.ndarray]:
    """MAE's four columns for masked patch prediction with the ``pixels`` target (see the module notes)."""
    model.eval()
    objective.eval().to(model_device(model))
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, list] = {k: [] for k in ("original", "masked", "reconstruction", "pasted", "mask", "loss")}
    stride = objective.stride
    for x in image_batches(model, [item.image for item in images], batch_size):
        grid = (x.shape[-2] // stride, x.shape[-1] // stride)
        result = objective.run(model, x, generator=generator)
        mask = result.corrupted.float()
        original = pixels_01(model, x)
        recon = pixels_01(model, unpatchify(result.prediction.float(), stride, grid, x.shape[1]))
        pasted = unpatchify(torch.where(mask.bool().unsqueeze(-1), patchify(recon, stride),
                                        patchify(original, stride)), stride, grid)
        for key, value in (("original", original), ("masked", _grey_patches(original, mask, stride, grid)),
                           ("reconstruction", recon), ("pasted", pasted)):
            out[key].append(_hwc(value))
        out["mask"].append(mask.reshape(-1, *grid).cpu().numpy())
        out["loss"].append(result.loss.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _draw_rows(columns: list[tuple[str, np.ndarray]], names: Sequence[str], notes: Sequence[str], path: Path) -> None:
    count = len(names)
    fig = Figure(figsize=(2.0 * len(columns), 2.1 * count + 0.3), layout="constrained")
    axes = fig.subplots(count, len(columns), squeeze=False)
    for k in range(count):
        for j, (title, array) in enumerate(columns):
            ax = axes[k, j]
            ax.imshow(array[k], interpolation="nearest")
            if array.shape[-1] == 4:  # transparent where nothing is shown: hatch the background
                ax.set_facecolor("white")
                ax.patch.set_hatch("////")
                ax.patch.set_edgecolor("0.75")
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
            else:
                ax.set_axis_off()
            if k == 0:
                ax.set_title(title, fontsize=8)
        axes[k, 0].text(0, -0.04, f"{names[k][:22]}  {notes[k]}", transform=axes[k, 0].transAxes, fontsize=6,
                        va="top")
    _save(fig, path)


def write_pretraining_figures(model: VisionTransformer, objective: Objective, images: Sequence[NamedImage],
                              out: Path, *, max_shown: int = 8, seed: int = 0,
                              batch_size: int = 8) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The figure of ``objective`` (MAE or masked patch prediction) for the first ``max_shown``
    images; returns (figures for the report, the numbers behind them)."""
    shown = list(images[:max_shown])
    names = [item.name for item in shown]
    if isinstance(objective, MAE) or (isinstance(objective, MPP) and objective.options.target == "pixels"):
        is_mae = isinstance(objective, MAE)
        maker = mae_reconstructions if is_mae else mpp_pixel_reconstructions
        r = maker(model, objective, shown, seed=seed, batch_size=batch_size)
        hidden = "masked" if is_mae else "corrupted"
        _draw_rows([("original", r["original"]), (hidden, r["masked"]), ("reconstruction", r["reconstruction"]),
                    ("+ visible patches", r["pasted"])], names, [f"loss {v:.3f}" for v in r["loss"]],
                   out / MAE_FIGURE)
        share = float(r["mask"].mean())
        what = (f"MAE reconstructions (Fig. 2 of He et al.): original | {share:.0%} of the patches masked | "
                f"reconstruction | reconstruction with the visible patches pasted back"
                if is_mae else f"Masked patch prediction, pixel target: original | {share:.0%} corrupted | "
                               f"predicted patches | with the intact patches pasted back")
        if is_mae and objective.options.norm_pix_loss:
            what += " (normalised-pixel model: each patch shown with its true mean and spread)"
        data = {"objective": objective.name, "images": names, "masked_share": share,
                "loss": [round(float(v), 5) for v in r["loss"]], "seed": seed}
        return [{"file": MAE_FIGURE, "caption": what + "."}], data
    if isinstance(objective, MPP):
        r = mpp_colour_predictions(model, objective, shown, seed=seed, batch_size=batch_size)
        cells = "4x4 cells of each corrupted patch" if objective.options.target == "downsampled" else \
            "mean colour of each corrupted patch"
        _draw_rows([("original", r["original"]), ("true colours", r["true"]), ("predicted", r["predicted"])], names,
                   [f"right {v:.0%}" for v in r["accuracy"]], out / MPP_FIGURE)
        caption = (f"Masked patch prediction (App. B.1.2): the {objective.options.color_bits}-bit {cells}, true "
                   f"(centre) and predicted (right); intact patches hatched; "
                   f"{float(r['corrupted'].mean()):.0%} of the patches corrupted.")
        data = {"objective": objective.name, "target": objective.options.target, "images": names,
                "color_accuracy": [round(float(v), 5) for v in r["accuracy"]], "seed": seed}
        return [{"file": MPP_FIGURE, "caption": caption}], data
    return [], {}
