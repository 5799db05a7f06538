"""``--recipe small-data``: a named preset applied after the recipe's defaults and before --config and options."""

from __future__ import annotations

import pytest
import yaml
from trainutil import TINY_CLI

from vitkit.cli.common import training_config
from vitkit.cli.main import build_parser
from vitkit.errors import VitkitError
from vitkit.train.recipes import PRESETS, preset_options, recipe_defaults

TRAIN = ["train", "--data", "digits", *TINY_CLI]


def config_of(argv: list[str], recipe: str = "pretrain"):
    return training_config(build_parser().parse_args(argv), recipe)


def test_the_preset_sets_its_values_and_leaves_the_rest_to_the_recipe():
    config = config_of([*TRAIN[:3], "--image-size", "16", "--recipe", "small-data"])
    preset = PRESETS["small-data"]["pretrain"]
    assert config.crop_scale == tuple(preset["crop_scale"]) and config.label_smoothing == preset["label_smoothing"]
    assert config.epochs == preset["epochs"] and config.batch_size == preset["batch_size"]
    assert config.model_options["patch_size"] == preset["model_options"]["patch_size"]
    assert config.model_options["drop_path"] == preset["model_options"]["drop_path"]
    assert config.optimizer == recipe_defaults("pretrain")["optimizer"] and config.flip is True
    plain = config_of([*TRAIN[:3], "--image-size", "16"])
    assert plain.crop_scale == (0.08, 1.0) and plain.label_smoothing == 0.0 and "drop_path" not in plain.model_options


def test_options_given_and_yaml_files_override_the_preset(tmp_path):
    config = config_of([*TRAIN, "--recipe", "small-data", "--label-smoothing", "0", "--patch-size", "4",
                        "--no-flip"])
    assert config.label_smoothing == 0.0 and config.model_options["patch_size"] == 4 and config.flip is False
    assert config.model_options["drop_path"] == PRESETS["small-data"]["pretrain"]["model_options"]["drop_path"]
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(yaml.safe_dump({"data": "digits", "crop_scale": [0.5, 1.0], "model_options": {
        "drop_path": 0.0}}))
    config = config_of(["train", "--config", str(yaml_file), "--recipe", "small-data"])
    assert config.crop_scale == (0.5, 1.0) and config.model_options["drop_path"] == 0.0
    assert config.model_options["patch_size"] == 8 and config.label_smoothing == 0.1


def test_finetune_takes_the_fine_tuning_part_of_the_preset(tmp_path):
    config = config_of(["finetune", str(tmp_path), "--data", "digits", "--recipe", "small-data"], "finetune")
    assert config.crop_scale == tuple(PRESETS["small-data"]["finetune"]["crop_scale"])
    assert config.optimizer == "sgd" and config.model_options == {}


def test_train_help_says_when_to_use_the_preset(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--recipe small-data: training from scratch on a few thousand small images" in text
    assert "crop-scale=0.8,1" in text and "vitkit reproduce --only small-data" in text


def test_preset_options_are_copies_and_names_are_checked():
    first = preset_options("small-data", "pretrain")
    first["model_options"]["patch_size"] = 99
    assert preset_options("small-data", "pretrain")["model_options"]["patch_size"] != 99
    assert preset_options(None, "pretrain") == {}
    with pytest.raises(VitkitError, match="recipe: got 'bogus'"):
        preset_options("bogus", "pretrain")
