"""The one overwrite rule (issue 29, item 2) swept over the dialect registry (issue 29, item 7), as
test_dialects.py sweeps its round-trips: for every record that writes and each family it holds, saving
onto a user's existing file, or into a user's non-empty folder for a directory dialect, is refused in
one line by the library and by ``vitkit convert`` and leaves what the user had exactly as it was;
``overwrite=True`` replaces an existing checkpoint of the same dialect with the new model."""

from __future__ import annotations

import warnings

import pytest
import torch
from clirun import run_fails
from dialect_testing import TINY, WRITERS, model_for
from formats_testing import images, logits

from vitkit import VitkitError, load_model, save_model, save_native
from vitkit.checkpoints.dialect import recognising

#: the refusals cost no export (the destination is checked first): every writer and family, none slow
REFUSALS = [pytest.param(*writer.values, id=writer.id) for writer in WRITERS]


def _snapshot(root):
    """Every path under ``root`` (itself included) with its bytes (None for a folder)."""
    paths = [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]
    return {str(p.relative_to(root.parent)): None if p.is_dir() else p.read_bytes() for p in paths}


def _user_path(tmp_path, dialect):
    """The user's own file (a file dialect) or non-empty folder (a directory dialect), not a checkpoint."""
    if dialect.directory:
        path = tmp_path / "mine"
        path.mkdir()
        (path / "config.json").write_text('{"mine": true}\n')
        (path / "notes.txt").write_text("keep")
    else:
        path = tmp_path / f"mine{dialect.suffixes[0]}"
        path.write_bytes(b"the user's own file")
    return path


def _save(model, path, dialect, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the export check's measurement is not what is tested here
        return save_model(model, path, to=dialect.name, allow_approx=True, **kwargs)


def _refused(write, match: str) -> None:
    with pytest.raises(VitkitError, match=match) as refused:
        write()
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("dialect", "family"), REFUSALS)
def test_saving_onto_a_users_file_or_folder_is_refused_and_leaves_it_alone(tmp_path, capsys, dialect, family):
    model = model_for(dialect, family)
    user = _user_path(tmp_path, dialect)
    before = _snapshot(user)
    _refused(lambda: _save(model, user, dialect), rf"{user.name}: already exists \(pass overwrite=True")
    if dialect.directory:  # overwrite replaces a checkpoint of the dialect, never a user's folder
        _refused(lambda: _save(model, user, dialect, overwrite=True),
                 f"is not a {dialect.name} checkpoint, so overwrite does not replace it")
    save_native(model, tmp_path / "source")
    line = run_fails(capsys, ["convert", str(tmp_path / "source"), str(user), "--to", dialect.name, "--no-progress"])
    assert f"{user.name}: already exists" in line
    assert _snapshot(user) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([user.name, "source"])  # nothing left beside it


@pytest.mark.parametrize(("dialect", "family"), WRITERS)  # ONNX beyond ViT: slow, as in test_dialects
def test_overwrite_replaces_a_checkpoint_of_the_same_dialect(tmp_path, dialect, family):
    old = model_for(dialect, family)
    new = TINY[family](old.config.num_classes)
    with torch.no_grad():  # another set of weights of the same architecture
        for param in new.parameters():
            param.mul_(-1.5)
    path = tmp_path / ("ckpt" if dialect.directory else f"ckpt{dialect.suffixes[0]}")
    _save(old, path, dialect)
    before = _snapshot(path)
    _refused(lambda: _save(new, path, dialect), "already exists")
    assert _snapshot(path) == before
    _save(new, path, dialect, overwrite=True)
    assert recognising(path) == [dialect] and _snapshot(path) != before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # replaced in place, no temporary copy left
    if dialect.load is not None:  # ONNX is written only: its writer checks the new file in onnxruntime
        x = images(new)
        torch.testing.assert_close(logits(load_model(path), x), logits(new, x), rtol=1e-5, atol=1e-5)
