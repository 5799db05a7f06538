"""The Family record keeps its shape (issue 20, items 1 and 7): no code outside a family's own folders
compares family names; every registered family fills every field of its record; and a family registered
from the tests (:mod:`toy_family`) goes through create, native save/load, training, ``vitkit eval`` and
``vitkit models`` with nothing but its registration."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import typing
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from toy_family import FAMILY as TOY
from trainutil import cli_json

import vitkit
from vitkit import VitkitError
from vitkit.cli.main import main
from vitkit.models.protocol import VitkitModel
from vitkit.models.registry import (
    ATTENTION_KINDS,
    FAMILIES,
    FAST_PATHS,
    FINETUNE_OPTIONS,
    Family,
    family_of,
    register_family,
    registered,
    unregister_family,
)

SRC = Path(vitkit.__file__).parent
FAMILY_NAMES = {"vit", "deit", "swin", "bit", "dinov2"}
#: files that name ViT and BiT for another reason: the series of the paper's plots (Fig. 5: ViT, ResNet,
#: hybrid; Fig. 3/4: ViT against BiT), which are runs of a study, not facts of a model family
STUDY_SERIES = {"studies/reproduce/compute.py", "studies/reproduce/data_size.py"}


# ------------------------------------------------------------------------------------------ (a)
def _family_literals(node: ast.AST) -> list[str]:
    """The family names among the string constants of ``node`` (a constant, or a tuple/list/set of them)."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [n.value for n in items if isinstance(n, ast.Constant) and n.value in FAMILY_NAMES]


def family_name_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every comparison of something with a family name, every table keyed by family
    names, and every call that passes a family name to a ``*family*`` function."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if _family_literals(side):
                    found.append((node.lineno, f"compares with {_family_literals(side)}"))
                    break
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if k is not None and _family_literals(k)]
            if keys:
                found.append((node.lineno, f"a table keyed by {[ast.unparse(k) for k in keys]}"))
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if "family" in name.lower() and any(_family_literals(arg) for arg in node.args):
                found.append((node.lineno, f"{name}(...) with a family name"))
    return found


def own_folder(relative: str) -> bool:
    parts = relative.split("/")
    return relative == "models/registry.py" or (
        len(parts) > 2 and parts[0] in ("models", "checkpoints") and parts[1] in FAMILY_NAMES)


