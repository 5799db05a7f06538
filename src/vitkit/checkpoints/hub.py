"""Checkpoints by name: one function turns what a user wrote into a local file or directory.

    >>> from vitkit.checkpoints.hub import resolve_checkpoint
    >>> resolve_checkpoint("hf-hub:google/vit-base-patch16-224")       # the Hugging Face cache
    >>> resolve_checkpoint("official:imagenet21k/ViT-B_16")            # gs://vit_models, vitkit's cache
    >>> resolve_checkpoint("runs/s16/model")                           # a local path: as it is

``vitkit.load_model`` and every CLI command pass their checkpoint through
:func:`resolve_checkpoint`, so each accepts, in this order:

========================================  ====================================================
``PATH``                                  a local file or directory; an existing path always wins
``hf-hub:ORG/REPO[@REV]``                 a Hugging Face Hub repository (transformers or timm
                                          layout); ``REV`` is a branch, tag or commit
``ORG/REPO[@REV]``                        the same, when no such local path exists
``official:FOLDER/NAME``                  a file of the official bucket ``gs://vit_models``
                                          (:mod:`vitkit.checkpoints.vit.pretrained`), ``.npz`` optional
``gs://BUCKET/PATH``                      a public Google Cloud Storage object
``https://...``                           any file
========================================  ====================================================

The three download kinds take a ``#sha256=HEX`` suffix, checked against the bytes.

Hub names go to ``huggingface_hub`` (``snapshot_download``): its cache (``HF_HUB_CACHE``), its
offline mode (``HF_HUB_OFFLINE=1``) and its token (``HF_TOKEN`` or ``hf auth login``) apply
unchanged; only config files and one set of weights are fetched (safetensors when the repository
has them). URLs go to :mod:`vitkit.checkpoints.download`. Variant names such as ``ViT-B/16`` build random
models with ``--model``; as a checkpoint they are an error that says how to spell the weights.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import vitkit.models  # noqa: F401  (registers the model families whose variant names _variant_hint knows)
from vitkit.checkpoints.vit.pretrained import COMPLETE_FOLDERS, OFFICIAL_FOLDERS, OFFICIAL_URL, official_names
from vitkit.errors import VitkitError
from vitkit.models.registry import normalise_name, resolve_name

HUB_PREFIX = "hf-hub:"
OFFICIAL_PREFIX = "official:"
#: Weight files looked for in a hub repository, in order of preference (safetensors first).
HUB_CONFIG_FILES = ["config.json", "preprocessor_config.json"]
HUB_SAFETENSORS = ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"]
HUB_TORCH_FILES = ["pytorch_model.bin", "open_clip_pytorch_model.bin"]
#: A name that ends like this is a file the user meant to have, never a hub repository.
_FILE_SUFFIXES = (".npz", ".safetensors", ".pth", ".pt", ".bin", ".onnx", ".json", ".yaml")
_REPO_PART = r"[A-Za-z0-9][\w.\-]{0,95}"
_BARE_REPO = re.compile(rf"({_REPO_PART}/{_REPO_PART})(?:@([\w.\-/]+))?")


@dataclass(frozen=True)
class CheckpointSpec:
    """What a checkpoint string names: ``kind`` is ``path``, ``hub`` or ``url``."""

    kind: str
    target: str
    revision: str | None = None
    sha256: str | None = None


def _split_sha256(text: str) -> tuple[str, str | None]:
    if "#sha256=" in text:
        text, digest = text.split("#sha256=", 1)
        from vitkit.checkpoints.download import check_sha256

        return text, check_sha256(digest)
    return text, None


def _official_url(name: str) -> str:
    folder, _, stem = name.partition("/")
    if folder not in OFFICIAL_FOLDERS or not stem or "/" in stem:
        raise VitkitError(f"{OFFICIAL_PREFIX}{name}: expected {OFFICIAL_PREFIX}FOLDER/NAME with FOLDER one of "
                          f"{', '.join(OFFICIAL_FOLDERS)} (see `vitkit models --pretrained`)")
    stem = stem.removesuffix(".npz")
    known = official_names(folder)
    if folder in COMPLETE_FOLDERS and stem not in known:
        raise VitkitError(f"{OFFICIAL_PREFIX}{name}: not a published file of gs://vit_models/{folder} "
                          f"(one of {', '.join(known)})")
    return f"{OFFICIAL_URL}/{folder}/{stem}.npz"


def _hub_spec(text: str, original: str) -> CheckpointSpec:
    repo, _, revision = text.partition("@")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        raise VitkitError(f"{original}: not a Hugging Face Hub repository id ({_first_line(exc)})") from None
    if "/" not in repo:
        raise VitkitError(f"{original}: a Hugging Face Hub name is ORG/REPO")
    return CheckpointSpec("hub", repo, revision or None)


def _variant_hint(text: str) -> str | None:
    """A hint when ``text`` is a model variant name rather than a checkpoint."""
    try:
        variant = resolve_name(text)
    except VitkitError:
        return None
    official = [s for s in official_names("imagenet21k") if normalise_name(s) == normalise_name(variant)]
    spelled = f"{OFFICIAL_PREFIX}imagenet21k/{official[0]}" if official else "hf-hub:ORG/REPO"
    return (f"{text}: no such file or directory ({variant} is a model variant: `--model {variant}` builds it "
            f"randomly initialised; its pretrained weights are spelled like {spelled}, "
            "see `vitkit models --pretrained`)")


def parse_checkpoint(spec: str | os.PathLike) -> CheckpointSpec:
    """Classify ``spec`` without touching the network (see the module notes for the order)."""
    if not isinstance(spec, str):
        return CheckpointSpec("path", os.fspath(spec))
    if os.path.exists(spec):
        return CheckpointSpec("path", spec)
    if spec.startswith(HUB_PREFIX):
        return _hub_spec(spec[len(HUB_PREFIX):], spec)
    if spec.startswith(OFFICIAL_PREFIX):
        name, digest = _split_sha256(spec[len(OFFICIAL_PREFIX):])
        return CheckpointSpec("url", _official_url(name), sha256=digest)
    if spec.startswith("gs://"):
        path, digest = _split_sha256(spec[len("gs://"):])
        if "/" not in path.strip("/"):
            raise VitkitError(f"{spec}: expected gs://BUCKET/PATH")
        return CheckpointSpec("url", f"https://storage.googleapis.com/{path}", sha256=digest)
    if re.match(r"[A-Za-z][\w+.\-]*://", spec):
        url, digest = _split_sha256(spec)
        from vitkit.checkpoints.download import check_url

        check_url(url)
        return CheckpointSpec("url", url, sha256=digest)
    hint = _variant_hint(spec)
    if hint:
        raise VitkitError(hint)
    if _BARE_REPO.fullmatch(spec) and not spec.lower().endswith(_FILE_SUFFIXES):
        return _hub_spec(spec, spec)
    return CheckpointSpec("path", spec)


def resolve_checkpoint(spec: str | os.PathLike, *, progress: bool | None = None) -> Path:
    """The local file or directory ``spec`` names, fetched into a cache first when it is a name.

    An existing local path is returned as it is; a path that does not exist is a one-line
    :class:`VitkitError`. ``progress`` shows download bars (default: when stderr is a terminal).
    """
    parsed = parse_checkpoint(spec)
    if parsed.kind == "hub" and not str(spec).startswith(HUB_PREFIX):
        try:  # a bare ORG/REPO may as well be a mistyped local path: say both
            return hub_snapshot(parsed.target, parsed.revision)
        except VitkitError as exc:
            raise VitkitError(f"{spec}: no such file or directory; as a Hugging Face Hub name: {exc}") from None
    if parsed.kind == "hub":
        return hub_snapshot(parsed.target, parsed.revision, original=str(spec))
    if parsed.kind == "url":
        from vitkit.checkpoints.download import download

        return download(parsed.target, sha256=parsed.sha256, progress=progress)
    path = Path(parsed.target)
    if not path.exists():
        raise VitkitError(f"{path}: no such file or directory")
    return path


def is_checkpoint_name(spec: str | os.PathLike) -> bool:
    """True when ``spec`` is a name to fetch (hub repository or URL) rather than a local path."""
    try:
        return parse_checkpoint(spec).kind != "path"
    except VitkitError:
        return False


# ------------------------------------------------------------------------------------ the hub
def _first_line(exc: BaseException) -> str:
    from vitkit.checkpoints.tensor_files import first_line

    return first_line(exc)


def _has_any(folder: Path, patterns: list[str]) -> bool:
    return any(any(folder.glob(p)) for p in patterns)


def hub_snapshot(repo: str, revision: str | None = None, *, original: str | None = None) -> Path:
    """The local snapshot directory of a Hugging Face Hub repository, with its config files and one
    set of weights (safetensors when the repository has them, else the torch files).

    Everything else -- cache location, offline mode, tokens, resumable downloads -- is
    ``huggingface_hub``'s own behaviour.
    """
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    from vitkit.version import __version__

    shown = original or f"{HUB_PREFIX}{repo}" + (f"@{revision}" if revision else "")

    def snapshot(patterns: list[str]) -> Path:
        return Path(huggingface_hub.snapshot_download(repo, revision=revision, allow_patterns=patterns,
                                                      library_name="vitkit", library_version=__version__))

    try:
        folder = snapshot(HUB_CONFIG_FILES + HUB_SAFETENSORS)
        if not _has_any(folder, HUB_SAFETENSORS):
            folder = snapshot(HUB_CONFIG_FILES + HUB_TORCH_FILES)
    except hf_errors.RevisionNotFoundError:
        raise VitkitError(f"{shown}: the repository has no revision {revision!r}") from None
    except hf_errors.GatedRepoError:
        raise VitkitError(f"{shown}: a gated repository; accept its terms on huggingface.co and log in "
                          "(`hf auth login`, or set HF_TOKEN)") from None
    except hf_errors.RepositoryNotFoundError:
        raise VitkitError(f"{shown}: no Hugging Face Hub repository {repo!r} (a private one needs "
                          "`hf auth login` or HF_TOKEN)") from None
    except hf_errors.LocalEntryNotFoundError as exc:
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            reason = "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"
        else:
            reason = f"the Hub is unreachable and it is not in the Hugging Face cache: {_first_line(exc)}"
        raise VitkitError(f"could not download {shown} ({reason}); pass a local directory instead "
                          f"(e.g. one made by `hf download {repo}` on a machine with network)") from None
    except (hf_errors.HfHubHTTPError, hf_errors.HFValidationError, OSError) as exc:
        raise VitkitError(f"could not download {shown} ({_first_line(exc)}); pass a local directory "
                          "instead") from None
    if not (folder / "config.json").is_file() and not _has_any(folder, HUB_SAFETENSORS + HUB_TORCH_FILES):
        raise VitkitError(f"{shown}: the repository has no config.json and no weights vitkit reads "
                          f"({', '.join(HUB_SAFETENSORS[:1] + HUB_TORCH_FILES[:1])})")
    return folder
