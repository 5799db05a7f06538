"""Issue 28, item 1: a run's evaluation crop follows how it was trained (:func:`vitkit.train.recipes.evaluation_crop`),
the checkpoint carries it to ``vitkit eval`` (whose --crop-pct / --crop-mode override it), and every source of
options (Python, YAML, the command line) reaches the same rule."""

from __future__ import annotations

import pytest
import yaml
from clirun import run_ok
from formats_testing import tiny
from trainutil import TINY_CLI

from vitkit.checkpoints.detect import load_model
from vitkit.checkpoints.native import save_native
from vitkit.cli.common import training_config
from vitkit.cli.main import build_parser
from vitkit.data.preprocessing import Preprocessing
from vitkit.data.sources import open_source
from vitkit.evaluate.metrics import evaluate
from vitkit.train import TrainConfig, recipe_defaults, resolve_training_config
from vitkit.train.loop import build_model
from vitkit.train.recipes import PRETRAIN_EVAL_CROP, WHOLE_IMAGE, evaluation_crop

CENTRE = {"crop_mode": "center", "crop_pct": 0.875}
WHOLE = {"crop_mode": "squash", "crop_pct": 1.0}


def pretrain(**options) -> TrainConfig:
    return TrainConfig(**{**recipe_defaults("pretrain", options.pop("objective", "supervised")), **options})


def test_the_rule_is_big_vision_s_centre_crop_after_random_crops_and_the_whole_image_without():
    assert PRETRAIN_EVAL_CROP == CENTRE and WHOLE_IMAGE == WHOLE
    assert evaluation_crop(pretrain()) == CENTRE  # the recipe's Inception crops, 8-100% of the area
    assert evaluation_crop(pretrain(crop_scale=(0.8, 1.0))) == CENTRE  # mild crops are crops too
    assert evaluation_crop(resolve_training_config("pretrain", {"data": "digits"}, preset="small-data")) == CENTRE
    assert evaluation_crop(pretrain(objective="mae")) == CENTRE  # self-supervised pre-training: the same rule
    assert evaluation_crop(pretrain(objective="mpp", crop_scale=(1.0, 1.0))) == WHOLE
    assert evaluation_crop(pretrain(crop_scale=(1.0, 1.0))) == WHOLE  # whole images in, whole images out


def test_fine_tuning_keeps_the_checkpoint_s_geometry_and_an_explicit_option_wins():
    finetune = {**recipe_defaults("finetune"), "checkpoint": "ckpt"}
    assert evaluation_crop(TrainConfig(**finetune)) == {}  # nothing replaced: the checkpoint's own
    assert evaluation_crop(TrainConfig(**finetune, crop_pct=0.9)) == {"crop_pct": 0.9}
    assert evaluation_crop(pretrain(crop_pct=1.0)) == {"crop_pct": 1.0}  # the rule steps aside
    assert evaluation_crop(pretrain(crop_mode="squash")) == {"crop_mode": "squash"}
    assert evaluation_crop(pretrain(crop_scale=(1.0, 1.0), crop_mode="center", crop_pct=0.8)) == {
        "crop_mode": "center", "crop_pct": 0.8}


@pytest.mark.parametrize("geometry", [WHOLE, CENTRE, dict(crop_mode="center", crop_pct=0.9)])
def test_a_fine_tuned_model_inherits_its_checkpoint_s_preprocessing(tmp_path, geometry):
    model = tiny(num_classes=3, image_size=16, patch_size=4)
    model.preprocessing = model.preprocessing.replace(**geometry)
    save_native(model, tmp_path / "ckpt")
    config = TrainConfig(**{**recipe_defaults("finetune"), "checkpoint": str(tmp_path / "ckpt"), "data": "digits"})
    assert build_model(config, [str(d) for d in range(10)]).preprocessing == model.preprocessing
    given = build_model(config.replace(crop_pct=0.5), [str(d) for d in range(10)]).preprocessing
    assert given == model.preprocessing.replace(crop_pct=0.5)  # the given field alone changes


def test_python_yaml_and_the_command_line_reach_the_same_crop(tmp_path):
    options = {"data": "digits", "image_size": 16, "patch_size": 4, "crop_scale": (0.5, 1.0)}
    from_python = resolve_training_config("pretrain", options)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"data": "digits", "image_size": 16, "crop_scale": [0.5, 1.0],
                                                       "model_options": {"patch_size": 4}}))
    from_yaml = resolve_training_config("pretrain", config_file=tmp_path / "run.yaml")
    from_cli = training_config(build_parser().parse_args(["train", "--data", "digits", "--image-size", "16",
                                                          "--patch-size", "4", "--crop-scale", "0.5,1"]), "pretrain")
    assert evaluation_crop(from_python) == evaluation_crop(from_yaml) == evaluation_crop(from_cli) == CENTRE
    given = training_config(build_parser().parse_args(["train", "--data", "digits", "--crop-pct", "1"]), "pretrain")
    (tmp_path / "given.yaml").write_text(yaml.safe_dump({"data": "digits", "crop_pct": 1.0}))
    python = resolve_training_config("pretrain", {"crop_pct": 1.0, **options})
    from_file = resolve_training_config("pretrain", config_file=tmp_path / "given.yaml")
    assert evaluation_crop(given) == evaluation_crop(python) == evaluation_crop(from_file) == {"crop_pct": 1.0}


def test_a_trained_checkpoint_carries_the_crop_and_vitkit_eval_uses_it(tmp_path, capsys):
    run = tmp_path / "run"
    trained = run_ok(capsys, ["train", "--data", "digits", *TINY_CLI, "--batch-size", "64", "--lr", "1e-2",
                              "--no-flip", "--steps", "6", "--quiet", "--out", str(run)])
    model = load_model(run)
    assert model.preprocessing == Preprocessing(image_size=16, **CENTRE)  # written into the checkpoint
    assert "crop_pct: null" in (run / "config.yaml").read_text()  # the rule, not a value: a resumed run re-derives it
    ev = run_ok(capsys, ["eval", str(run), "--data", "digits", "--confusion", "none"])
    assert ev["preprocessing"] == model.preprocessing.to_dict()
    assert ev["top1"] == pytest.approx(trained["metrics"]["test_top1"])  # the run evaluated with it too
    test = open_source("digits", "test")
    for flags, changed in ((["--crop-pct", "1.0"], dict(crop_pct=1.0)),
                           (["--crop-mode", "squash", "--crop-pct", "1"], WHOLE)):
        other = run_ok(capsys, ["eval", str(run), "--data", "digits", "--confusion", "none", *flags])
        model.preprocessing = Preprocessing(image_size=16, **{**CENTRE, **changed})
        assert other["preprocessing"] == model.preprocessing.to_dict()
        expected = evaluate(model.eval(), test, batch_size=128)
        assert other["loss"] == pytest.approx(expected.loss, rel=1e-5) and other["loss"] != pytest.approx(ev["loss"])
    assert load_model(run).preprocessing.crop_pct == 0.875  # eval's options change no file
