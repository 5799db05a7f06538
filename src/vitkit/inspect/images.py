"""The images an inspection looks at: files and folders the user names, or a default set that
needs no download (the bundled sample picture plus a few scikit-learn digits)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from vitkit.data.images import BadImageError, open_rgb
from vitkit.errors import VitkitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class NamedImage(NamedTuple):
    name: str
    image: Image.Image


def load_images(paths: Sequence[str | os.PathLike], skipped: list[str] | None = None) -> list[NamedImage]:
    """Images from files, and from folders (their image files, sorted, not recursive).

    A path that does not exist is an error; a file that exists but does not decode is skipped
    (as ``vitkit predict`` does), with ``"path: reason"`` appended to ``skipped`` when given. When
    no image at all could be read, the error lists the first reasons.
    """
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise VitkitError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif not path.exists():
            raise VitkitError(f"{path}: no such image file")
        else:
            files.append(path)
    if not files:
        raise VitkitError("no images given")
    out: list[NamedImage] = []
    reasons: list[str] = []
    for path in files:
        try:
            out.append(NamedImage(path.name, open_rgb(path)))
        except BadImageError as err:
            reasons.append(str(err) if str(err).startswith(str(path)) else f"{path}: {err}")
    if skipped is not None:
        skipped.extend(reasons)
    if not out:
        raise VitkitError(f"none of the {len(files)} images could be read; first reasons: {'; '.join(reasons[:3])}")
    return out


def default_images(num_digits: int = 7) -> list[NamedImage]:
    """The bundled ``assets/sample.png`` and the first example of digits 0, 1, ... from
    scikit-learn's built-in 8x8 digits, encoded as the ``digits`` data source has them (light
    ink on black, as a model trained on that source saw them), enlarged to 64x64."""
    from vitkit.data.bundled import digits_arrays

    with Image.open(files("vitkit") / "assets" / "sample.png") as sample:
        out = [NamedImage("sample.png", sample.convert("RGB"))]
    images, labels = digits_arrays()
    for digit in range(min(num_digits, 10)):
        index = int(np.flatnonzero(labels == digit)[0])
        image = Image.fromarray(images[index]).resize((64, 64), Image.Resampling.NEAREST).convert("RGB")
        out.append(NamedImage(f"digit_{digit}_{index}", image))
    return out
