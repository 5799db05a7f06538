"""A family's checkpoint facts live in its folders (issue 20): read from every import in
``src/vitkit/checkpoints`` (module level or inside a function), the shared modules import no model
family, and a family's folder ``checkpoints/<a>/`` imports neither another family's models nor another
family's folder ``checkpoints/<b>/``. What two families' dialects share (transformers' directories,
timm's files, the rule machinery) lives in a shared module that both import."""

from __future__ import annotations

import ast
from pathlib import Path

import vitkit
from vitkit.models import FAMILY_PACKAGES

CHECKPOINTS = Path(vitkit.__file__).parent / "checkpoints"
#: the families' own checkpoint folders (``checkpoints/vit/``, ``checkpoints/swin/``, ...)
FAMILY_FOLDERS = tuple(sorted(p.name for p in CHECKPOINTS.iterdir() if (p / "__init__.py").is_file()))


def _imported(tree: ast.AST, package: str) -> list[tuple[str, int]]:
    """(dotted module name, line) of every import in ``tree``; ``package`` resolves relative ones."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = parts[:len(parts) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # ``from vitkit.models import vit`` imports the package vitkit.models.vit
            found += [(base, node.lineno)] + [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _owner(module: str, root: str, names: tuple[str, ...]) -> str | None:
    """The name in ``names`` whose package ``root.<name>`` holds ``module``, else None."""
    parts = module.split(".")
    prefix = root.split(".")
    if parts[:len(prefix)] == prefix and len(parts) > len(prefix) and parts[len(prefix)] in names:
        return parts[len(prefix)]
    return None


def violations(relative: Path, source: str) -> list[str]:
    """What the module at ``checkpoints/<relative>`` imports that belongs to a family not its own."""
    folder = relative.parts[0] if len(relative.parts) > 1 and relative.parts[0] in FAMILY_FOLDERS else None
    package = ".".join(["vitkit", "checkpoints", *relative.parent.parts])
    out: dict[tuple[int, str], str] = {}  # one line per import statement and kind
    for module, line in _imported(ast.parse(source), package):
        family = _owner(module, "vitkit.models", FAMILY_PACKAGES)
        if family is not None and family != folder:
            where = f"checkpoints/{folder}/" if folder else "a shared checkpoints module"
            out.setdefault((line, "models"), f"checkpoints/{relative}:{line} imports {module}: {where} imports "
                                             f"the {family} family's models")
        other = _owner(module, "vitkit.checkpoints", FAMILY_FOLDERS)
        if folder is not None and other is not None and other != folder:
            out.setdefault((line, "folder"), f"checkpoints/{relative}:{line} imports {module}: checkpoints/{folder}/ "
                                             f"imports checkpoints/{other}/")
    return list(out.values())


def test_family_facts_stay_in_their_folders():
    found = [v for path in sorted(CHECKPOINTS.rglob("*.py"))
             for v in violations(path.relative_to(CHECKPOINTS), path.read_text())]
    assert not found, "\n".join(found)


def test_the_guard_sees_each_kind_of_import():
    """The checks above find what they look for, in each spelling of an import."""
    assert {"vit", "swin"} <= set(FAMILY_FOLDERS)
    shared = Path("mapping.py")
    assert violations(shared, "from vitkit.models.vit.config import ViTConfig")
    assert violations(shared, "from vitkit.models import swin")
    assert violations(shared, "def f():\n    import vitkit.models.bit.model")
    assert not violations(shared, "from vitkit.models.registry import family_of\nfrom vitkit.models import protocol")
    swin = Path("swin/timm.py")
    assert violations(swin, "from vitkit.checkpoints.vit import timm")
    assert violations(swin, "from vitkit.checkpoints import vit")
    assert violations(swin, "from ..vit.hf import near_miss")
    assert violations(swin, "from vitkit.models.vit.config import ViTConfig")
    assert not violations(swin, "from vitkit.checkpoints.swin import hf\nfrom . import official\n"
                                "from vitkit.models.swin.config import SwinConfig\n"
                                "from vitkit.checkpoints import hf_directory, mapping")
