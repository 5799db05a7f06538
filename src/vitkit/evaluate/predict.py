"""Classifying image files: the library half of ``vitkit predict``."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from vitkit.errors import VitkitError
from vitkit.finite import require_finite_output
from vitkit.models.protocol import VitkitModel
from vitkit.options import COMMAND_OPTIONS, check_args


def expand_image_paths(patterns: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders searched recursively for images, globs expanded; in order, no repeats.

    A path that does not exist (and matches nothing as a glob), or a folder without images, is a
    one-line error.
    """
    from vitkit.data.folders import is_image_file

    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_file() or (path.exists() and not path.is_dir()):  # a FIFO or device: refused as unreadable
            found.append(path)
        elif path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
            if not images:
                raise VitkitError(f"{path}: no image files in this folder")
            found += images
        else:
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise VitkitError(f"{pattern}: no such file, folder or matching files")
            found += files
    seen: set[Path] = set()
    return [p for p in found if not (p in seen or seen.add(p))]


@torch.no_grad()
def predict_images(model: VitkitModel, paths: Sequence[str | os.PathLike], *, top_k: int = 5,
                   device: torch.device | str | None = None, batch_size: int = 32,
                   each_image: Callable[[dict[str, Any], torch.Tensor, Any], None] | None = None
                   ) -> list[dict[str, Any]]:
    """For each path: ``{"path", "top": [{"label", "index", "probability"}...], "error"}``.

    Unreadable files get ``error`` set instead of failing the others. ``each_image(row, x, image)``
    is called for every image read (``x``: its preprocessed (1, 3, H, W) batch, ``image``: the RGB
    picture) and may add to its row: :func:`vitkit.inspect.overlay.rollout_overlay_writer` writes the
    attention-rollout overlay of each (Fig. 6), as ``vitkit predict --attention DIR`` does.
    """
    from vitkit.data.images import BadImageError, open_rgb
    from vitkit.data.transforms import eval_transform

    check_args(COMMAND_OPTIONS, top_k=top_k, batch_size=batch_size)
    if model.config.num_classes == 0:
        raise VitkitError("the checkpoint has no classification head (a pre-trained encoder, e.g. self-supervised): "
                          "fine-tune it first (vitkit finetune)")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    transform = eval_transform(model.preprocessing)
    names = model.label_names or [str(i) for i in range(model.config.num_classes)]
    k = min(top_k, len(names))
    results: list[dict[str, Any]] = []
    for start in range(0, len(paths), batch_size):
        chunk = [Path(p) for p in paths[start:start + batch_size]]
        images, rows = [], []
        for path in chunk:
            row: dict[str, Any] = {"path": str(path), "top": [], "error": None}
            results.append(row)
            try:
                images.append(open_rgb(path))
                rows.append(row)
            except BadImageError as exc:
                row["error"] = str(exc).removeprefix(f"{path}: ")
        if not images:
            continue
        x = torch.stack([transform(im) for im in images]).to(device)
        logits = model(x)
        require_finite_output(logits, "logits")
        probs = logits.float().softmax(dim=-1).cpu()
        values, indices = probs.topk(k, dim=-1)
        for i, row in enumerate(rows):
            row["top"] = [{"label": names[j], "index": int(j), "probability": float(v)}
                          for v, j in zip(values[i].tolist(), indices[i].tolist(), strict=True)]
            if each_image is not None:
                each_image(row, x[i:i + 1], images[i])
    if all(r["error"] for r in results):
        reasons = "; ".join(f"{r['path']}: {r['error']}" for r in results[:3])
        raise VitkitError(f"none of the {len(results)} images could be read; first reasons: {reasons}")
    return results

