"""Every export check runs in the peer it names (issue 29, item 6): transformers for ``hf`` and ``hf_mae``,
timm for ``timm`` (onnxruntime for ``onnx``: tests/deploy); where the peer cannot run, the check says so
and why; ``native`` says it needs no check; nothing is ever checked "against vitkit itself"."""

from __future__ import annotations

import importlib
from dataclasses import replace

import pytest
import torch
from clirun import run_cli
from formats_testing import randomised, tiny
from timm_reference import import_timm
from transformers_reference import import_transformers

from vitkit import VitkitError, create_model, save_model, save_native
from vitkit.checkpoints.fidelity import ATOL, measure_export
from vitkit.checkpoints.mapping import Codec
from vitkit.checkpoints.vit import hf_mae, jax_npz
from vitkit.checkpoints.vit.layout import OUT_KERNEL

ENCODER = dict(num_classes=0, mlp_act="gelu", layer_norm_eps=1e-12)  # what ViTMAE expresses exactly


def test_hf_mae_is_checked_in_transformers_on_every_token(tmp_path, capsys):
    transformers = import_transformers()
    model = tiny(**ENCODER)
    save_native(model, tmp_path / "encoder")
    code, out, err = run_cli(["convert", str(tmp_path / "encoder"), str(tmp_path / "mae"), "--to", "hf_mae",
                              "--no-progress"], capsys)
    assert code == 0, err
    assert "(against transformers ViTMAEModel, on the encoder's last hidden state" in out and "itself" not in out
    check = measure_export(model, "hf_mae", tmp_path / "elsewhere")
    # what the user's transformers computes from the written directory, every patch kept in order
    theirs = transformers.ViTMAEModel.from_pretrained(tmp_path / "mae", mask_ratio=0.0).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = theirs(pixel_values=x, noise=torch.arange(4.0).expand(2, -1)).last_hidden_state
        true = float((model.encode(x).tokens - hidden).abs().max())
    assert check.max_logit_diff <= ATOL and check.max_logit_diff == pytest.approx(true, abs=1e-6)


def test_the_hf_mae_check_finds_an_export_transformers_runs_otherwise(tmp_path, monkeypatch):
    import_transformers()
    config = hf_mae.hf_mae_config
    monkeypatch.setattr(hf_mae, "hf_mae_config", lambda *a: {**config(*a), "hidden_act": "relu"})
    check = measure_export(tiny(**ENCODER), "hf_mae", tmp_path / "mae")
    assert check.max_logit_diff > ATOL and check.reference.startswith("transformers ViTMAEModel")


@pytest.fixture
def missing(monkeypatch):
    """Make the named peers unimportable, as on a machine without them."""
    def hide(*names: str) -> None:
        real = importlib.import_module

        def import_module(name, package=None):
            if name.split(".")[0] in names:
                raise ModuleNotFoundError(f"No module named '{name.split('.')[0]}'")
            return real(name, package)
        monkeypatch.setattr(importlib, "import_module", import_module)
    return hide


def test_without_transformers_the_check_says_it_could_not_run(tmp_path, capsys, missing):
    model = tiny(num_classes=2, mlp_act="gelu_tanh", layer_norm_eps=1e-12)
    save_native(model, tmp_path / "native")
    missing("transformers")
    for fmt in ("hf", "hf_mae"):
        check = measure_export(tiny(**ENCODER) if fmt == "hf_mae" else model, fmt, tmp_path / fmt)
        assert check.max_logit_diff is None and check.reference == ""
        assert check.line() == ("no export check: transformers could not be imported (No module named "
                                "'transformers'), so the export could not run in it")
    code, out, err = run_cli(["convert", str(tmp_path / "native"), str(tmp_path / "hf"), "--to", "hf",
                              "--no-progress"], capsys)
    assert code == 0, err
    assert "no export check: transformers could not be imported" in out and "against" not in out


