"""Where a checkpoint may be written: one overwrite rule for ``save_native``, ``save_model``,
``convert`` and ``vitkit convert --overwrite``.

A destination that does not exist (or an empty directory, for a format written as a directory) is
written. Anything else is replaced only with ``overwrite=True`` (``--overwrite``): a file by a file
format, a directory only when it is a checkpoint of the same format (the dialect records of that
name recognise it) -- a folder of other things (a user's ``config.json``, a project) is refused
even then, because replacing a directory removes every file in it. A directory is replaced whole
(:func:`vitkit.atomic.atomic_directory`: a new folder renamed into place), a file by a temporary
file renamed over it (the writers use :func:`vitkit.atomic.atomic_path`), so a reader never sees a
mix of old and new files.
"""

from __future__ import annotations

import os
from pathlib import Path

from vitkit.checkpoints.dialect import Probe, named
from vitkit.errors import VitkitError


def writes_directory(fmt: str, path: Path) -> bool:
    """Whether format ``fmt`` writes a directory at ``path`` (timm: a hub directory for a name without a suffix)."""
    return any(d.directory or (d.writes_directory is not None and d.writes_directory(path)) for d in named(fmt))


def check_destination(path: str | os.PathLike, fmt: str, *, overwrite: bool) -> bool:
    """Refuse, in one line, to write format ``fmt`` at ``path`` where that would replace something it
    may not (see the module notes); returns whether the format writes a directory there."""
    path = Path(path)
    directory = writes_directory(fmt, path)
    if not os.path.lexists(path) or (directory and path.is_dir() and not any(path.iterdir())):
        return directory
    if not overwrite:
        raise VitkitError(f"{path}: already exists (pass overwrite=True, or --overwrite on the command line, to "
                          f"replace it)")
    if directory and not path.is_dir():
        raise VitkitError(f"{path}: is a file; the {fmt} format is a directory")
    if not directory and path.is_dir():
        raise VitkitError(f"{path}: is a directory; the {fmt} format is a file")
    if directory and not any(d.recognise(Probe(path)) for d in named(fmt)):
        raise VitkitError(f"{path}: is not a {fmt} checkpoint, so overwrite does not replace it (that would delete "
                          f"every file in it): remove it yourself or choose another path")
    return directory
