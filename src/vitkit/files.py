"""Reading a path the user named: only regular files, so that a FIFO or a device never hangs a command.

``open()`` on a named pipe blocks until some other process writes to it, and ``/dev/zero`` or
``/dev/urandom`` never end: a command pointed at one would hang or fill memory instead of saying
what is wrong. Every reader of checkpoints, configuration files, data archives and images asks
:func:`require_regular_file` first (it follows symbolic links, so a link to a file is fine).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vitkit.errors import VitkitError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_file_kind(path: str | os.PathLike) -> str | None:
    """``None`` for a regular file (or a missing path); else what it is, e.g. ``"a named pipe (FIFO)"``."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def require_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` when it is an existing regular file; a one-line :class:`VitkitError` otherwise."""
    path = Path(path)
    if not path.exists():
        raise VitkitError(f"{path}: no such {what}")
    kind = special_file_kind(path)
    if kind is not None:
        raise VitkitError(f"{path}: is {kind}, not a regular {what}; vitkit reads only regular files")
    return path