def test_without_timm_the_check_says_what_ran_instead(tmp_path, missing):
    missing("timm")
    check = measure_export(tiny(num_classes=2, mlp_act="gelu_tanh"), "timm", tmp_path / "m.safetensors")
    assert check.reference == "vitkit's model of timm's VisionTransformer" and check.max_logit_diff > ATOL
    assert "timm could not be imported (No module named 'timm'), so the check ran vitkit's model of timm's " \
           "VisionTransformer instead, on the model's tensors in memory (not the written export)" in check.line()
    with pytest.raises(VitkitError, match="exact GELU"):  # the stand-in still knows timm's semantics
        save_model(tiny(num_classes=2, mlp_act="gelu_tanh"), tmp_path / "m.safetensors", to="timm")


def test_timm_checks_run_in_timm_itself(tmp_path):
    import_timm()
    vit = measure_export(tiny(num_classes=2, mlp_act="gelu"), "timm", tmp_path / "m.safetensors")
    assert vit.reference == "timm's own VisionTransformer" and vit.max_logit_diff <= 1e-5 and not vit.not_run
    # a Swin whose shifted 10x10 map timm rolls before padding: timm's own model shows the difference
    swin = randomised(create_model("Swin-T", image_size=40, embed_dim=16, depths=(2, 2), num_heads=(1, 2),
                                   window_size=4, num_classes=3))
    check = measure_export(swin, "timm", tmp_path / "s.safetensors")
    assert check.reference == "timm's own SwinTransformer" and check.max_logit_diff > ATOL
    assert "rolls the map before padding" in check.approximations[0]


JAX_REFERENCE = ("the official .npz layout read back into vitkit's model of the official code (Flax's GELU and eps; "
                 "Flax itself is not a vitkit dependency)")


def test_native_and_jax_say_what_they_are():
    native = measure_export(tiny(num_classes=2), "native")
    assert native.line().startswith("no export check: native is vitkit's own format") and "against" not in native.line()
    jax = measure_export(tiny(num_classes=2, mlp_act="gelu_tanh"), "jax")
    assert jax.reference == JAX_REFERENCE and "itself" not in jax.line().replace("Flax itself", "")


def _broken_writer(monkeypatch, ours: str, save) -> None:
    """The jax writer's rule for ``ours`` saving through ``save`` (a bug in the export), its reader unchanged."""
    table = jax_npz.rules

    def rules(d=jax_npz.VIT_JAX):
        return [replace(r, codec=Codec(r.codec.load, save)) if r.ours == ours else r for r in table(d)]
    monkeypatch.setattr(jax_npz, "rules", rules)


@pytest.mark.parametrize(("ours", "save"), [
    ("head.weight", lambda t, c: [torch.zeros_like(t.t())]),  # a zeroed head kernel
    ("blocks.{i}.attn.proj.weight", lambda t, c: OUT_KERNEL.save(t.t(), c)),  # the out projection transposed
    ("blocks.{i}.mlp.fc1.weight", lambda t, c: [t]),  # a dense kernel left (out, in)
], ids=["zeroed", "transposed", "untransposed"])
def test_the_jax_check_reads_what_the_writer_writes(tmp_path, monkeypatch, ours, save):
    """The check runs the official layout as the writer lays it out, read back by the reader: a writer
    bug is refused before anything is written, and the correct writer passes with <= 1e-4."""
    model = tiny(num_classes=3, mlp_act="gelu_tanh", layer_norm_eps=1e-6)
    check = measure_export(model, "jax", tmp_path / "ok.npz")
    assert check.reference == JAX_REFERENCE and check.max_logit_diff <= ATOL and not check.approximations
    save_model(model, tmp_path / "ok.npz", to="jax")
    _broken_writer(monkeypatch, ours, save)
    with pytest.raises(VitkitError, match=r"the jax export would change the model's function: .*largest logit "
                                          r"difference (inf|[0-9.e+-]+) > 0.0001") as refused:
        save_model(model, tmp_path / "broken.npz", to="jax")
    assert "\n" not in str(refused.value) and not (tmp_path / "broken.npz").exists()
    assert measure_export(model, "jax").max_logit_diff > 100 * ATOL
