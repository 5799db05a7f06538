"""Options that contradict each other are refused in one line before anything is written (issue 29, item 4).

A pair of options of which one overrides the other (``vitkit.train.recipes.CONFLICTS``: ``--steps`` and
``--epochs``) is refused when one source holds both -- the command line, one YAML file, one ``TrainConfig``
-- while a lower source's value gives way to the other option given above it (a preset's ``epochs`` under
``--steps``). A resumed run continues with its own ``config.yaml`` and the optimiser state it saved, so
``--config``, ``--recipe`` and a new value of what that state holds are refused with ``--resume``. The
pairs are read from ``CONFLICTS``, so a new pair is swept here too.
"""

from __future__ import annotations

import pytest
import yaml
from clirun import run_fails, run_ok
from trainutil import TINY_CLI, tiny_checkpoint, tiny_config

from vitkit.errors import VitkitError
from vitkit.options import field_options
from vitkit.train import train
from vitkit.train.recipes import CONFLICTS, TrainConfig
from vitkit.train.settings import RESTORED_ON_RESUME, flag_of, resolve_training_config

OPTIONS = field_options(TrainConfig)


def valid(name: str) -> int:
    """A value the option's definition allows (the pairs are counts)."""
    option = OPTIONS[name]
    assert option.kind == "int", f"add a valid value of kind {option.kind} for {name}"
    return int(option.low or 0) + 2


PAIRS = list(CONFLICTS)


@pytest.mark.parametrize("command", ["train", "finetune"])
@pytest.mark.parametrize("first, second", PAIRS)
def test_two_options_that_override_each_other_on_the_command_line_are_one_line(first, second, command, tmp_path,
                                                                               capsys):
    out = tmp_path / "run"
    head = ["train", *TINY_CLI] if command == "train" else ["finetune", str(tiny_checkpoint())]
    line = run_fails(capsys, [*head, "--data", "digits", flag_of(first), str(valid(first)), flag_of(second),
                              str(valid(second)), "--out", str(out), "--quiet"])
    assert f"{flag_of(first)} {valid(first)} and {flag_of(second)} {valid(second)} contradict each other" in line
    assert "give one" in line and not out.exists()


@pytest.mark.parametrize("first, second", PAIRS)
def test_a_yaml_file_or_a_train_config_holding_both_is_refused(first, second, tmp_path, capsys):
    config = tmp_path / "both.yaml"
    config.write_text(yaml.safe_dump({"data": "digits", first: valid(first), second: valid(second)}))
    line = run_fails(capsys, ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    assert str(config) in line and f"{first} {valid(first)} and {second} {valid(second)} contradict" in line
    assert not (tmp_path / "run").exists()
    with pytest.raises(VitkitError, match=f"^{first} {valid(first)} and {second} {valid(second)} contradict"):
        TrainConfig(**{first: valid(first), second: valid(second)})
    with pytest.raises(VitkitError, match="contradict each other"):
        resolve_training_config("pretrain", {"data": "digits", first: valid(first), second: valid(second)})


def test_a_later_source_replaces_the_other_option_of_an_earlier_one(tmp_path):
    # the preset's epochs=50 are a default, not the user's: --steps replaces them
    config = resolve_training_config("pretrain", {"data": "digits", "steps": 3}, preset="small-data")
    assert (config.steps, config.epochs) == (3, None)
    yaml_file = tmp_path / "epochs.yaml"
    yaml_file.write_text(yaml.safe_dump({"data": "digits", "epochs": 2}))
    assert resolve_training_config("pretrain", {"steps": 5}, config_file=yaml_file).epochs is None
    yaml_file.write_text(yaml.safe_dump({"data": "digits", "steps": 5}))
    config = resolve_training_config("pretrain", {"epochs": 2}, config_file=yaml_file)
    assert (config.steps, config.epochs) == (None, 2)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "run"
    train(tiny_config(steps=2, out=str(out)), progress=False, stop_after=1)
    return out


def test_resume_refuses_another_configuration_or_preset(stopped_run, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"data": "digits"}))
    for extra in (["--config", str(other)], ["--recipe", "small-data"]):
        line = run_fails(capsys, ["train", "--resume", str(stopped_run), *extra, "--quiet"])
        assert f"continues that run with its own config.yaml: {' '.join(extra)} would be ignored" in line
    with pytest.raises(VitkitError, match="--recipe small-data would be ignored"):
        resolve_training_config("pretrain", resume=stopped_run, preset="small-data")


