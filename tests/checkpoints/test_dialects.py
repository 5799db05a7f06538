"""Guards of the dialect registry (:mod:`vitkit.checkpoints.dialect`), generated from the registry so
that a new dialect is covered without a test of its own: every record that writes round-trips a
small model of each family it holds (save -> detect -> load -> the same outputs), and detection of
what it wrote names that record's format AND family; a run directory is a checkpoint for the library
exactly as for the command line."""

from __future__ import annotations

import warnings

import pytest
import torch
from dialect_testing import TINY, WRITERS, model_for
from formats_testing import images, logits, randomised

import vitkit
from vitkit import VitkitError, load_model
from vitkit.checkpoints.convert import save_model, target_dialect
from vitkit.checkpoints.detect import detect_format, load_checkpoint, load_objective_parts
from vitkit.checkpoints.dialect import detect, dialects_for, get_dialect, recognising, registered
from vitkit.checkpoints.runs import resolve
from vitkit.cli.common import checkpoint_path
from vitkit.cli.main import main
from vitkit.models.registry import FAMILIES, family_of
from vitkit.objectives import load_pretraining


def test_every_family_has_a_small_model_for_the_guards():
    assert set(TINY) == set(FAMILIES)


@pytest.mark.parametrize(("dialect", "family"), WRITERS)
def test_every_dialect_round_trips_a_model_of_its_family(tmp_path, dialect, family):
    model = model_for(dialect, family)
    path = tmp_path / ("m" if dialect.directory else f"m{dialect.suffixes[0]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the export check's measurement is not what is tested here
        save_model(model, path, to=dialect.name, allow_approx=True)
    assert recognising(path) == [dialect]  # exactly one record claims what this one wrote
    if dialect.load is None:  # written only (ONNX): detection says so in one line
        with pytest.raises(VitkitError, match=dialect.unreadable.split(";")[0]):
            detect(path)
        return
    found = detect(path)
    assert (found.name, found.family) == (dialect.name, dialect.family)
    back = load_model(path)
    assert family_of(back).name == family
    x = images(model)
    torch.testing.assert_close(logits(back, x), logits(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_familys_export_targets_are_the_records_that_name_it_or_none(family):
    targets = dialects_for(family)
    assert targets == [d for d in registered() if d.save is not None and d.family in (family, None)]
    assert targets[0].name == "native" and "onnx" in [d.name for d in targets]
    for dialect in targets:
        assert target_dialect(TINY[family](3), dialect.name) is dialect is get_dialect(dialect.name, family)


def test_lookups_of_unknown_formats_are_one_line_errors():
    with pytest.raises(VitkitError, match="unknown format 'nope'; one of native, hf"):
        get_dialect("nope", "vit")
    with pytest.raises(VitkitError, match="a bit model has no jax format; its formats: native, onnx"):
        get_dialect("jax", "bit")
    with pytest.raises(VitkitError,
                       match="unknown target format 'mae'; one of native, hf, hf_mae, timm, jax, official, onnx"):
        target_dialect(TINY["vit"](3), "mae")


def test_a_hugging_face_model_type_nobody_reads_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "beit"}')  # DeiT's ("deit") is read since issue 27
    with pytest.raises(VitkitError,
                       match=r"Hugging Face model_type 'beit' is not supported \(vit, deit, swin, dinov2\)"):
        load_model(tmp_path)


def test_a_timm_hub_directory_without_weights_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"architecture": "vit_base_patch16_224"}')
    with pytest.raises(VitkitError, match="no timm weights"):
        load_model(tmp_path)


def test_a_named_format_picks_the_family_that_recognises_the_file(tmp_path):
    from vitkit.checkpoints.detect import load_checkpoint

    save_model(TINY["swin"](3), tmp_path / "s.safetensors", to="timm")
    assert detect(tmp_path / "s.safetensors", "timm").family == "swin"
    assert family_of(load_checkpoint(tmp_path / "s.safetensors", fmt="timm")).name == "swin"


# -------------------------------------------------------------------------------- run directories
def _cli(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def run_dir(tmp_path):
    """A training run's layout: config.yaml, model/ and model_ema/ (another set of weights)."""
    run = tmp_path / "run"
    save_model(TINY["vit"](3), run / "model", to="native")
    save_model(randomised(TINY["vit"](3), seed=5), run / "model_ema", to="native")
    (run / "config.yaml").write_text("recipe: finetune\n")
    return run


def test_a_run_directory_loads_as_its_model_in_the_library_as_in_the_cli(run_dir, tmp_path, capsys):
    x = images(load_model(run_dir / "model"))
    for ema, folder, flag in ((False, "model", []), (True, "model_ema", ["--ema"])):
        direct = load_model(run_dir / folder)
        via_run = load_model(run_dir, ema=ema)
        torch.testing.assert_close(logits(via_run, x), logits(direct, x), rtol=0, atol=0)
        assert resolve(run_dir, ema=ema) == checkpoint_path(str(run_dir), ema) == run_dir / folder
        out = tmp_path / f"cli-{folder}"
        assert _cli(["convert", str(run_dir), str(out), "--to", "native", *flag]) == 0
        torch.testing.assert_close(logits(load_model(out), x), logits(direct, x), rtol=0, atol=0)
        api = tmp_path / f"api-{folder}"  # every library entry point takes the run, not only load_model
        vitkit.convert(run_dir, api, to="native", ema=ema)
        torch.testing.assert_close(logits(load_model(api), x), logits(direct, x), rtol=0, atol=0)
        encoder, objective = load_pretraining(run_dir, ema=ema)
        torch.testing.assert_close(logits(encoder, x), logits(direct, x), rtol=0, atol=0)
        assert objective is None
    torch.testing.assert_close(logits(load_checkpoint(run_dir), x), logits(load_model(run_dir), x), rtol=0, atol=0)
    assert detect_format(run_dir) == "native" and load_objective_parts(run_dir) is None
    capsys.readouterr()


def test_run_directory_errors_are_the_same_one_line_for_library_and_cli(run_dir, capsys):
    with pytest.raises(VitkitError, match="^--ema applies to a run directory only$"):
        load_model(run_dir / "model", ema=True)
    for folder in (run_dir / "model_ema").iterdir():
        folder.unlink()
    (run_dir / "model_ema").rmdir()
    with pytest.raises(VitkitError, match=r"the run has no weight average \(trained without --ema\)"):
        load_model(run_dir, ema=True)
    assert _cli(["convert", str(run_dir), str(run_dir.parent / "x"), "--to", "native", "--ema"]) == 2
    err = capsys.readouterr().err
    assert "no weight average" in err and err.count("\n") == 1
