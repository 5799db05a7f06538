"""``write_report``: the §4.5 analyses of one model as PNG figures, a JSON file of the numbers
behind them and an ``index.html`` that shows the figures with one-line captions.

Figures are drawn with matplotlib's object API (``matplotlib.figure.Figure``, rendered by the
Agg backend), so nothing here touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from vitkit.atomic import atomic_path, write_text_atomic
from vitkit.errors import VitkitError
from vitkit.finite import require_finite_output, require_finite_weights
from vitkit.inspect.attention import AttentionAnalysis, analyse_attention
from vitkit.inspect.capture import require_attention
from vitkit.inspect.features_pca import FeaturePCA, feature_pca
from vitkit.inspect.filters import FilterComponents, embedding_filter_components, filter_tiles
from vitkit.inspect.images import NamedImage
from vitkit.inspect.overlay import overlay_map, seen_region
from vitkit.inspect.posemb import WITHOUT_ABSOLUTE, position_similarity
from vitkit.inspect.windows import SwinAttentionAnalysis, swin_attention_analysis
from vitkit.models.registry import family_of
from vitkit.models.swin.model import SwinTransformer
from vitkit.models.vit.model import VisionTransformer
from vitkit.options import COMMAND_OPTIONS, check_args

JSON_FILE = "inspect.json"
INDEX_FILE = "index.html"
ROLLOUT_DIR = "rollout"
DISTANCE_DEFINITION = ("per head: sum_k a_qk * ||p_q - p_k|| in pixels over key patches k, averaged over query "
                       "patches q, then over images; patch-to-patch attention only (prefix token dropped as query "
                       "and key, each query's weights renormalised to sum to 1); patch centres model.stride "
                       "pixels apart")
WINDOW_DISTANCE_DEFINITION = ("per head: sum_k a_qk * ||p_q - p_k|| in pixels over the keys k of the query's window, "
                              "averaged over query tokens, then over images; positions on the un-shifted map; padding "
                              "tokens dropped as query and key, each query's weights renormalised; stage s tokens "
                              "patch_size * 2^s pixels apart")
THUMB_SIDE = 256


def _save_figure(fig: Figure, path: Path, dpi: int = 100) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")


def _rounded(array: np.ndarray, decimals: int = 5) -> Any:
    return np.round(np.asarray(array, dtype=np.float64), decimals).tolist()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:60] or "image"


# ---------------------------------------------------------------------------------- drawing
def draw_filters(filters: FilterComponents, path: Path) -> None:
    """Fig. 7 left: one RGB tile per principal component, in order of explained variance."""
    tiles = filter_tiles(filters.components)
    cols = min(7, len(tiles))
    rows = -(-len(tiles) // cols)
    fig = Figure(figsize=(1.1 * cols, 1.1 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, tile in zip(axes, tiles, strict=False):
        ax.imshow(tile, interpolation="nearest")
    fig.suptitle(f"Embedding filters: first {len(tiles)} principal components")
    _save_figure(fig, path)


def similarity_mosaic(similarity: np.ndarray) -> np.ndarray:
    """(rows, cols, rows, cols) -> one 2-D image of rows x cols tiles separated by NaN lines."""
    rows, cols = similarity.shape[:2]
    mosaic = np.full((rows * (rows + 1) - 1, cols * (cols + 1) - 1), np.nan)
    for i in range(rows):
        for j in range(cols):
            mosaic[i * (rows + 1): i * (rows + 1) + rows, j * (cols + 1): j * (cols + 1) + cols] = similarity[i, j]
    return mosaic


def draw_position_similarity(similarity: np.ndarray, path: Path) -> None:
    """Fig. 7 centre: the tile at (row, column) is that patch's similarity map, with a colour bar."""
    rows, cols = similarity.shape[:2]
    mosaic = similarity_mosaic(similarity)
    side = 5.5 * max(1.0, max(rows, cols) / 14)
    fig = Figure(figsize=(side * cols / max(rows, cols) + 1.2, side * rows / max(rows, cols)))
    ax = fig.subplots()
    image = ax.imshow(mosaic, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([j * (cols + 1) + (cols - 1) / 2 for j in range(cols)], [str(j + 1) for j in range(cols)])
    ax.set_yticks([i * (rows + 1) + (rows - 1) / 2 for i in range(rows)], [str(i + 1) for i in range(rows)])
    ax.tick_params(length=0, labelsize=7)
    ax.set_xlabel("Input patch column")
    ax.set_ylabel("Input patch row")
    ax.set_title("Position embedding similarity")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Cosine similarity")
    _save_figure(fig, path, dpi=150)  # every grid cell a few pixels wide


def draw_attention_distance(distance: np.ndarray, path: Path) -> None:
    """Fig. 7 right: one dot per head at its layer; the line is the mean over heads."""
    layers, heads = distance.shape
    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.subplots()
    depth = np.arange(1, layers + 1)
    for head in range(heads):
        ax.scatter(depth, distance[:, head], s=14, label=f"head {head + 1}" if heads <= 16 else None)
    ax.plot(depth, distance.mean(axis=1), color="black", linewidth=1, alpha=0.6, label="mean")
    ax.set_xlabel("Network depth (layer)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_xticks(depth)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    _save_figure(fig, path)


def draw_rollout(seen: Sequence[Image.Image], maps: np.ndarray, names: Sequence[str], path: Path) -> None:
    """Fig. 6: the images the model saw (top) and their rollout overlays (bottom)."""
    count = len(seen)
    aspect = seen[0].height / seen[0].width
    fig = Figure(figsize=(2.2 * count, 2 * 2.2 * aspect + 0.5), layout="constrained")
    axes = fig.subplots(2, count, squeeze=False)
    for k in range(count):
        axes[0, k].imshow(seen[k])
        axes[0, k].set_title(names[k][:24], fontsize=8)
        axes[1, k].imshow(overlay_map(seen[k], maps[k]))
        axes[0, k].set_axis_off()
        axes[1, k].set_axis_off()
    _save_figure(fig, path)


def draw_heads(seen: Sequence[Image.Image], maps: np.ndarray, names: Sequence[str], path: Path) -> None:
    """The last layer's heads, one column each, one row per image."""
    count, heads = maps.shape[:2]
    aspect = seen[0].height / seen[0].width
    fig = Figure(figsize=(1.6 * (heads + 1), (1.6 * aspect + 0.25) * count), layout="constrained")
    axes = fig.subplots(count, heads + 1, squeeze=False)
    for k in range(count):
        axes[k, 0].imshow(seen[k])
        axes[k, 0].set_title(names[k][:16], fontsize=7)
        for head in range(heads):
            axes[k, head + 1].imshow(overlay_map(seen[k], maps[k, head]))
            if k == 0:
                axes[k, head + 1].set_title(f"head {head + 1}", fontsize=7)
        for ax in axes[k]:
            ax.set_axis_off()
    _save_figure(fig, path)


def draw_block_distance(analysis: SwinAttentionAnalysis, path: Path) -> None:
    """Swin's Fig. 7 right: one dot per head at its block, a line through the block means, stages shaded."""
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.subplots()
    colours = matplotlib.colormaps["tab10"]
    means = []
    for i, (layout, distance) in enumerate(zip(analysis.layouts, analysis.distance, strict=True)):
        ax.scatter(np.full(len(distance), i + 1), distance, s=12, color=colours(layout.stage % 10),
                   label=f"stage {layout.stage + 1}" if layout.block == 0 else None)
        means.append(distance.mean())
    ax.plot(np.arange(1, len(means) + 1), means, color="black", linewidth=1, alpha=0.6, label="mean")
    for i, layout in enumerate(analysis.layouts):
        if layout.block == 0 and i:
            ax.axvline(i + 0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("Network depth (block; W-MSA and SW-MSA alternate)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_xticks(np.arange(1, len(means) + 1))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    _save_figure(fig, path)


def draw_window_attention(seen: Sequence[Image.Image], maps: Sequence[np.ndarray], names: Sequence[str],
                          path: Path) -> None:
    """Rows: images; columns: stages; each panel the centre token's window attention over the image."""
    count, stages = len(seen), len(maps)
    aspect = seen[0].height / seen[0].width
    fig = Figure(figsize=(1.8 * (stages + 1), (1.8 * aspect + 0.3) * count), layout="constrained")
    axes = fig.subplots(count, stages + 1, squeeze=False)
    for k in range(count):
        axes[k, 0].imshow(seen[k])
        axes[k, 0].set_title(names[k][:16], fontsize=7)
        for s in range(stages):
            axes[k, s + 1].imshow(overlay_map(seen[k], maps[s][k]))
            if k == 0:
                axes[k, s + 1].set_title(f"stage {s + 1}", fontsize=7)
        for ax in axes[k]:
            ax.set_axis_off()
    _save_figure(fig, path)


def draw_feature_pca(seen: Sequence[Image.Image], pca: FeaturePCA, names: Sequence[str], path: Path) -> None:
    """Rows: images; left the crop the model saw, right its patches coloured by the first three principal
    components of the layer's features (:mod:`vitkit.inspect.features_pca`)."""
    count = len(seen)
    aspect = seen[0].height / seen[0].width
    fig = Figure(figsize=(4.0, (1.8 * aspect + 0.3) * count), layout="constrained")
    axes = fig.subplots(count, 2, squeeze=False)
    for k in range(count):
        axes[k, 0].imshow(seen[k])
        axes[k, 0].set_title(names[k][:16], fontsize=7)
        axes[k, 1].imshow(pca.maps[k], interpolation="nearest")
        if k == 0:
            axes[k, 1].set_title(f"PCA of {pca.module}", fontsize=7)
        for ax in axes[k]:
            ax.set_axis_off()
    _save_figure(fig, path)


# ---------------------------------------------------------------------------------- report
def _index_html(title: str, figures: list[dict[str, str]], notes: list[str]) -> str:
    parts = [f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
             "figure{margin:2em 0}figcaption{color:#333}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for fig in figures:
        parts.append(f"<figure><img src='{html.escape(fig['file'])}' alt='{html.escape(fig['file'])}'>"
                     f"<figcaption>{html.escape(fig['caption'])}</figcaption></figure>")
    parts.extend(f"<p>{html.escape(note)}</p>" for note in notes)
    parts.append(f"<p>Numbers behind the figures: <a href='{JSON_FILE}'>{JSON_FILE}</a>.</p></body></html>\n")
    return "\n".join(parts)


#: The figures a report may hold; each family's record says which it gets (``figures``) and why not the
#: others (``why_not``): the report lists those reasons instead of meaningless pictures.
FIGURES = ("filters.png", "position_similarity.png", "attention_distance.png", "rollout.png", "attention_heads.png",
           "window_attention.png")


def write_report(model: nn.Module, images: Sequence[NamedImage], out_dir: str | os.PathLike, *,
                 components: int = 28, batch_size: int = 8, max_shown: int = 8,
                 title: str | None = None, objective=None, pca_layer: int | None = None) -> dict[str, Any]:
    """Run every analysis of §4.5 that applies to ``model``'s family on ``images`` and write ``out_dir``.

    ViT: ``filters.png`` (Fig. 7 left), ``position_similarity.png`` (Fig. 7 centre; skipped for models
    without absolute position embeddings), ``attention_distance.png`` (Fig. 7 right),
    ``rollout.png`` (Fig. 6, the first ``max_shown`` images) and ``rollout/NNN_name.png`` for every
    image, ``attention_heads.png`` (last layer, per head). Swin: ``filters.png``,
    ``attention_distance.png`` (per block, stages marked) and ``window_attention.png`` (see
    :mod:`vitkit.inspect.windows`); the ViT-only figures are listed as skipped, with the reason.
    Both: ``inspect.json`` and ``index.html``. With a pre-training ``objective``
    (:func:`vitkit.objectives.load_pretraining`) also what it predicts
    (:mod:`vitkit.inspect.reconstruction`): ``reconstruction.png`` (MAE) or ``mpp_colours.png``
    (masked patch prediction). With ``pca_layer`` (a block of a ViT, a stage of a Swin; negative from the
    end) also ``feature_pca.png``: that layer's patch features coloured by their first three principal
    components (:mod:`vitkit.inspect.features_pca`). Returns a summary: the files written, what was
    skipped and the mean attention distances.
    """
    check_args(COMMAND_OPTIONS, components=components, batch_size=batch_size, max_shown=max_shown,
               pca_layer=pca_layer)
    require_attention(model)
    if not images:
        raise VitkitError("no images to inspect")
    require_finite_weights(model, "the model to inspect")
    model.eval()
    record = family_of(model)
    family = record.name
    # first the forward passes, so that a model with non-finite attention writes nothing at all
    analyse, sections = ANALYSES[record.attention]
    analysis, maps = analyse(model, [item.image for item in images], batch_size)
    require_finite_output(maps, "attention maps")
    pca = None if pca_layer is None else feature_pca(model, [item.image for item in images], pca_layer,
                                                     batch_size=batch_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[dict[str, str]] = []
    notes: list[str] = []
    data: dict[str, Any] = {"model": {"name": model.config.name, "family": family, "config": model.config.to_dict()},
                            "images": [item.name for item in images]}

    filters = embedding_filter_components(model, components)
    draw_filters(filters, out / "filters.png")
    figures.append({"file": "filters.png", "caption": (
        f"Embedding filters (Fig. 7 left): first {len(filters.components)} principal components of the "
        f"{filters.note}; they explain {filters.explained_variance_ratio.sum():.0%} of the variance.")})
    data["embedding_filters"] = {"source": filters.source, "note": filters.note,
                                 "explained_variance_ratio": _rounded(filters.explained_variance_ratio, 6),
                                 "components": _rounded(filters.components)}

    skipped = {name: record.why_not[name] for name in FIGURES if name not in record.figures}
    notes.extend(f"{name} skipped: {reason}." for name, reason in skipped.items())
    data["skipped"] = skipped
    summary = sections(model, analysis, images, out, data, figures, notes, max_shown=max_shown)
    if pca is not None:
        shown = min(max_shown, len(images))
        size = tuple(model.preprocessing.image_size)
        thumbs = [seen_region(item.image, model.preprocessing, size, THUMB_SIDE) for item in images[:shown]]
        draw_feature_pca(thumbs, pca, [item.name for item in images[:shown]], out / "feature_pca.png")
        figures.append({"file": "feature_pca.png", "caption": (
            f"Principal components of the patch features of {pca.module} (layer {pca.layer}), the first three as "
            f"red, green and blue, fitted on all {len(images)} image(s) together ({shown} shown); they explain "
            f"{pca.explained_variance_ratio.sum():.0%} of the variance. Alike colours: patches the model "
            f"represents alike.")})
        data["feature_pca"] = {"layer": pca.layer, "module": pca.module, "grid": list(pca.maps.shape[1:3]),
                               "explained_variance_ratio": _rounded(pca.explained_variance_ratio, 6)}
    if objective is not None:
        from vitkit.inspect.reconstruction import write_pretraining_figures

        extra, numbers = write_pretraining_figures(model, objective, images, out, max_shown=max_shown,
                                                   batch_size=batch_size)
        figures.extend(extra)
        if numbers:
            data["pretraining"] = numbers
    data["figures"] = figures
    data["notes"] = notes

    write_text_atomic(out / JSON_FILE, json.dumps(data) + "\n")
    title = title or f"vitkit inspect: {model.config.name}"
    write_text_atomic(out / INDEX_FILE, _index_html(title, figures, notes))
    return {"out": str(out), "index": str(out / INDEX_FILE), "json": str(out / JSON_FILE), "family": family,
            "figures": [fig["file"] for fig in figures], "skipped": notes, "num_images": len(images), **summary}


def _vit_sections(model: VisionTransformer, analysis: AttentionAnalysis, images: Sequence[NamedImage], out: Path,
                  data: dict, figures: list[dict[str, str]], notes: list[str], *, max_shown: int) -> dict:
    """Position similarity, attention distance, rollout and last-layer heads of a ViT."""
    names = [item.name for item in images]
    token = "[class] token" if model.config.classifier == "token" else "mean patch token (GAP)"
    data.update(stride=model.stride, num_prefix_tokens=model.num_prefix_tokens)
    kind = model.config.posemb
    if kind in WITHOUT_ABSOLUTE:
        notes.append(f"Position-embedding similarity (Fig. 7 centre) skipped: {WITHOUT_ABSOLUTE[kind]}.")
        data["position_similarity"] = {"kind": kind, "skipped": WITHOUT_ABSOLUTE[kind]}
    else:
        similarity = position_similarity(model)
        draw_position_similarity(similarity, out / "position_similarity.png")
        rows, cols = similarity.shape[:2]
        figures.append({"file": "position_similarity.png", "caption": (
            f"Position embedding similarity (Fig. 7 centre): the tile at (row, column) shows the cosine similarity "
            f"of that patch's {kind} position embedding with every patch's, on the {rows}x{cols} grid.")})
        data["position_similarity"] = {"kind": kind, "grid": [rows, cols], "similarity": _rounded(similarity, 4)}

    draw_attention_distance(analysis.distance, out / "attention_distance.png")
    figures.append({"file": "attention_distance.png", "caption": (
        f"Mean attention distance (Fig. 7 right): per head (dots) and layer, in pixels, over {len(images)} "
        f"image(s); patch-to-patch attention only, renormalised without the prefix token.")})
    data["grid"] = list(analysis.grid)
    data["mean_attention_distance"] = {"unit": "pixels", "definition": DISTANCE_DEFINITION,
                                       "num_images": len(images), "per_head": _rounded(analysis.distance, 4),
                                       "per_layer_mean": _rounded(analysis.distance.mean(axis=1), 4)}

    size = tuple(model.preprocessing.image_size)
    rollout_dir = out / ROLLOUT_DIR
    overlays = []
    for k, item in enumerate(images):
        picture = overlay_map(seen_region(item.image, model.preprocessing, size), analysis.rollout[k])
        target = rollout_dir / f"{k:03d}_{_safe_name(item.name)}.png"
        with atomic_path(target) as tmp:
            picture.save(tmp, format="PNG")
        overlays.append(str(target.relative_to(out)))
    shown = min(max_shown, len(images))
    thumbs = [seen_region(item.image, model.preprocessing, size, THUMB_SIDE) for item in images[:shown]]
    draw_rollout(thumbs, analysis.rollout[:shown], names[:shown], out / "rollout.png")
    figures.append({"file": "rollout.png", "caption": (
        f"Attention Rollout (Fig. 6) from the {token} to the input patches, over the centre crops the model saw "
        f"({shown} of {len(images)} shown; every image in {ROLLOUT_DIR}/).")})
    draw_heads(thumbs, analysis.last_layer[:shown], names[:shown], out / "attention_heads.png")
    figures.append({"file": "attention_heads.png", "caption": (
        f"Last layer's attention from the {token} to the patches, one column per head ({shown} image(s)).")})
    data["rollout"] = {"from": token, "method": "heads averaged, 0.5*A + 0.5*I, rows renormalised, layers "
                       "multiplied; prefix columns dropped and the map renormalised to sum to 1",
                       "maps": [{"image": n, "file": f, "map": _rounded(m)}
                                for n, f, m in zip(names, overlays, analysis.rollout, strict=True)]}
    data["last_layer_heads"] = {"from": token, "maps": [{"image": n, "maps": _rounded(m)}
                                                       for n, m in zip(names, analysis.last_layer, strict=True)]}
    return {"overlays": overlays, "grid": list(analysis.grid),
            "mean_attention_distance": _rounded(analysis.distance, 3)}


def _swin_sections(model: SwinTransformer, analysis: SwinAttentionAnalysis, images: Sequence[NamedImage], out: Path,
                   data: dict, figures: list[dict[str, str]], notes: list[str], *, max_shown: int) -> dict:
    """Attention distance per block and stage, and one window's attention per stage, of a Swin."""
    per_stage = analysis.per_stage()
    draw_block_distance(analysis, out / "attention_distance.png")
    figures.append({"file": "attention_distance.png", "caption": (
        f"Mean attention distance (Fig. 7 right of the ViT paper) of every head (dots) of every block, in pixels, "
        f"over {len(images)} image(s); stage means "
        + ", ".join(f"{d:.1f}" for d in per_stage) + " px. Attention stays inside each window, so distances grow "
        "only as patch merging makes tokens coarser.")})
    data["patch_size"] = model.config.patch_size
    data["grid"] = list(analysis.layouts[0].grid)
    data["mean_attention_distance"] = {
        "unit": "pixels", "definition": WINDOW_DISTANCE_DEFINITION, "num_images": len(images),
        "per_block": [{"stage": lay.stage + 1, "block": lay.block + 1, "shift": lay.shift, "window": lay.window,
                       "stride": lay.stride, "per_head": _rounded(d, 4)}
                      for lay, d in zip(analysis.layouts, analysis.distance, strict=True)],
        "per_stage_mean": _rounded(np.array(per_stage), 4)}

    size = tuple(model.preprocessing.image_size)
    shown = min(max_shown, len(images))
    thumbs = [seen_region(item.image, model.preprocessing, size, THUMB_SIDE) for item in images[:shown]]
    names = [item.name for item in images]
    draw_window_attention(thumbs, [maps[:shown] for maps in analysis.window_maps], names[:shown],
                          out / "window_attention.png")
    figures.append({"file": "window_attention.png", "caption": (
        f"One window's attention per stage: the token at the centre of the image attends over its window in the "
        f"first (W-MSA) block of each stage, heads averaged ({shown} of {len(images)} image(s)); windows grow from "
        f"{analysis.layouts[0].window * analysis.layouts[0].stride} px in stage 1 as patch merging coarsens the "
        f"tokens.")})
    data["window_attention"] = {
        "query": "the token at the centre of the grid; first block of each stage; heads averaged",
        "maps": [{"stage": s + 1, "grid": list(maps.shape[1:]),
                  "maps": [{"image": n, "map": _rounded(m)} for n, m in zip(names, maps, strict=True)]}
                 for s, maps in enumerate(analysis.window_maps)]}
    return {"overlays": [], "grid": data["grid"],
            "mean_attention_distance": [_rounded(d, 3) for d in analysis.distance],
            "attention_distance_per_stage": _rounded(np.array(per_stage), 3)}


def _global_analysis(model: VisionTransformer, pictures: list, batch_size: int) -> tuple[AttentionAnalysis,
                                                                                           torch.Tensor]:
    """Attention over all tokens (ViT): distances, rollout and heads; the rollout maps are checked."""
    analysis = analyse_attention(model, pictures, batch_size)
    return analysis, torch.from_numpy(analysis.rollout)


def _windowed_analysis(model: SwinTransformer, pictures: list, batch_size: int) -> tuple[SwinAttentionAnalysis,
                                                                                           torch.Tensor]:
    """Attention within shifted windows (Swin): per-block distances and window maps, which are checked."""
    analysis = swin_attention_analysis(model, pictures, batch_size)
    return analysis, torch.from_numpy(np.concatenate([m.reshape(-1) for m in analysis.window_maps]))


#: a family record's attention kind -> (its analysis: (model, images, batch) -> (analysis, maps to check),
#: the report sections drawn from it)
ANALYSES = {"global": (_global_analysis, _vit_sections), "windowed": (_windowed_analysis, _swin_sections)}