@pytest.mark.parametrize("name", RESTORED_ON_RESUME)
def test_resume_refuses_a_new_value_of_what_its_saved_state_restores(name, stopped_run, capsys):
    saved = yaml.safe_load((stopped_run / "config.yaml").read_text())
    option = OPTIONS[name]
    new = {"choice": lambda v: next(c for c in option.choices if c != v), "int": lambda v: (v or 1) + 1,
           "float": lambda v: 0.5 * (v or 0.5), "pair": lambda v: [0.5, 0.6]}[option.kind](saved[name])
    with pytest.raises(VitkitError, match=f"{flag_of(name)} .* would be ignored \\(the run's is "):
        resolve_training_config("pretrain", {name: new}, resume=stopped_run)
    if saved[name] is not None:  # the value it already has is no contradiction
        assert getattr(resolve_training_config("pretrain", {name: saved[name]}, resume=stopped_run), name) == \
            option.check(saved[name], name)


def test_resume_may_lengthen_the_run_with_the_other_option(stopped_run, capsys):
    config = resolve_training_config("pretrain", {"epochs": 1}, resume=stopped_run)  # the run was given --steps
    assert (config.steps, config.epochs) == (None, 1)
    line = run_fails(capsys, ["train", "--resume", str(stopped_run), "--lr", "0.5", "--quiet"])
    assert "--lr 0.5 would be ignored (the run's is 0.01)" in line


def test_the_summary_json_and_config_name_the_recipe_and_the_preset(tmp_path, capsys):
    out = tmp_path / "run"
    summary = run_ok(capsys, ["train", "--recipe", "small-data", "--data", "digits", *TINY_CLI, "--steps", "1",
                              "--batch-size", "16", "--out", str(out), "--quiet"])
    assert summary["recipe"] == "pretrain" and summary["preset"] == "small-data" and summary["total_steps"] == 1
    assert yaml.safe_load((out / "config.yaml").read_text())["preset"] == "small-data"
    from vitkit.cli.main import main

    main(["train", "--resume", str(out), "--steps", "2", "--quiet"])
    assert capsys.readouterr().out.startswith("pretrain (small-data) ")  # the resumed run keeps its preset
    plain = run_ok(capsys, ["train", "--data", "digits", *TINY_CLI, "--steps", "1", "--batch-size", "16",
                            "--out", str(tmp_path / "plain"), "--quiet"])
    assert plain["recipe"] == "pretrain" and plain["preset"] is None


def test_a_yaml_file_may_name_the_preset_it_starts_from(tmp_path):
    yaml_file = tmp_path / "preset.yaml"
    yaml_file.write_text(yaml.safe_dump({"data": "digits", "preset": "small-data", "lr": 0.5}))
    config = resolve_training_config("pretrain", config_file=yaml_file)
    assert config.preset == "small-data" and config.label_smoothing == 0.1 and config.lr == 0.5


def test_a_warm_up_as_long_as_the_run_is_refused_where_the_recipe_default_is_not(tmp_path, capsys):
    """--warmup 100 --steps 3 would end the run before the learning rate reaches --lr."""
    out = tmp_path / "run"
    line = run_fails(capsys, ["train", *TINY_CLI, "--data", "digits", "--warmup", "100", "--steps", "3",
                              "--out", str(out), "--quiet"])
    assert "warmup 100 is not shorter than the run's 3 steps" in line and not out.exists()
    with pytest.raises(VitkitError, match="warmup 3 is not shorter than the run's 3 steps"):
        TrainConfig(warmup=3, steps=3)
    assert TrainConfig(steps=3).warmup is None  # the recipe's own warm-up fits any length (a fraction of the run)


def test_bench_refuses_guard_images_without_the_data_they_count(capsys):
    line = run_fails(capsys, ["bench", "ViT-Ti/16", "--guard-images", "5"])
    assert "--guard-images counts the images of --guard-data" in line