def uses_outside_families(under: str = "") -> dict[str, list[tuple[int, str]]]:
    out = {}
    for path in sorted((SRC / under).rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if own_folder(relative) or relative in STUDY_SERIES:
            continue
        uses = family_name_uses(path.read_text())
        if uses:
            out[relative] = uses
    return out


def test_the_guard_finds_what_it_guards_against():
    source = ('if family_of(m).name == "swin": pass\nx = m.family != "vit"\nT = {"bit": 1}\n'
              'require_family(m, "vit", "w")\nif name in ("vit", "swin"): pass\nok = {"a": family_of(m).name}\n')
    assert [line for line, _ in family_name_uses(source)] == [1, 2, 3, 4, 5]


def test_no_family_name_comparison_outside_the_families_own_folders():
    found = {path: uses for path, uses in uses_outside_families().items() if not path.startswith("checkpoints/")}
    assert found == {}


def test_no_family_name_comparison_in_the_checkpoint_plumbing():
    assert uses_outside_families("checkpoints") == {}


# ------------------------------------------------------------------------------------------ (b)
FIGURES = ("filters.png", "position_similarity.png", "attention_distance.png", "rollout.png", "attention_heads.png",
           "window_attention.png")


def _check_field(fam: Family, model: torch.nn.Module, name: str, value) -> None:
    """Each field holds something vitkit knows, not a placeholder (``model``: a variant of ``fam``)."""
    from vitkit.objectives import OBJECTIVES

    checks: dict[str, Callable[[], bool]] = {
        "name": lambda: value == fam.config_class.family,
        "title": lambda: bool(value) and value.lower().startswith(fam.name[:2]),
        "config_class": lambda: dataclasses.is_dataclass(value),
        "model_class": lambda: issubclass(value, torch.nn.Module),
        "variants": lambda: bool(value) and all(isinstance(c, fam.config_class) for c in value.values()),
        "aliases": lambda: all(target in fam.variants for target in value.values()),
        "description": lambda: len(value) > 10,
        "columns": lambda: bool(value) and all(c.key and callable(c.value) for c in value),
        "architecture_options": lambda: bool(value),
        "finetune_options": lambda: set(value) <= set(FINETUNE_OPTIONS),
        "objectives": lambda: "supervised" in value and set(value) <= set(OBJECTIVES),
        "attention": lambda: value in ATTENTION_KINDS,
        "figures": lambda: set(value) <= set(FIGURES) and (fam.attention != "none" or value == ()),
        "why_not": lambda: set(value) == set(FIGURES) - set(fam.figures) and all(len(r) > 20 for r in value.values()),
        "fast_paths": lambda: bool(value) and set(value) <= set(FAST_PATHS),
        "attention_layers": lambda: len(value(model)) == (0 if fam.attention == "none" else len(fam.blocks(model))),
        "blocks": lambda: len(value(model)) > 0,
        "layer_id": lambda: {value(model, n) for n, _ in model.named_parameters()} == set(
            range(fam.num_layers(model) + 2)),
        "preprocessing": lambda: all(getattr(model.preprocessing, k) == tuple(v) for k, v in value.items())
        and {"mean", "std"} <= set(value),
        "pretraining_head": lambda: isinstance(value(model.config, {}), dict),
        "small_images": lambda: set(value(model.config, (32, 32))) <= set(fam.architecture_options),
        "block_unit": lambda: value in ("layer", "block", "unit"),
        "transformers_peer": lambda: value is None or callable(value),
    }
    assert checks[name](), f"{fam.name}.{name} = {value!r}"


@pytest.mark.parametrize("family", ["vit", "deit", "swin", "bit", "dinov2", "toy"])
def test_every_family_fills_every_field_of_its_record(family):
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in dataclasses.fields(Family)), "a default would let a family leave a capability unstated"
    from vitkit.inspect.report import FIGURES as REPORT_FIGURES

    assert REPORT_FIGURES == FIGURES
    with registered(TOY) if family == "toy" else contextlib.nullcontext():
        fam = FAMILIES[family]
        with torch.device("meta"):
            model = vitkit.create_model(next(iter(fam.variants)))
        assert isinstance(model, VitkitModel)
        for f in dataclasses.fields(Family):
            _check_field(fam, model, f.name, getattr(fam, f.name))


def test_registration_refuses_unknown_capabilities_and_unregisters():
    with pytest.raises(ValueError, match="unknown fast path warp"):
        register_family(dataclasses.replace(TOY, fast_paths=("warp",)))
    with pytest.raises(ValueError, match="unknown architecture option colour"):
        register_family(dataclasses.replace(TOY, architecture_options=("colour",)))
    assert "toy" not in FAMILIES
    with pytest.raises(VitkitError, match="unknown model family 'toy'"):
        unregister_family("toy")


def test_every_family_checks_its_input_through_the_one_check():
    for name in ("ViT-Ti/16", "Swin-T", "BiT-R26x1"):
        model = vitkit.create_model(name, image_size=64 if name != "Swin-T" else 224, num_classes=2)
        for bad, message in ((torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "got torch.uint8 (raw pixels? "),
                             (torch.zeros(3, 64, 64), "a single image needs its batch axis: x.unsqueeze(0)"),
                             (torch.zeros(2, 64, 64, 3), "channels come second (B, C, H, W)"),
                             (torch.zeros(2, 3, 64, 64, dtype=torch.float64), "expected torch.float32 images"),
                             ([[0.0]], "expected a tensor of images (B, 3, H, W), got list")):
            with pytest.raises(VitkitError) as caught:
                model(bad)
            assert message in str(caught.value) and "\n" not in str(caught.value), (name, str(caught.value))


