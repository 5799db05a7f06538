"""Guard of issue 20, item 4: one definition per option.

Every option name -- a field of a configuration class (TrainConfig, the families' configs, the objectives'
options, bench's settings), a shared command option (``COMMAND_OPTIONS``) or a flag of a command -- maps to
one :class:`~vitkit.options.Option`: the same object everywhere (or one derived from it by
``Option.optional()``). The exceptions, names that mean different things in different places, are listed
below with their reasons, and the list is exact, so a new duplicate fails here and a resolved one asks to be
struck off. No command makes a flag by hand.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

from vitkit.cli.main import build_parser
from vitkit.deploy.bench import BenchSettings
from vitkit.models.bit.config import BiTConfig
from vitkit.models.swin.config import SwinConfig
from vitkit.models.vit.config import ViTConfig
from vitkit.objectives import OBJECTIVES
from vitkit.options import COMMAND_OPTIONS, EMA, IMAGE_SIZE, Option, field_options
from vitkit.train.recipes import TrainConfig

#: Names that mean different things in different places (each keeps its name where users know it).
DIFFERENT_MEANINGS = {
    "ema": "TrainConfig.ema is the decay of the weight average a run keeps (--ema 0.9999 on train/finetune); "
           "the commands that load a run take --ema as a switch: use that average (model_ema/)",
    "batch_size": "training's is the global batch of one optimiser step (over processes and --accum); "
                  "evaluation's and bench's are the images of one forward pass",
    "warmup": "training's are the learning rate's warm-up steps; bench's are untimed calls before timing",
    "precision": "training's is auto/fp32/bf16 (no fp16: no loss scaling); bench times fp16 rows too",
    "compile": "training compiles forward and backward for the run; the inference commands' --compile is a "
               "fast path (vitkit.deploy.fastpath) that --guard checks against fp32",
    "num_heads": "ViT has one number, Swin one per stage; the --num-heads flag takes either and the family's "
                 "configuration checks it",
}


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def every_definition() -> dict[str, dict[int, tuple[Option, list[str]]]]:
    """name -> {id of its definition: (the option, where it is used)}."""
    found: dict[str, dict[int, tuple[Option, list[str]]]] = defaultdict(dict)

    def add(where: str, options: dict[str, Option]) -> None:
        for name, option in options.items():
            found[name].setdefault(id(option.definition), (option, []))[1].append(where)

    for cls in (TrainConfig, ViTConfig, SwinConfig, BiTConfig, BenchSettings,
                *(options for _, options in OBJECTIVES.values() if options is not None)):
        add(cls.__name__, field_options(cls))
    add("COMMAND_OPTIONS", COMMAND_OPTIONS)
    for command, parser in commands().items():
        add(f"vitkit {command}", {a.dest: a.option for a in parser._actions if hasattr(a, "option")})
    return found


def test_every_name_has_exactly_one_definition_except_the_different_meanings():
    duplicated = {name: uses for name, uses in every_definition().items() if len(uses) > 1}
    unexplained = {name: [where for _, where in uses.values()] for name, uses in duplicated.items()
                   if name not in DIFFERENT_MEANINGS}
    assert not unexplained, f"defined more than once: {unexplained}"
    assert set(DIFFERENT_MEANINGS) == set(duplicated), "strike resolved names off the list"


def test_the_fields_the_families_share_are_one_option_wherever_they_are():
    from vitkit.models import fields
    from vitkit.options import IN_CHANNELS, NAME, NUM_CLASSES, THREADS

    found = every_definition()
    for name, option in {"name": NAME, "num_classes": NUM_CLASSES, "in_channels": IN_CHANNELS,
                         "threads": THREADS}.items():
        (only,) = found[name].values()
        assert only[0].definition is option, name
    for name in ("patch_size", "dropout", "attention_dropout", "drop_path", "qkv_bias", "layer_norm_eps", "mlp_act",
                 "gn_eps", "ws_eps"):
        (only,) = found[name].values()
        assert only[0].definition is getattr(fields, name.upper()), name
    assert {"ViTConfig", "SwinConfig", "BiTConfig"} <= set(found["name"][id(NAME)][1])
    assert {"ViTConfig", "SwinConfig", "TrainConfig", "vitkit train", "vitkit finetune"} <= set(
        found["dropout"][id(fields.DROPOUT)][1]) and "BenchSettings" in found["threads"][id(THREADS)][1]
    # TrainConfig's are the same definitions made optional (None: keep the checkpoint's), in its own words
    drop_path = field_options(TrainConfig)["drop_path"]
    assert drop_path.definition is fields.DROP_PATH and drop_path.check(None) is None
    assert drop_path.help.startswith("fine-tuning") and (drop_path.low, drop_path.high) == (0, 1)


def test_image_size_is_one_option_in_every_configuration_and_command():
    uses = every_definition()["image_size"]
    assert len(uses) == 1
    option, where = next(iter(uses.values()))
    assert option.definition is IMAGE_SIZE
    assert {"TrainConfig", "ViTConfig", "SwinConfig", "BiTConfig", "COMMAND_OPTIONS", "vitkit train",
            "vitkit finetune", "vitkit bench", "vitkit inspect", "vitkit models"} <= set(where)
    assert TrainConfig(image_size=[48, 32]).image_size == ViTConfig(image_size=(48, 32)).image_size == (48, 32)
    assert IMAGE_SIZE.parse("48x32") == (48, 32) and IMAGE_SIZE.parse("384") == (384, 384)


def test_every_command_that_loads_a_run_takes_the_one_ema_switch():
    for command in ("eval", "fewshot", "predict", "linprobe", "inspect", "bench", "convert"):
        (action,) = [a for a in commands()[command]._actions if "--ema" in a.option_strings]
        assert action.option is EMA and action.dest == "ema" and action.default is False, command


def test_every_flag_is_made_from_an_option():
    """No command writes a flag by hand (positional arguments, which have no flag, excepted)."""
    plain = {(command, action.option_strings[0]) for command, parser in commands().items()
             for action in parser._actions
             if action.option_strings and not hasattr(action, "option") and action.dest != "help"}
    assert plain == set()


def test_convert_takes_the_writable_dialects_and_keeps_its_switches():
    from vitkit.checkpoints.dialect import names

    parser = commands()["convert"]
    (to,) = [a for a in parser._actions if "--to" in a.option_strings]
    assert to.option.choices == tuple(names(writable=True)) and to.required
    args = parser.parse_args(["a.pt", "b", "--to", "native"])
    assert (args.overwrite, args.progress, args.ema, args.allow_approx, args.static_size, args.verify) == (
        False, True, False, False, False, True)
    args = parser.parse_args(["a.pt", "b.onnx", "--to", "onnx", "--overwrite", "--no-progress", "--ema",
                              "--allow-approx", "--static-size", "--no-verify"])
    assert (args.overwrite, args.progress, args.ema, args.allow_approx, args.static_size, args.verify) == (
        True, False, True, True, True, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["a.pt", "b", "--to", "bogus"])
    assert commands()["models"].parse_args(["--pretrained"]).pretrained is True


def test_optional_keeps_the_definition_and_many_checks_each_value():
    from vitkit.errors import VitkitError
    from vitkit.options import IMAGES, OUT

    optional = IMAGE_SIZE.optional()
    assert optional.definition is IMAGE_SIZE and optional.check(None) is None and optional.check(8) == (8, 8)
    with pytest.raises(VitkitError, match="image_size: got None"):
        IMAGE_SIZE.check(None, "image_size")
    assert OUT.optional().definition is OUT and OUT.optional().optional().definition is OUT
    worded = IMAGE_SIZE.optional("the model's resolution when left out")
    assert worded.definition is IMAGE_SIZE and worded.optional() is worded and worded.check(None) is None
    assert worded.describe() == "the model's resolution when left out [a size N or HxW of integers >= 1]"
    assert IMAGE_SIZE.help == "input resolution N or HxW"
    assert IMAGES.check(["a.png", "b"]) == ["a.png", "b"]
    with pytest.raises(VitkitError, match="images: got"):
        IMAGES.check(["a.png", ""], "images")
    parser = argparse.ArgumentParser()
    action = IMAGES.add_to(parser, "images", default=None, help="pictures to draw")
    assert action.option is IMAGES and action.help.startswith("pictures to draw [a non-empty string]")
    assert parser.parse_args(["--images", "a.png", "b.png"]).images == ["a.png", "b.png"]
