"""ImageFolder trees: one sub-folder per class, images anywhere below it.

Two layouts are recognised:

- ``root/train/<class>/...`` plus ``root/val/<class>/...`` (or ``test/``, ``valid/``,
  ``validation/``): the splits are used as given. When both ``val/`` and ``test/`` exist, split
  "val" reads ``val/`` and split "test" reads ``test/``; with only one, both names read it.
- ``root/<class>/...``: one pool, split by :func:`vitkit.data.sources.open_source` with a seeded
  stratified split.

Class ids are the sorted class-folder names (the union over the splits, so "cat" has the same id
in train and val). Files are images when PIL can open their extension; hidden files and folders
(".name") are ignored, and class folders without any image are left out with a warning.

Without labels (self-supervised pre-training, :func:`read_unlabelled_folder`) any folder of images
will do: a flat folder, or an ImageFolder tree whose class names are ignored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from vitkit.errors import VitkitError

log = logging.getLogger("vitkit.data")

#: Extensions of the formats PIL can *read* (``registered_extensions`` also lists write-only ones).
IMAGE_EXTENSIONS = frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)

EVAL_DIR_NAMES = ("val", "test", "valid", "validation")


def _visible(name: str) -> bool:
    return not name.startswith(".")


def is_image_file(path: Path) -> bool:
    return _visible(path.name) and path.suffix.lower() in IMAGE_EXTENSIONS


def _images_below(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        found += [Path(dirpath) / f for f in sorted(filenames) if is_image_file(Path(f))]
    return found


def class_images(folder: Path) -> dict[str, list[Path]]:
    """{class name: sorted image paths} for the class sub-folders of ``folder`` that hold images."""
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p.name)):
        files = _images_below(sub)
        if files:
            classes[sub.name] = files
        else:
            log.warning("ignoring class folder without images: %s", sub)
    return classes


def split_folders(root: Path) -> dict[str, Path] | None:
    """{"train": dir, "test": dir, "val": dir} when ``root`` holds train/ and an evaluation folder."""
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    evals = [subdirs[name] for name in EVAL_DIR_NAMES if name in subdirs]
    if "train" not in subdirs or not evals:
        return None
    test = subdirs.get("test", evals[0])
    val = next((subdirs[n] for n in ("val", "valid", "validation") if n in subdirs), test)
    return {"train": subdirs["train"], "test": test, "val": val}


def read_image_folder(root: Path, split: str) -> tuple[dict[str, list[Path]], list[str], bool]:
    """Scan ``root`` for ``split`` ("train", "test" or "val").

    Returns (class name -> image paths, sorted label names over all splits, whether the tree had
    no split folders -- then the paths are the whole pool, which the caller splits).
    """
    if not any(True for _ in root.iterdir()):
        raise VitkitError(f"{root}: the folder is empty; expected one sub-folder of images per class")
    splits = split_folders(root)
    if splits is None:
        pool = class_images(root)
        if not pool and _images_in(root):
            raise VitkitError(f"labels missing: {root} is a flat folder of images; supervised commands need one "
                              f"sub-folder of images per class (self-supervised pre-training, vitkit train "
                              f"--objective mpp|mae, takes it as it is)")
        _check_classes(root, pool.keys())
        return pool, sorted(pool), True
    per_split = {name: class_images(path) for name, path in splits.items()}
    names = sorted(set().union(*(c.keys() for c in per_split.values())))
    _check_classes(root, names)
    if not per_split[split]:
        raise VitkitError(f"{splits[split]}: no class sub-folders with images for split {split!r}")
    return per_split[split], names, False


def _check_classes(root: Path, names: Iterable[str]) -> None:
    names = list(names)
    if not names:
        raise VitkitError(f"{root}: no class sub-folders with images (supported extensions include "
                          f".png .jpg .jpeg .bmp .gif .tif .webp)")
    if len(names) == 1:
        raise VitkitError(f"{root}: only one class ({names[0]!r}); classification needs at least two class "
                          f"sub-folders")


def _images_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (not below), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def read_unlabelled_folder(root: Path, split: str) -> tuple[list[Path], list[int], bool]:
    """Images of ``root`` for ``split``, labels ignored: (paths, group ids, whether the paths are the
    whole pool, which the caller splits per group).

    With train/ and val/ (or test/) folders, every image below the split's folder. Otherwise every
    image below ``root``; each class sub-folder is a group (ids as in a labelled ImageFolder, so an
    ImageFolder tree splits exactly as it would with its labels) and the files directly in
    ``root`` form one more.
    """
    if not any(True for _ in root.iterdir()):
        raise VitkitError(f"{root}: the folder is empty; expected image files")
    splits = split_folders(root)
    if splits is not None:
        paths = _images_below(splits[split])
        if not paths:
            raise VitkitError(f"{splits[split]}: no images for split {split!r}")
        return paths, [0] * len(paths), False
    classes = class_images(root)
    loose = _images_in(root)
    paths = [p for name in classes for p in classes[name]] + loose
    groups = [k for k, name in enumerate(classes) for _ in classes[name]] + [len(classes)] * len(loose)
    if not paths:
        raise VitkitError(f"{root}: no images (supported extensions include .png .jpg .jpeg .bmp .gif .tif .webp)")
    return paths, groups, True
