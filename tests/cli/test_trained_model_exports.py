"""The model ``vitkit train`` makes with its default options goes to every client a user takes it to
(issue 21, item 3): transformers' pipeline, timm (a state-dict file and a hub directory), onnxruntime and
the official .npz each compute what vitkit computes. The head rule behind it -- a linear head unless
``--representation-size N`` asks for the paper's pre-logits layer -- is the same from the command line,
a YAML file and Python; a model with that layer goes to the formats that hold it, and the hf refusal
names them."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import run_cli, run_fails
from formats_testing import logits, official_vit_forward
from timm_reference import import_timm, timm_logits_of_file
from trainutil import TINY, TINY_CLI
from transformers_reference import assert_pipeline_gives_vitkit_predict

from vitkit import load_model
from vitkit.cli.common import training_config
from vitkit.cli.main import build_parser, main
from vitkit.data.sources import open_source
from vitkit.data.transforms import eval_transform
from vitkit.models.vit.model import PreLogits
from vitkit.train import TrainConfig, recipe_defaults
from vitkit.train.loop import build_model
from vitkit.train.settings import resolve_training_config

#: ``--representation-size`` of the run that asks for the paper's pre-training head (TINY's width D)
ASKED = TINY["hidden_size"]


@functools.cache
def trained_run(head: str) -> Path:
    """A ``vitkit train`` run on the bundled digits with the default options but the tiny model's size and
    20 steps; ``head="pre-logits"`` adds ``--representation-size`` (built once per test session)."""
    out = Path(tempfile.mkdtemp(prefix=f"vitkit-{head}-")) / "run"
    asked = ["--representation-size", str(ASKED)] if head == "pre-logits" else []
    main(["train", "--data", "digits", *TINY_CLI, *asked, "--steps", "20", "--out", str(out), "--quiet"])
    return out


@functools.cache
def digit_pictures() -> tuple[list[str], torch.Tensor]:
    """Four digits of the test split as PNG files of assorted sizes (the pipeline resizes them as vitkit
    does), and the same pictures as the trained model's evaluation transform makes them."""
    folder = Path(tempfile.mkdtemp(prefix="vitkit-digits-"))
    test = open_source("digits", "test")
    transform = eval_transform(load_model(trained_run("linear") / "model").preprocessing)
    paths, tensors = [], []
    for i, (width, height) in enumerate([(16, 16), (37, 29), (24, 40), (64, 48)]):
        image = test[i][0].resize((width, height))
        paths.append(str(folder / f"digit{i}.png"))
        image.save(paths[-1])
        tensors.append(transform(image))
    return paths, torch.stack(tensors)


def _pipeline(dst: Path, model, x: torch.Tensor, paths: list[str]) -> None:
    assert_pipeline_gives_vitkit_predict(model, dst, paths, top_k=model.config.num_classes)


def _timm_file(dst: Path, model, x: torch.Tensor, paths: list[str]) -> None:
    # timm runs a state-dict file with the exact GELU: within the export check's 1e-4 of vitkit's tanh GELU
    theirs = timm_logits_of_file(import_timm(), model, dst, x)
    torch.testing.assert_close(theirs, logits(model, x), rtol=0, atol=1e-4)


def _timm_hub(dst: Path, model, x: torch.Tensor, paths: list[str]) -> None:
    theirs = import_timm().create_model(f"local-dir:{dst}", pretrained=True).eval()
    torch.testing.assert_close(logits(theirs, x), logits(model, x), rtol=0, atol=1e-5)


def _onnxruntime(dst: Path, model, x: torch.Tensor, paths: list[str]) -> None:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    theirs, = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(theirs, logits(model, x).numpy(), rtol=0, atol=1e-5)


