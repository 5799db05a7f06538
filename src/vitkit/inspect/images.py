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

from vitkit.data.images import open_rgb
from vitkit.errors import VitkitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class NamedImage(NamedTuple):
    name: str
    image: Image.Image


def open_image(path: str | os.PathLike) -> Image.Image:
    """An upright 8-bit RGB image from ``path`` (decoded as everywhere in vitkit, by
    :func:`vitkit.data.images.open_rgb`), or a one-line :class:`VitkitError`."""
    path = Path(path)
    if not path.is_file():
        raise VitkitError(f"{path}: no such image file")
    return open_rgb(path)


def load_images(paths: Sequence[str | os.PathLike]) -> list[NamedImage]:
    """Images from files, and from folders (their image files, sorted, not recursive)."""
    out: list[NamedImage] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise VitkitError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(NamedImage(p.name, open_image(p)) for p in found)
        else:
            out.append(NamedImage(path.name, open_image(path)))
    if not out:
        raise VitkitError("no images given")
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
