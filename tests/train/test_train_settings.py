"""``vitkit.train.settings.resolve_training_config``: the configuration merge a Python user calls with the
command line's precedence (recipe -> preset -> YAML or the resumed run's config.yaml -> options given)."""

from __future__ import annotations

import pytest
import yaml
from trainutil import TINY_CLI

from vitkit.cli.common import training_config
from vitkit.cli.main import build_parser
from vitkit.errors import VitkitError
from vitkit.train import TrainConfig, resolve_training_config
from vitkit.train.rundir import RunDir

TINY = {"image_size": 16, "patch_size": 4, "hidden_size": 32, "depth": 1, "num_heads": 2, "mlp_dim": 64}


def test_python_and_the_command_line_give_the_same_configuration(tmp_path):
    argv = ["train", "--data", "digits", *TINY_CLI, "--recipe", "small-data", "--lr", "0.005", "--objective", "mae",
            "--mask-ratio", "0.5", "--label-smoothing", "0", "--out", str(tmp_path / "run")]
    from_cli = training_config(build_parser().parse_args(argv), "pretrain")
    from_python = resolve_training_config("pretrain", {"data": "digits", **TINY, "lr": 0.005, "objective": "mae",
                                                       "mask_ratio": 0.5, "label_smoothing": 0.0,
                                                       "out": str(tmp_path / "run")},
                                          preset="small-data")
    assert from_python == from_cli
    assert from_python.model_options["patch_size"] == 4 and from_python.objective_options == {"mask_ratio": 0.5}
    assert from_python.epochs == 50 and from_python.image_size == (16, 16)  # the preset's epochs, given size


def test_each_source_overrides_the_one_before(tmp_path):
    yaml_file = tmp_path / "options.yaml"
    yaml_file.write_text(yaml.safe_dump({"data": "digits", "lr": 0.02, "label_smoothing": 0.2, "out": "elsewhere",
                                         "model_options": {"drop_path": 0.0}}))
    config = resolve_training_config("pretrain", {"label_smoothing": 0.3, "model_options": {"depth": 1}},
                                     preset="small-data", config_file=yaml_file)
    assert config.optimizer == "adamw"  # the recipe's
    assert config.batch_size == 64 and config.lr == 0.02  # the preset's batch; the file's lr over its pick
    assert "patch_size" not in config.model_options  # ViT-Ti/16's own 224 px: no small-image grid picked
    assert config.model_options["drop_path"] == 0.0  # the file's
    assert config.label_smoothing == 0.3 and config.model_options["depth"] == 1  # the options'
    assert config.out != "elsewhere" and config.out.startswith("runs/pretrain-")  # a file's out is not the run's


def test_resume_reads_the_run_and_refuses_another_out(tmp_path):
    run = tmp_path / "run"
    RunDir(run, tensorboard=False).write_config(TrainConfig(data="digits", image_size=(48, 32), lr=0.003,
                                                            out=str(run)))
    config = resolve_training_config("pretrain", {"steps": 9}, resume=run)
    assert config.out == str(run) and config.lr == 0.003 and config.steps == 9 and config.image_size == (48, 32)
    with pytest.raises(VitkitError, match="continues that run in its own directory"):
        resolve_training_config("pretrain", {"out": str(tmp_path / "other")}, resume=run)
    with pytest.raises(VitkitError, match="not a run directory"):
        resolve_training_config("pretrain", resume=tmp_path)
    with pytest.raises(VitkitError, match="that configuration is a pretrain run; use `vitkit train`"):
        resolve_training_config("finetune", resume=run)


def test_a_bad_value_names_the_file_and_data_is_required(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": "digits", "image_size": "big"}))
    with pytest.raises(VitkitError, match=f"^{bad}: image_size: got 'big'"):
        resolve_training_config("pretrain", config_file=bad)
    with pytest.raises(VitkitError, match="--data is required"):
        resolve_training_config("pretrain", {"steps": 1})


@pytest.mark.parametrize("written, read", [(16, (16, 16)), ([48, 32], (48, 32)), ((32, 32), (32, 32))])
def test_image_size_round_trips_through_config_yaml(tmp_path, written, read):
    """A square size stays one number in config.yaml (as configs written before sizes had it); HxW is [H, W]."""
    config = TrainConfig(data="digits", image_size=written)
    assert config.image_size == read
    path = RunDir(tmp_path, tensorboard=False).write_config(config)
    stored = yaml.safe_load(path.read_text())["image_size"]
    assert stored == (read[0] if read[0] == read[1] else list(read))
    assert resolve_training_config("pretrain", config_file=path).image_size == read
