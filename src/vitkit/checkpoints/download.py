"""Files fetched by URL, kept in vitkit's download cache: written once, atomically, checked on every use.

    >>> from vitkit.checkpoints.download import download
    >>> download("https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz")
    PosixPath('~/.cache/vitkit/downloads/3f0c.../ViT-B_16.npz')

The cache lives in ``$VITKIT_CACHE``, else ``$XDG_CACHE_HOME/vitkit``, else ``~/.cache/vitkit``.
Each URL gets a folder ``downloads/<first 16 hex digits of sha256(url)>/`` holding the file under
its own name and ``download.json`` (URL, size, SHA-256 of the bytes). A download streams into a
temporary file beside its final place, hashing as it goes, and is renamed into place only when
every byte the server announced has arrived (and matches the expected SHA-256 when one is given);
the record is written after the file, so a file without its record is never trusted. A cache hit
re-hashes the file against its record: a damaged or truncated file is thrown away and fetched again.

Hugging Face Hub names do not come here: :mod:`vitkit.checkpoints.hub` hands them to ``huggingface_hub``,
which has its own cache, offline mode and token handling.

The downloader is hand-written on :mod:`urllib` because the ready-made ones do not fit:
``torch.hub.download_url_to_file`` accepts a body cut short by the server as complete (it reads
until the socket closes and compares sizes only for the progress bar), and ``huggingface_hub``'s
HTTP helpers are internal to that library.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from vitkit.atomic import atomic_path, write_text_atomic
from vitkit.errors import VitkitError

RECORD_FILE = "download.json"
CHUNK = 1 << 20
#: Seconds to wait for a connection or for the next bytes of a body.
TIMEOUT = 60.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LOOPBACK_NAMES = ("localhost",)


def cache_dir() -> Path:
    """The root of vitkit's download cache (see the module notes)."""
    if os.environ.get("VITKIT_CACHE"):
        return Path(os.environ["VITKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "vitkit"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> urllib.parse.SplitResult:
    """The parsed URL; https anywhere, plain http only to this machine (127.0.0.1, ::1, localhost)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        if not parts.hostname:
            raise VitkitError(f"{url}: no host in the URL")
        return parts
    if parts.scheme == "http":
        raise VitkitError(f"{url}: plain http is accepted only from this machine (127.0.0.1, localhost); use https")
    raise VitkitError(f"{url}: not an https URL")


def check_sha256(sha256: str | None) -> str | None:
    """``sha256`` in lower case, or a one-line error when it is not 64 hex digits."""
    if sha256 is None:
        return None
    if not _SHA256.fullmatch(sha256.lower()):
        raise VitkitError(f"expected a SHA-256 of 64 hex digits, got {sha256!r}")
    return sha256.lower()


def cached_path(url: str) -> Path:
    """Where ``url`` is (or would be) kept in the cache."""
    parts = check_url(url)
    name = os.path.basename(urllib.parse.unquote(parts.path)) or "download"
    name = re.sub(r"[^\w.+\-]", "_", name).lstrip(".") or "download"
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return cache_dir() / "downloads" / key / name


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def verify_cached(url: str, sha256: str | None = None) -> Path | None:
    """The cached file of ``url`` if it is there and intact (size and SHA-256 as recorded, and as
    ``sha256`` when given); otherwise None. A damaged entry is removed, with a warning."""
    path = cached_path(url)
    record = _read_record(path.parent)
    if not path.is_file() or record is None or record.get("url") != url:
        return None
    problem = None
    if path.stat().st_size != record.get("size"):
        problem = f"{path.stat().st_size} bytes where {record.get('size')} were downloaded"
    else:
        actual = _hash_file(path)
        if actual != record.get("sha256"):
            problem = "its SHA-256 changed since the download"
        elif sha256 is not None and actual != sha256:
            problem = f"SHA-256 {actual}, expected {sha256}"
    if problem is None:
        return path
    warnings.warn(f"{path}: cached download is damaged ({problem}); fetching it again", stacklevel=3)
    path.unlink(missing_ok=True)
    (path.parent / RECORD_FILE).unlink(missing_ok=True)
    return None


def _unreachable(url: str, reason: str) -> VitkitError:
    return VitkitError(f"could not download {url} ({reason}); pass a local file instead: fetch it yourself "
                       f"(e.g. curl -LO {url}) and give its path")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _fetch(url: str, destination: Path, *, label: str, progress: bool) -> tuple[int, str]:
    """Stream ``url`` into ``destination``; (bytes, sha256). Raises on a short or failed body."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "vitkit"})
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (scheme checked)
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        with open(destination, "wb") as out, tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                                                   desc=label, disable=not progress, leave=False) as bar:
            while block := response.read(CHUNK):
                out.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
    if expected is not None and received != expected:
        raise ConnectionError(f"connection closed after {received} of {expected} bytes")
    return received, digest.hexdigest()


def download(url: str, *, sha256: str | None = None, progress: bool | None = None) -> Path:
    """The local path of ``url``: from the cache when it is there and intact, else downloaded once.

    ``sha256`` (hex) is checked against the bytes; a mismatch is an error and nothing is cached.
    ``progress`` shows a tqdm bar (default: when stderr is a terminal). A network failure is a
    one-line :class:`VitkitError` saying how to pass a local file instead.
    """
    sha256 = check_sha256(sha256)
    path = cached_path(url)
    hit = verify_cached(url, sha256)
    if hit is not None:
        return hit
    if progress is None:
        progress = sys.stderr.isatty()
    path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable cache is the cache's error, not the network's
    try:
        with atomic_path(path) as tmp:
            size, actual = _fetch(url, tmp, label=path.name, progress=progress)
            if sha256 is not None and actual != sha256:
                raise VitkitError(f"{url}: SHA-256 of the download is {actual}, expected {sha256}; "
                                  "nothing was cached")
    except VitkitError:
        raise
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts and resets are OSErrors
        raise _unreachable(url, _reason(exc)) from None
    write_text_atomic(path.parent / RECORD_FILE, json.dumps({"url": url, "size": size, "sha256": actual}, indent=1))
    return path
