"""Write files so that a crash never leaves a half-written one behind: temp file, then rename; a
directory (a checkpoint of several files) is written the same way: a new folder renamed into place."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary file is removed and the old ``path`` (if any) is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600), and writers may recreate it: set the usual mode last.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28, musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # an old kernel, a filesystem that cannot
        return False
    raise OSError(error, os.strerror(error), str(b))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty directory named like ``path`` (inside a temporary folder beside it); on success
    it takes ``path``'s place, so a reader sees the old directory or the new one, never a mix of
    their files.

    An existing directory at ``path`` is exchanged with the new one in a single rename where the
    system offers it (Linux ``renameat2``), else moved aside and back on failure (between those two
    renames ``path`` is briefly absent, never mixed); the old one is then removed. On an exception
    nothing at ``path`` changes and the temporary folder is removed. A symbolic link at ``path`` is
    followed: the directory it names is replaced and the link keeps naming it.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    staged = folder / path.name
    staged.mkdir()
    try:
        yield staged
        if path.is_dir() and not path.is_symlink() and any(path.iterdir()):
            if not _exchange(staged, path):
                aside = folder / f"{path.name}.old"
                os.replace(path, aside)
                try:
                    os.replace(staged, path)
                except OSError:
                    os.replace(aside, path)
                    raise
        else:  # nothing there, or an empty directory: rename() replaces it
            os.replace(staged, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