def _official_npz(dst: Path, model, x: torch.Tensor, paths: list[str]) -> None:
    torch.testing.assert_close(logits(load_model(dst), x), logits(model, x), rtol=0, atol=1e-6)  # read back
    with np.load(dst) as npz:  # and the independent reading of the official code
        official = official_vit_forward(dict(npz), x.permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(official, logits(model, x).double().numpy(), rtol=0, atol=1e-4)


def _native(dst: Path, model, x: torch.Tensor, paths: list[str]) -> None:
    torch.testing.assert_close(logits(load_model(dst), x), logits(model, x), rtol=0, atol=0)


#: client -> (--to, destination name, what the client computes checked against vitkit)
CLIENTS = {"transformers pipeline": ("hf", "hf", _pipeline), "timm file": ("timm", "m.safetensors", _timm_file),
           "timm hub directory": ("timm", "timm-hub", _timm_hub), "onnxruntime": ("onnx", "m.onnx", _onnxruntime),
           "official npz": ("jax", "m.npz", _official_npz), "native": ("native", "native", _native)}
#: the formats the hf refusal names for a model with a pre-logits layer: each must hold its trained classifier
HOLD_PRE_LOGITS = ("onnxruntime", "official npz", "native")


@pytest.mark.parametrize("head, client", [("linear", name) for name in CLIENTS]
                         + [("pre-logits", name) for name in HOLD_PRE_LOGITS])
def test_a_model_trained_with_vitkit_train_goes_to_every_client(head, client, tmp_path, capsys):
    run = trained_run(head)
    fmt, name, check = CLIENTS[client]
    code, _, err = run_cli(["convert", str(run), str(tmp_path / name), "--to", fmt, "--no-progress"], capsys)
    assert code == 0, err
    model = load_model(run / "model")
    paths, x = digit_pictures()
    spread = logits(model, x)
    assert (spread.max(1).values - spread.min(1).values).min() > 0.05  # a trained head: real distributions
    check(tmp_path / name, model, x, paths)


def test_transformers_refuses_a_pre_logits_layer_naming_the_formats_that_keep_the_classifier(tmp_path, capsys):
    run = trained_run("pre-logits")
    line = run_fails(capsys, ["convert", str(run), str(tmp_path / "hf"), "--to", "hf"])
    assert "ViTForImageClassification has no pre-logits layer" in line
    assert "convert to native, jax (the official .npz) or onnx, which keep the trained classifier" in line
    assert "train with a linear head (vitkit train's default: no --representation-size)" in line
    assert "reset_head" not in line and not (tmp_path / "hf").exists()
    line = run_fails(capsys, ["convert", str(run), str(tmp_path / "m.safetensors"), "--to", "timm"])
    assert "drops the pre-logits layer (pre_logits.*) when it loads weights (native, jax (the official .npz) " \
           "or onnx keep it)" in line and not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("asked", [None, 16])
def test_the_head_rule_is_the_same_from_the_command_line_a_yaml_file_and_python(asked, tmp_path):
    """Linear unless asked: the classifier ``vitkit train`` makes is the product (and a linear head goes to
    every format); ``--representation-size N`` (``model_options.representation_size``) asks for the paper's
    pre-logits layer, Dense + tanh, N wide (§3.1)."""
    import yaml

    options = dict(TINY) if asked is None else {**TINY, "representation_size": asked}
    flags = [] if asked is None else ["--representation-size", str(asked)]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"data": "digits", "image_size": 16, "model_options": options}))
    configs = {
        "command line": training_config(build_parser().parse_args(["train", "--data", "digits", *TINY_CLI, *flags]),
                                        "pretrain"),
        "YAML file": resolve_training_config("pretrain", config_file=tmp_path / "run.yaml"),
        "Python": TrainConfig(**recipe_defaults("pretrain"), model="ViT-Ti/16", model_options=options, image_size=16,
                              data="digits"),
    }
    for source, config in configs.items():
        model = build_model(config, ["a", "b", "c"])
        assert config.architecture().representation_size == asked, source
        if asked is None:
            assert isinstance(model.pre_logits, torch.nn.Identity) and model.head.in_features == TINY["hidden_size"]
        else:
            assert isinstance(model.pre_logits, PreLogits) and model.pre_logits.fc.out_features == asked, source
            assert model.head.in_features == asked, source
    trained = load_model(trained_run("linear") / "model")  # and what the command itself trained
    assert trained.config.representation_size is None and isinstance(trained.pre_logits, torch.nn.Identity)
    assert load_model(trained_run("pre-logits") / "model").config.representation_size == ASKED
