"""Rule 1 of the reliability promise: every option is validated before any work starts.

The sweeps are generated from the option definitions themselves (``vitkit.options``): every
command-line option of every command, every field of a ``--config`` YAML file and every
configuration field of the Python API gets values its definition forbids, and each must be
refused with exit code 2 (or a :class:`VitkitError`) and one line naming the option, with nothing
written. A new option is swept without touching this file.
"""

from __future__ import annotations

import argparse
import math

import pytest
import yaml
from clirun import run_fails
from trainutil import TINY_CLI, tiny_teacher

import vitkit
import vitkit.evaluate
from vitkit.cli.main import build_parser, main
from vitkit.errors import VitkitError
from vitkit.models.deit.config import DeiTConfig
from vitkit.models.dinov2.config import DINOv2Config
from vitkit.models.swin.config import SwinConfig
from vitkit.models.vit.config import ViTConfig
from vitkit.options import MAX_COUNT, Option, field_options
from vitkit.train.recipes import TrainConfig


def _below(opt: Option) -> list:
    if opt.low is None:
        return []
    value = opt.low if opt.low_open else opt.low - 1
    return [value - 1 if value == opt.off_value else value]  # the "off" number is allowed


def _above(opt: Option) -> list:
    high = opt.high if opt.high is not None else (MAX_COUNT if opt.kind in ("int", "size", "ints", "int_or_ints")
                                                  else None)
    if high is None:
        return []
    return [high if opt.high_open else high + 1]


def bad_texts(opt: Option) -> list[str]:
    """Command-line spellings ``opt`` must refuse."""
    def fmt(v):
        return str(int(v)) if opt.kind in ("int", "size", "ints", "int_or_ints") else repr(float(v))

    kind = opt.kind
    if kind == "bool":
        return []
    if kind == "choice":
        return ["bogus", ""]
    if kind == "text":
        return ["", "   "]
    out_of_range = [fmt(v) for v in _below(opt) + _above(opt)]
    if kind == "int":
        return ["abc", "1.5", "", *out_of_range]
    if kind == "float":
        return ["abc", "nan", "inf", "-inf", "1e39" if opt.high is not None else "nan", *out_of_range]
    if kind == "size":
        return ["abc", "8x", "8x8x8", *out_of_range, f"8x{out_of_range[0]}" if out_of_range else "x"]
    if kind == "pair":
        return ["abc", "0.5", "0.9,0.1" if opt.low is None or opt.low <= 0.1 else "abc,def",
                *(f"{v},{v}" for v in out_of_range)]
    if kind == "int_or_ints":
        return ["", "a,b", "1.5", *out_of_range, *(f"1,{v}" for v in out_of_range)]
    return ["", "a,b", *out_of_range]  # ints


def bad_values(opt: Option) -> list:
    """Python / YAML values ``opt`` must refuse (wrong type, out of range, not finite)."""
    kind = opt.kind
    nulls = [] if (opt.nullable or opt.off_value is not None) else [None]
    if kind == "bool":
        return ["yes", 1, *nulls]
    if kind == "choice":
        return ["bogus", 3, *nulls]
    if kind == "text":
        return ["", 5, *nulls]
    out_of_range = _below(opt) + _above(opt)
    if kind == "int":
        return ["12", 1.5, True, *[int(v) for v in out_of_range], *nulls]
    if kind == "float":
        return ["0.1", math.nan, math.inf, True, *out_of_range, *nulls]
    if kind == "size":
        return ["224", [224], [224, 224, 3], 1.5, *[int(v) for v in out_of_range], *nulls]
    if kind == "pair":
        return ["0.1,1", [0.5], [math.nan, 1.0], *([[v, v] for v in out_of_range]), *nulls]
    if kind == "int_or_ints":
        return ["1,5", [], 1.5, [1.5], *[int(v) for v in out_of_range], *[[int(v)] for v in out_of_range], *nulls]
    return ["1,5", [], [1.5], *[[int(v)] for v in out_of_range], *nulls]  # ints