def test_public_signatures_say_a_vitkit_model():
    from vitkit.evaluate import fewshot, linear_probe, metrics, predict
    from vitkit.inspect.filters import embedding_filter_components
    from vitkit.objectives.base import Objective, eval_batches, pixels_01
    from vitkit.objectives.supervised import Supervised

    for fn in (fewshot.extract_features, linear_probe.linear_probe, metrics.evaluate, predict.predict_images,
               Objective.forward, Objective.evaluate, Supervised.forward, Supervised.evaluate, eval_batches,
               pixels_01, embedding_filter_components):
        assert typing.get_type_hints(fn)["model"] is VitkitModel, fn.__qualname__


# ------------------------------------------------------------------------------------------ (c)
def test_a_family_registered_from_the_tests_goes_through_every_command(tmp_path, capsys):
    from vitkit.train import TrainConfig, train
    from vitkit.train.recipes import recipe_defaults

    with registered(TOY):
        model = vitkit.create_model("toy small", num_classes=3, seed=0)  # an alias, spelled loosely
        assert family_of(model) is TOY and model.config.name == "Toy-S"
        vitkit.save_native(model, tmp_path / "saved")
        again = vitkit.load_model(tmp_path / "saved")
        x = torch.randn(2, 3, 16, 16)
        assert type(again).__name__ == "ToyModel" and torch.equal(again(x), model(x))

        config = TrainConfig(**{**recipe_defaults("pretrain"), "model": "Toy-S", "data": "digits", "image_size": 16,
                                "steps": 3, "batch_size": 32, "lr": 1e-2, "warmup": 1, "eval_every": 1000,
                                "model_options": {"width": 40}, "out": str(tmp_path / "run")})
        result = train(config, progress=False)
        assert result.finished and result.step == 3 and isinstance(result.model, TOY.model_class)
        assert result.model.config.width == 40  # its own architecture option, read from its record

        evaluated = cli_json(capsys, ["eval", str(tmp_path / "run"), "--data", "digits", "--confusion", "none"])
        assert 0 <= evaluated["top1"] <= 1

        listed = cli_json(capsys, ["models", "Toy"])
        assert [r["name"] for r in listed["models"]] == ["Toy-S", "Toy-M"]
        assert listed["models"][1]["width"] == 48 and listed["models"][1]["family"] == "toy"
        main(["models", "Toy"])
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[-2:] == ["width", "depth"], table  # the family's own columns
        assert table[2].startswith("Toy-M") and table[2].split()[-2:] == ["48", "3"], table
    assert "toy" not in FAMILIES and vitkit.list_models("Toy") == []
    with pytest.raises(SystemExit):  # gone with its family, and not taken as a prefix of BiT's --width-factor
        main(["train", "--data", "digits", "--model", "BiT-R26x1", "--width", "2"])
    assert "unrecognized arguments: --width 2" in capsys.readouterr().err


def test_options_and_objectives_a_family_does_not_take_are_one_line_naming_it():
    from vitkit.deploy.fastpath import FastPath, apply_fast_path
    from vitkit.train.recipes import paper_pretraining_head, pretraining_architecture

    with pytest.raises(VitkitError, match="objective 'mae' does not apply to a swin model"):
        pretraining_architecture("Swin-T", {}, "mae")
    swin = vitkit.create_model("Swin-T", image_size=32, patch_size=2, embed_dim=16, depths=(1,), num_heads=(1,),
                               window_size=4, num_classes=2)
    with pytest.raises(VitkitError, match="--merge does not apply to a swin model"):
        apply_fast_path(swin, FastPath(merge=2))
    assert "representation_size" not in pretraining_architecture("ViT-Ti/16", {})  # a linear head unless asked
    assert paper_pretraining_head("ViT-Ti/16", {})["representation_size"] == 192  # §3.1's pre-logits, D wide
    assert paper_pretraining_head("ViT-Ti/16", {"representation_size": 0})["representation_size"] == 0
    assert "representation_size" not in paper_pretraining_head("Swin-T", {})  # Swin pre-trains with its linear head
