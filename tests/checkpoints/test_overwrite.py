"""One overwrite rule for the library and the CLI (issue 29, item 2): ``save_native``, ``save_model``,
``convert`` and ``vitkit convert --overwrite`` replace an existing path only when asked, a directory
only when it is a checkpoint of the same format, and atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from clirun import run_cli, run_fails
from formats_testing import images, logits, tiny

from vitkit import VitkitError, detect_format, load_model, save_model, save_native
from vitkit.checkpoints import hf_directory, native


def _files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_save_native_refuses_a_folder_that_is_not_a_checkpoint_and_leaves_it_alone(tmp_path):
    folder = tmp_path / "userdir"
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}\n')
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(VitkitError, match=r"userdir: already exists \(pass overwrite=True"):
        save_native(tiny(num_classes=2), folder)
    with pytest.raises(VitkitError, match="is not a native checkpoint, so overwrite does not replace it"):
        save_native(tiny(num_classes=2), folder, overwrite=True)
    assert _files(folder) == {"config.json": b'{"mine": true}\n', "notes.txt": b"keep"}
    assert [p.name for p in tmp_path.iterdir()] == ["userdir"]  # no temporary folder left beside it


def test_save_model_refuses_an_existing_file_and_replaces_it_when_asked(tmp_path):
    path = tmp_path / "mine.npz"
    path.write_bytes(b"the user's own file")
    model = tiny(num_classes=2, mlp_act="gelu_tanh")
    with pytest.raises(VitkitError, match="mine.npz: already exists"):
        save_model(model, path, to="jax")
    assert path.read_bytes() == b"the user's own file"
    save_model(model, path, to="jax", overwrite=True)
    assert detect_format(path) == "jax"
    torch.testing.assert_close(logits(load_model(path), images(model)), logits(model, images(model)), rtol=0, atol=1e-5)


def test_a_checkpoint_is_replaced_only_by_one_of_its_own_format(tmp_path):
    model = tiny(num_classes=2, mlp_act="gelu_tanh", layer_norm_eps=1e-12)
    save_model(model, tmp_path / "hf", to="hf")
    before = _files(tmp_path / "hf")
    with pytest.raises(VitkitError, match="already exists"):
        save_model(model, tmp_path / "hf", to="hf")
    with pytest.raises(VitkitError, match="is not a native checkpoint"):
        save_native(model, tmp_path / "hf", overwrite=True)
    with pytest.raises(VitkitError, match="is a directory; the jax format is a file"):
        save_model(model, tmp_path / "hf", to="jax", overwrite=True)
    assert _files(tmp_path / "hf") == before
    other = tiny(num_classes=2, seed=3, mlp_act="gelu_tanh", layer_norm_eps=1e-12)
    save_model(other, tmp_path / "hf", to="hf", overwrite=True)
    torch.testing.assert_close(logits(load_model(tmp_path / "hf"), images(other)), logits(other, images(other)),
                               rtol=0, atol=1e-5)


def test_an_empty_folder_is_written_without_overwrite(tmp_path):
    (tmp_path / "empty").mkdir()
    save_native(tiny(num_classes=2), tmp_path / "empty")
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["config.json", "model.safetensors"]


def test_replacing_drops_the_old_checkpoints_files(tmp_path):
    """The new checkpoint replaces the old directory whole: an old objective's files do not stay beside it."""
    save_native(tiny(num_classes=2), tmp_path / "c")
    native.write_objective_parts(tmp_path / "c", {"name": "mae", "options": {}}, {"w": torch.zeros(1)})
    save_native(tiny(num_classes=3), tmp_path / "c", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["config.json", "model.safetensors"]
    assert load_model(tmp_path / "c").config.num_classes == 3


def _fail_after_weights(monkeypatch, module):
    """Make ``module``'s JSON writer raise in the new checkpoint ``ckpt``, after its weights were written
    (the export check's own scratch copies are written as usual)."""
    write = module.write_text_atomic

    def broken(path, text):
        if path.parent.name != "ckpt":
            return write(path, text)
        assert any(p.suffix == ".safetensors" for p in path.parent.iterdir())  # the write was under way
        raise OSError("disk full")
    monkeypatch.setattr(module, "write_text_atomic", broken)


@pytest.mark.parametrize("how", ["save_native", "save_model hf"])
def test_a_replacement_that_fails_midway_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch, how):
    old, new = tiny(num_classes=2, mlp_act="gelu_tanh", layer_norm_eps=1e-12), tiny(num_classes=2, seed=5)
    path = tmp_path / "ckpt"
    if how == "save_native":
        save_native(old, path)
        _fail_after_weights(monkeypatch, native)
        write = lambda: save_native(new, path, overwrite=True)  # noqa: E731
    else:
        save_model(old, path, to="hf")
        _fail_after_weights(monkeypatch, hf_directory)
        new = tiny(num_classes=2, seed=5, mlp_act="gelu_tanh", layer_norm_eps=1e-12)
        write = lambda: save_model(new, path, to="hf", overwrite=True)  # noqa: E731
    before = _files(path)
    with pytest.raises(OSError, match="disk full"):
        write()
    monkeypatch.undo()
    assert _files(path) == before and [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    torch.testing.assert_close(logits(load_model(path), images(old)), logits(old, images(old)), rtol=0, atol=1e-5)


def test_the_cli_and_the_library_apply_the_same_rule(tmp_path, capsys):
    save_native(tiny(num_classes=2, mlp_act="gelu_tanh"), tmp_path / "native")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"mine": True}))
    argv = ["convert", str(tmp_path / "native"), str(folder), "--to", "native", "--no-progress"]
    assert "project: already exists" in run_fails(capsys, argv)
    assert "is not a native checkpoint, so overwrite does not replace it" in run_fails(capsys, [*argv, "--overwrite"])
    assert [p.name for p in folder.iterdir()] == ["config.json"]
    code, _, err = run_cli(["convert", str(tmp_path / "native"), str(tmp_path / "again"), "--to", "native",
                            "--no-progress"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["convert", str(tmp_path / "native"), str(tmp_path / "again"), "--to", "native",
                            "--no-progress", "--overwrite"], capsys)
    assert code == 0, err


def test_a_timm_hub_directory_is_replaced_whole(tmp_path):
    model = tiny(num_classes=2, mlp_act="gelu")
    save_model(model, tmp_path / "hub", to="timm")
    with pytest.raises(VitkitError, match="already exists"):
        save_model(model, tmp_path / "hub", to="timm")
    save_model(tiny(num_classes=2, seed=4, mlp_act="gelu"), tmp_path / "hub", to="timm", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == ["config.json", "model.safetensors"]
    assert not np.allclose(logits(load_model(tmp_path / "hub"), images(model)), logits(model, images(model)))


def test_a_link_to_a_checkpoint_keeps_naming_the_replaced_one(tmp_path):
    save_native(tiny(num_classes=2), tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    save_native(tiny(num_classes=3), tmp_path / "link", overwrite=True)
    assert (tmp_path / "link").is_symlink() and load_model(tmp_path / "real").config.num_classes == 3