# ---------------------------------------------------------------------------- the command line
def command_options() -> list[tuple[str, str, Option]]:
    """(command, flag, definition) for every option of every command that has a definition."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for command, cmd_parser in sub.choices.items():
        for action in cmd_parser._actions:
            definition = getattr(action, "option", None)  # set by Option.add_to on every flag it makes
            if isinstance(definition, Option):
                found.append((command, action.option_strings[0] if action.option_strings else action.dest,
                              definition))
    return found


#: arguments that make each command's line complete apart from the option under test
REQUIRED = {"eval": ["ckpt", "--data", "digits"], "fewshot": ["ckpt", "--data", "digits"],
            "predict": ["ckpt", "img.png"], "inspect": ["--model", "ViT-Ti/16", "--out", "o"],
            "convert": ["a", "b", "--to", "native"], "bench": ["ViT-Ti/16"]}

CLI_CASES = [(command, flag, text) for command, flag, opt in command_options() for text in bad_texts(opt)]


def test_the_sweep_covers_every_command_and_the_training_options():
    swept = {(command, flag) for command, flag, _ in CLI_CASES}
    commands = {command for command, _ in swept}
    assert {"train", "finetune", "eval", "fewshot", "predict", "inspect", "models", "demo"} <= commands
    for flag in ("--lr", "--clip", "--accum", "--log-every", "--eval-every", "--num-workers", "--crop-pct",
                 "--drop-path", "--attention-dropout", "--image-size", "--patch-size", "--num-heads",
                 "--hidden-size", "--data", "--batch-size", "--wd", "--ema", "--embed-dim", "--depths",
                 "--window-size", "--mlp-ratio", "--teacher", "--distill", "--distill-alpha", "--distill-tau"):
        assert ("train", flag) in swept, flag
    for command in ("eval", "fewshot", "predict"):
        assert (command, "--batch-size") in swept
    for command, flag in (("train", "--config"), ("train", "--resume"), ("train", "--stop-after"),
                          ("finetune", "--image-size"), ("train", "--out"), ("eval", "--confusion"),
                          ("eval", "--data"), ("predict", "--attention"), ("bench", "--rows"), ("bench", "--compare"),
                          ("bench", "--guard-data"), ("bench", "--guard-images"), ("bench", "--image-size"),
                          ("inspect", "--model"), ("inspect", "--images"), ("inspect", "--out"),
                          ("inspect", "--image-size"), ("reproduce", "--only"), ("reproduce", "--out"),
                          ("reproduce", "--threads"), ("reproduce", "--jobs"), ("reproduce", "--write-summary"),
                          ("train", "--save-epochs"), ("demo", "--out"), ("selfsup", "--out"), ("selfsup", "--seeds")):
        assert (command, flag) in swept, (command, flag)


def test_the_switches_are_options_too():
    """Flags without a value (--ema, --json, --quiet ...) carry their definition though they have no bad text."""
    switches = {(command, flag) for command, flag, opt in command_options() if opt.kind == "bool"}
    for command in ("eval", "fewshot", "predict", "linprobe", "inspect", "bench"):
        assert (command, "--ema") in switches and (command, "--json") in switches
    for command in ("train", "finetune", "demo", "selfsup", "reproduce"):
        assert (command, "--quiet") in switches
    assert {("eval", "--guard"), ("bench", "--markdown")} <= switches


def test_a_size_option_takes_height_by_width_on_every_command():
    sized = [(command, flag) for command, flag, opt in command_options() if opt.kind == "size"]
    assert {"train", "finetune", "bench", "inspect", "models"} <= {command for command, _ in sized}
    for command, flag in sized:
        action = next(a for a in _parser_of(command)._actions if flag in a.option_strings)
        assert action.type("48x32") == (48, 32), (command, flag)


def _parser_of(command: str) -> argparse.ArgumentParser:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]


@pytest.mark.parametrize("command, flag, text", CLI_CASES, ids=[f"{c} {f} {t!r}" for c, f, t in CLI_CASES])
def test_a_bad_option_is_one_line_and_exit_2_before_anything_is_written(command, flag, text, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [command, *REQUIRED.get(command, []), f"{flag}={text}"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert flag in err[0] and "allowed:" in err[0], err[0]
    assert "Traceback" not in err[0]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ YAML and Python
TRAIN_CASES = [(name, value) for name, opt in field_options(TrainConfig).items() for value in bad_values(opt)]
MODEL_CASES = [(name, value) for name, opt in field_options(ViTConfig).items() for value in bad_values(opt)
               if name != "name"]
SWIN_CASES = [(name, value) for name, opt in field_options(SwinConfig).items() for value in bad_values(opt)
              if name != "name" and not (name in ("depths", "num_heads") and isinstance(value, int))]
#: the fields DeiT and DINOv2 add to ViT's (whose own are swept above), each family at one of its variants
FAMILY_CASES = [("Swin-T", name, value) for name, value in SWIN_CASES] + [
    (variant, name, value) for variant, config in (("DeiT-Ti/16-distilled", DeiTConfig), ("DINOv2-S/14", DINOv2Config))
    for name, opt in field_options(config).items() if name not in field_options(ViTConfig)
    for value in bad_values(opt)]


@pytest.mark.parametrize("name, value", TRAIN_CASES, ids=[f"{n}={v!r}" for n, v in TRAIN_CASES])
def test_a_bad_yaml_field_is_refused_naming_the_file_and_the_field(name, value, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"data": "digits", name: value}))
    out = tmp_path / "run"
    command = "finetune" if name == "checkpoint" else "train"
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--config", str(config), "--out", str(out), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(config) in err[0] and f"{name}: got" in err[0], err[0]
    assert not out.exists()


@pytest.mark.parametrize("name, value", TRAIN_CASES, ids=[f"{n}={v!r}" for n, v in TRAIN_CASES])
def test_a_bad_training_option_is_refused_by_the_python_api(name, value):
    with pytest.raises(VitkitError, match=f"^{name}: got"):
        TrainConfig(**{name: value})


@pytest.mark.parametrize("name, value", MODEL_CASES, ids=[f"{n}={v!r}" for n, v in MODEL_CASES])
def test_a_bad_architecture_field_is_refused_by_the_python_api(name, value):
    with pytest.raises(VitkitError, match=f"^{name}: got"):
        vitkit.get_config("ViT-Ti/16", **{name: value})
    if value is not None:  # create_model takes None as "not given"
        with pytest.raises(VitkitError, match=f"^{name}: got"):
            vitkit.create_model("ViT-Ti/16", **{name: value})


@pytest.mark.parametrize("variant, name, value", FAMILY_CASES, ids=[f"{m}:{n}={v!r}" for m, n, v in FAMILY_CASES])
def test_a_bad_family_architecture_field_is_refused_by_the_python_api(variant, name, value):
    with pytest.raises(VitkitError, match=f"^{name}: got"):
        vitkit.get_config(variant, **{name: value})


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=200), "not divisible by the patch size 16"),
    (dict(num_heads=5), "not divisible by num_heads 5"),
    (dict(patch_size=9), "not divisible by the patch size 9"),
])
def test_architecture_fields_that_contradict_each_other_are_refused(kwargs, message):
    with pytest.raises(VitkitError, match=message):
        vitkit.create_model("ViT-Ti/16", **kwargs)


@pytest.mark.parametrize("name", [None, "", 3, "ViT-Q/16"])
def test_create_model_refuses_what_is_not_a_model_name(name):
    with pytest.raises(VitkitError, match="model"):
        vitkit.create_model(name)


def test_a_pretraining_run_whose_architecture_cannot_work_is_refused_before_data_is_read(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tmp_path / "no-such-data"), "--image-size", "30", "--patch-size", "4",
              "--out", str(out), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not divisible by the patch size 4" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("call", [
    lambda m, d: vitkit.evaluate.evaluate(m, d, batch_size=0),
    lambda m, d: vitkit.evaluate.evaluate(m, d, num_workers=-1),
    lambda m, d: vitkit.evaluate.fewshot_evaluate(m, d, d, shots=[0]),
    lambda m, d: vitkit.evaluate.fewshot_evaluate(m, d, d, draws=0),
])
def test_the_evaluation_api_refuses_bad_arguments_before_reading_images(call):
    from vitkit.data.sources import open_source

    model = vitkit.create_model("ViT-Ti/16", image_size=16, patch_size=8, depth=1, num_classes=10)
    with pytest.raises(VitkitError, match="got"):
        call(model, open_source("digits", "test"))


def test_load_model_refuses_bad_arguments_before_reading_the_file(tmp_path):
    with pytest.raises(VitkitError, match="num_classes: got -1"):
        vitkit.load_model(tmp_path / "missing", num_classes=-1)
    with pytest.raises(VitkitError, match="image_size: got 0"):
        vitkit.load_model(tmp_path / "missing", image_size=0)


# ------------------------------------------------------------------ distillation: what a teacher must be
@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A teacher of the digits' ten classes, one of three other classes, and a file that is no checkpoint."""
    root = tmp_path_factory.mktemp("teachers")
    (root / "notes.txt").write_text("not a checkpoint")
    return {"digits": tiny_teacher(root / "digits"), "abc": tiny_teacher(root / "abc", label_names=["a", "b", "c"]),
            "text": root / "notes.txt", "missing": root / "missing"}


