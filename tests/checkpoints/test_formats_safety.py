"""Loading never runs code from a file, and damaged files are one-line errors (CLI: exit 2)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from formats_testing import tiny

from vitkit import VitkitError, load_model
from vitkit.checkpoints.convert import save_model
from vitkit.cli.main import main


class _CreatesMarker:
    """Unpickling this calls ``open(marker, "w")``: the file appears iff the pickle ran."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("zip_format", [True, False])
def test_code_in_a_torch_pickle_is_refused_and_never_runs(tmp_path, capsys, zip_format):
    marker = tmp_path / "MARKER"
    payload = {"patch_embed.proj.weight": torch.zeros(4, 3, 2, 2), "pos_embed": _CreatesMarker(marker)}
    torch.save(payload, tmp_path / "evil.pth", _use_new_zipfile_serialization=zip_format)
    assert not marker.exists()
    with pytest.raises(VitkitError, match=r"refused to load: .*GLOBAL .*open"):
        load_model(tmp_path / "evil.pth")
    code, _, err = _run_cli(["convert", str(tmp_path / "evil.pth"), str(tmp_path / "out.npz"), "--to", "jax"], capsys)
    assert code == 2 and err.count("\n") == 1 and "refused to load" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out.npz").exists()


def test_a_plain_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "MARKER"
    (tmp_path / "evil.bin").write_bytes(pickle.dumps({"x": _CreatesMarker(marker)}, protocol=2))
    with pytest.raises(VitkitError, match="refused to load"):
        load_model(tmp_path / "evil.bin")
    assert not marker.exists()


def test_pickled_object_arrays_in_npz_are_refused(tmp_path):
    model = tiny(num_classes=2)
    save_model(model, tmp_path / "m.npz", to="jax")
    marker = tmp_path / "MARKER"
    with np.load(tmp_path / "m.npz") as npz:
        arrays = dict(npz)
    arrays["cls"] = np.array([_CreatesMarker(marker)], dtype=object)  # np.savez pickles object arrays
    np.savez(tmp_path / "evil.npz", **arrays)
    assert not marker.exists()
    with pytest.raises(VitkitError, match="object array"):
        load_model(tmp_path / "evil.npz")
    assert not marker.exists()


@pytest.mark.parametrize("to, name", [("timm", "m.safetensors"), ("timm", "m.pth"), ("jax", "m.npz"),
                                      ("hf", "hf/model.safetensors")])
def test_truncated_files_are_one_line_errors(tmp_path, capsys, to, name):
    model = tiny(num_classes=2, mlp_act="gelu" if to == "timm" else "gelu_tanh")  # each target's own GELU
    target = tmp_path / name.split("/")[0]
    save_model(model, target, to=to)
    weights = tmp_path / name
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VitkitError, match=r"truncated|unreadable|corrupt"):
        load_model(target)
    code, _, err = _run_cli(["convert", str(target), str(tmp_path / "out"), "--to", "native"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("vitkit convert: error: ")


def test_unknown_layouts_and_paths_are_named(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(VitkitError, match=r"unknown checkpoint layout \(keys: encoder\.weight\)"):
        load_model(tmp_path / "other.pth")
    (tmp_path / "notes.txt").write_text("hello, not a checkpoint")
    with pytest.raises(VitkitError, match="not a checkpoint format vitkit recognises"):
        load_model(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitkitError, match="directory without a vitkit, Hugging Face or timm checkpoint"):
        load_model(tmp_path / "empty")
    with pytest.raises(VitkitError, match="no such file"):
        load_model(tmp_path / "nowhere.npz")
    save_model(tiny(num_classes=2), tmp_path / "hf", to="hf")
    with pytest.raises(VitkitError, match="Hugging Face weights need their config.json"):
        load_model(tmp_path / "hf" / "model.safetensors")
    save_model(tiny(num_classes=2), tmp_path / "native", to="native")
    with pytest.raises(VitkitError, match="vitkit weights without their config.json"):
        load_model(tmp_path / "native" / "model.safetensors")
