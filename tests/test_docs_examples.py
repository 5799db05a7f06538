"""The package docstring and the README's Python quick start run in the suite, so what they show cannot go
stale (issue 29, item 4: ``help(vitkit)`` once showed two R50 models where there are five).

The README's ```python blocks are executed statement by statement in a fresh folder; a statement whose
trailing comment is a Python literal shows its output: an expression's value must equal it, an assignment's
tensor must have it as its shape (``logits = model(x)  # (2, 10)``).
"""

from __future__ import annotations

import ast
import doctest
import io
import re
import tokenize
from pathlib import Path

import pytest

import vitkit

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_package_docstring_is_a_passing_doctest():
    result = doctest.testmod(vitkit, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


def readme_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.M | re.S)


def shown_outputs(source: str) -> dict[int, object]:
    """line number -> the literal a line's trailing comment shows (lines whose comment is not one are left out)."""
    shown = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string[1:].strip()
            try:
                shown[token.start[0]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                continue
    return shown


def test_the_readme_has_a_python_quick_start():
    blocks = readme_blocks()
    assert blocks and any("vitkit.create_model" in block for block in blocks)
    assert sum(len(shown_outputs(block)) for block in blocks) >= 2  # the outputs it shows are checked below


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_a_readme_python_block_runs_and_shows_its_real_outputs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the block writes "my-vit" where it runs
    source = readme_blocks()[index]
    shown = shown_outputs(source)
    namespace: dict[str, object] = {}
    for statement in ast.parse(source).body:
        code = ast.Module(body=[statement], type_ignores=[])
        if statement.lineno in shown and isinstance(statement, ast.Expr):
            value = eval(compile(ast.Expression(statement.value), "README.md", "eval"), namespace)
            assert value == shown[statement.lineno], ast.get_source_segment(source, statement)
            continue
        exec(compile(code, "README.md", "exec"), namespace)
        if statement.lineno in shown and isinstance(statement, ast.Assign):
            value = eval(ast.unparse(statement.targets[0]), namespace)
            value = value[0] if isinstance(value, tuple) else value  # ``logits, attentions = ...``: the first
            assert tuple(value.shape) == shown[statement.lineno], ast.get_source_segment(source, statement)