DISTILL_CASES = {  # the options beside a tiny pre-training run on the digits -> what the one line says
    "no such teacher": (["--teacher", "{missing}"], "--teacher: {missing}: no such file or directory"),
    "not a checkpoint": (["--teacher", "{text}"], "--teacher: {text}: "),
    "other classes": (["--teacher", "{abc}", "--distill", "soft"],
                      "--teacher {abc}: the checkpoint's 3 classes do not match the data's 10"),
    "no distillation token": (["--teacher", "{digits}", "--distill", "hard"],
                              "--distill hard trains a distillation token's head"),
    "no teacher": (["--distill", "soft", "--distill-alpha", "0.2"],
                   "--distill and --distill-alpha set distillation from a teacher: give --teacher"),
    "tau of hard": (["--teacher", "{digits}", "--distill-tau", "2"], "--distill-tau is soft distillation's"),
    "no labels": (["--teacher", "{digits}", "--objective", "mae"], "objective 'mae' trains without labels"),
}


@pytest.mark.parametrize("case", DISTILL_CASES)
def test_a_teacher_or_distillation_setting_that_cannot_work_is_one_line_and_exit_2(case, teachers, tmp_path, capsys):
    options, message = DISTILL_CASES[case]
    out = tmp_path / "run"
    line = run_fails(capsys, ["train", "--model", "ViT-Ti/16", *TINY_CLI, "--data", "digits", "--steps", "2",
                              *(o.format(**teachers) for o in options), "--out", str(out), "--quiet"])
    assert message.format(**teachers) in line, line
    assert not out.exists()
