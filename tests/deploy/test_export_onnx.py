"""ONNX export: onnxruntime, run here by the test itself, against vitkit's own logits at several batch
sizes and image sizes (≤ 1e-4), the metadata a deployment reads, and the failure paths.

An export takes about ten seconds of CPU even for these tiny models (the dynamo exporter traces and
decomposes the whole graph): the default suite exports one plain ViT once and runs every check on
that file; the GAP model (through the CLI), the hybrid, the fixed-size paths and a failed check are
marked slow (``make test-all``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import run_cli
from formats_testing import logits, randomised, tiny
from PIL import Image

import vitkit
from vitkit import VitkitError, create_model, load_model, save_native
from vitkit.checkpoints.detect import detect_format
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.deploy import onnx as onnx_export
from vitkit.deploy.onnx import export_onnx, onnx_inputs, onnxruntime_session, read_metadata, run_onnx
from vitkit.evaluate.predict import predict_images

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SMALL = dict(hidden_size=32, depth=1, num_heads=2, mlp_dim=64)


def _compare(model, session, shapes) -> float:
    """Largest |onnxruntime - vitkit| over seeded inputs of the given (batch, height, width)."""
    worst = 0.0
    for i, (batch, height, width) in enumerate(shapes):
        x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(100 + i))
        got = session.run(None, {"pixel_values": x.numpy()})[0]
        expected = logits(model, x).numpy()
        assert got.shape == expected.shape
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A token-classifier ViT with label names and ImageNet normalisation, exported once."""
    model = tiny(image_size=32, patch_size=8, num_classes=5, **SMALL)
    model.label_names = ["a", "b", "c", "d", "e"]
    model.preprocessing = model.preprocessing.replace(mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.9,
                                                      crop_mode="center", interpolation="bicubic")
    path = tmp_path_factory.mktemp("onnx") / "plain.onnx"
    return model, path, export_onnx(model, path)


def test_plain_vit_matches_in_onnxruntime_at_several_batches_and_sizes(plain):
    model, path, report = plain
    assert report.dynamic_size and report.fixed_size_reason is None
    assert report.input_shape[:2] == ["batch", 3] and all(isinstance(d, str) for d in report.input_shape[2:])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "pixel_values" and isinstance(graph_input.shape[0], str)
    # batch 1 and 3 at the trained size; then 48x32 and 24x40: the graph resamples the position embeddings
    assert _compare(model, session, [(1, 32, 32), (3, 32, 32), (2, 48, 32), (1, 24, 40)]) <= 1e-4
    # the export's own check ran the same kinds of cases
    assert [(c["batch"], c["height"], c["width"]) for c in report.checks] == [(1, 32, 32), (3, 32, 32), (2, 40, 48)]
    assert report.max_abs_diff <= 1e-4


def test_the_file_carries_preprocessing_and_label_names(plain):
    model, path, _ = plain
    meta = read_metadata(path)
    assert meta["label_names"] == ["a", "b", "c", "d", "e"]
    pre = meta["preprocessing"]
    assert pre["image_size"] == [32, 32] and pre["crop_pct"] == 0.9 and pre["interpolation"] == "bicubic"
    np.testing.assert_allclose(pre["mean"], IMAGENET_MEAN)
    np.testing.assert_allclose(pre["std"], IMAGENET_STD)
    assert meta["input"]["name"] == "pixel_values" and "multiple of 8" in meta["input"]["height"]
    assert meta["output"]["name"] == "logits" and meta["output"]["shape"] == ["batch", 5]
    assert meta["architecture"]["hidden_size"] == 32
    # and onnxruntime sees the same (what a deployment reads)
    custom = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert json.loads(custom["label_names"]) == ["a", "b", "c", "d", "e"]


def test_loading_an_onnx_file_is_a_clear_error(plain):
    _, path, _ = plain
    with pytest.raises(VitkitError, match="an ONNX export; vitkit writes ONNX but does not read it back"):
        load_model(path)
    with pytest.raises(VitkitError, match="an ONNX export"):
        detect_format(path)


def test_run_onnx_and_session_helpers(plain):
    model, path, _ = plain
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    out = run_onnx(onnxruntime_session(path, threads=1), x)
    np.testing.assert_allclose(out, logits(model, x).numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(run_onnx(path, x.numpy()), out, rtol=0, atol=0)


SAMPLE = Path(vitkit.__file__).parent / "assets" / "sample.png"


def test_a_deployment_needs_only_the_file_onnxruntime_numpy_and_pil(plain):
    """The README's serving snippet: preprocessing written out from the file's metadata alone,
    against vitkit's own prediction for the same picture."""
    model, path, _ = plain
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    t = meta["preprocessing_transform"]
    (sh, sw), (h, w), r = t["resize"]["scale_size"], t["crop"]["size"], t["resize"]
    image = Image.open(SAMPLE).convert("RGB")
    if r["crop_mode"] == "squash":  # the whole image to scale_size
        size = (sw, sh)
    elif sh == sw:  # the shorter side to S, the longer one truncated
        short, long = min(image.size), max(image.size)
        size = (sh, int(sh * long / short)) if image.width <= image.height else (int(sh * long / short), sh)
    else:
        ratio = min(image.height / sh, image.width / sw)
        size = (round(image.width / ratio), round(image.height / ratio))
    image = image.resize(size, getattr(Image, r["interpolation"].upper()))
    top, left = int(round((image.height - h) / 2)), int(round((image.width - w) / 2))
    image = image.crop((left, top, left + w, top + h))
    x = ((np.asarray(image, np.float32) / 255 - t["mean"]) / t["std"]).transpose(2, 0, 1)[None].astype(np.float32)
    served = session.run(None, {"pixel_values": x})[0]

    (expected,) = predict_images(model, [SAMPLE], top_k=5)
    probabilities = np.exp(served[0] - served[0].max())
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities)
    assert [meta["label_names"][i] for i in order] == [t["label"] for t in expected["top"]]
    np.testing.assert_allclose(probabilities[order], [t["probability"] for t in expected["top"]], rtol=0, atol=1e-5)
    np.testing.assert_allclose(onnx_inputs(path, [SAMPLE]), x, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_cli_exports_a_gap_model_from_a_native_checkpoint(tmp_path, capsys):
    model = tiny(image_size=32, patch_size=8, num_classes=3, classifier="gap", fc_norm=True, **SMALL)
    save_native(model, tmp_path / "gap")
    code, out, err = run_cli(["convert", str(tmp_path / "gap"), str(tmp_path / "gap.onnx"), "--to", "onnx", "--json"],
                          capsys)
    assert code == 0, err
    assert "dynamic batch and image size" in out and "onnxruntime matches vitkit's logits" in out
    details = json.loads(out.strip().splitlines()[-1])["details"]
    assert details["dynamic_size"] and details["max_abs_diff"] <= 1e-4
    session = onnxruntime_session(tmp_path / "gap.onnx")
    assert _compare(load_model(tmp_path / "gap"), session, [(1, 32, 32), (3, 32, 32), (2, 16, 48)]) <= 1e-4


@pytest.mark.slow
def test_hybrid_matches_in_onnxruntime(tmp_path):
    model = tiny("R50+ViT-B/16", image_size=32, patch_size=1, resnet_layers=(1, 1), num_classes=4, **SMALL)
    assert model.stride == 8
    report = export_onnx(model, tmp_path / "hybrid.onnx")
    assert report.dynamic_size
    session = onnxruntime_session(tmp_path / "hybrid.onnx")
    assert _compare(model, session, [(1, 32, 32), (3, 32, 32), (2, 48, 40)]) <= 1e-4


@pytest.mark.slow
def test_static_size_on_request_and_as_fallback(tmp_path, monkeypatch):
    model = tiny(image_size=32, patch_size=16, num_classes=2, **SMALL)
    fixed = export_onnx(model, tmp_path / "fixed.onnx", dynamic_size=False)
    assert not fixed.dynamic_size and fixed.input_shape[1:] == [3, 32, 32] and fixed.fixed_size_reason is None
    session = onnxruntime_session(tmp_path / "fixed.onnx")
    assert _compare(model, session, [(1, 32, 32), (3, 32, 32)]) <= 1e-4
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"pixel_values": np.zeros((1, 3, 48, 48), np.float32)})
    assert read_metadata(tmp_path / "fixed.onnx")["input"]["height"] == "fixed: 32x32"

    real = onnx_export._program

    def no_symbolic_size(model, dynamic, output, opset):
        if dynamic:
            raise RuntimeError("Constraints violated (rows)!\nmore detail")
        return real(model, dynamic, output, opset)

    monkeypatch.setattr(onnx_export, "_program", no_symbolic_size)
    fallback = export_onnx(model, tmp_path / "fallback.onnx")
    assert not fallback.dynamic_size and "Constraints violated (rows)!" in fallback.fixed_size_reason
    assert fallback.input_shape[1:] == [3, 32, 32]


@pytest.mark.slow
def test_a_failed_check_writes_nothing(tmp_path, monkeypatch):
    model = tiny(image_size=32, patch_size=16, num_classes=2, **SMALL)
    monkeypatch.setattr(onnx_export, "verify_onnx", lambda *a, **k: [
        {"batch": 1, "height": 32, "width": 32, "max_abs_diff": 0.5, "scale": 1.0}])
    with pytest.raises(VitkitError, match="differ from vitkit's by 0.5 .*nothing was written"):
        export_onnx(model, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the families on ViT's encoder
@pytest.mark.parametrize("name, overrides, other_size", [
    # the distilled model's graph returns the mean of its two heads, as its forward does
    ("DeiT-Ti/16-distilled", dict(image_size=32, patch_size=8), (48, 32)),
    pytest.param("DeiT-Ti/16", dict(image_size=32, patch_size=8), (24, 40), marks=pytest.mark.slow),
    # registers (no offset): the interpolated position embeddings stay a formula of the runtime grid
    ("DINOv2-S/14-reg", dict(image_size=28, patch_size=7, num_registers=2), (42, 35)),
])
def test_deit_and_dinov2_match_in_onnxruntime_at_another_size(tmp_path, name, overrides, other_size):
    model = tiny(name, num_classes=5, **SMALL, **overrides)
    report = export_onnx(model, tmp_path / "family.onnx")
    assert report.dynamic_size and report.fixed_size_reason is None and report.max_abs_diff <= 1e-4
    size = tuple(model.config.image_size)
    session = onnxruntime_session(tmp_path / "family.onnx")
    assert _compare(model, session, [(1, *size), (3, *size), (2, *other_size)]) <= 1e-4


def test_dinov2_with_the_interpolation_offset_exports_at_its_own_size_and_says_why(tmp_path):
    """The releases without registers resize E_pos by (n + 0.1) / M: a graph traced with a symbolic size
    keeps the traced factor (wrong at every other size, and resampling at its own where DINOv2 does not),
    so the export is fixed at the model's resolution and the report names the reason."""
    model = tiny("DINOv2-S/14", num_classes=5, image_size=28, patch_size=7, **SMALL)
    report = export_onnx(model, tmp_path / "dinov2.onnx")
    assert not report.dynamic_size and "interpolate_offset" in report.fixed_size_reason
    assert report.input_shape[1:] == [3, 28, 28] and report.max_abs_diff <= 1e-4
    assert _compare(model, onnxruntime_session(tmp_path / "dinov2.onnx"), [(1, 28, 28), (3, 28, 28)]) <= 1e-4
    assert read_metadata(tmp_path / "dinov2.onnx")["input"]["height"] == "fixed: 28x28"


def test_a_graph_onnxruntime_cannot_run_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    """What the offset above did before it was declared: onnxruntime raising at the second size."""
    model = tiny(image_size=32, patch_size=16, num_classes=2, **SMALL)

    def broken_run(session, images):
        if images.shape[-1] != 32:
            raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Attempting to broadcast an axis\nmore")
        return [logits(model, images).numpy()]

    monkeypatch.setattr(onnx_export, "run_onnx_outputs", broken_run)
    with pytest.raises(VitkitError, match=r"cannot run the export on a 2x48x64 input \(\[ONNXRuntimeError\] : 1 : "
                                          r"FAIL : Attempting to broadcast an axis\); nothing was written$"):
        export_onnx(model, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_bad_exports_fail_before_any_work(tmp_path, monkeypatch):
    model = create_model("ViT-Ti/16", image_size=32, patch_size=16, num_classes=2, **SMALL)
    with pytest.raises(VitkitError, match="needs a .onnx name"):
        export_onnx(model, tmp_path / "m.npz")
    broken = randomised(create_model("ViT-Ti/16", image_size=32, patch_size=16, num_classes=2, **SMALL))
    with torch.no_grad():
        broken.head.weight[0, 0] = float("nan")
    with pytest.raises(VitkitError, match=r"non-finite weights \(head.weight\)"):
        export_onnx(broken, tmp_path / "m.onnx")
    real = onnx_export.importlib.util.find_spec
    monkeypatch.setattr(onnx_export.importlib.util, "find_spec", lambda name: None if name == "onnxscript"
                        else real(name))
    with pytest.raises(VitkitError, match=r"^ONNX export needs onnxscript: pip install 'vitkit\[onnx\]'$"):
        export_onnx(model, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    mine = tmp_path / "mine.onnx"  # the library's export keeps the one overwrite rule, called directly too
    mine.write_bytes(b"a user's file")
    with pytest.raises(VitkitError, match="already exists"):
        export_onnx(model, mine)
    assert mine.read_bytes() == b"a user's file"


def test_cli_onnx_flags_only_with_onnx(tmp_path, capsys):
    save_native(create_model("ViT-Ti/16", image_size=32, patch_size=16, num_classes=2, **SMALL), tmp_path / "n")
    code, _, err = run_cli(["convert", str(tmp_path / "n"), str(tmp_path / "x.npz"), "--to", "jax", "--static-size"],
                        capsys)
    assert code == 2 and "apply to --to onnx only" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------ backbones
@pytest.mark.parametrize("name, overrides, size", [
    ("ViT-Ti/16", dict(SMALL, depth=3, image_size=32), (48, 80)),  # a dynamic graph, read at another size
    # a hybrid's pyramid: two maps of its ResNet stem before the last block's
    ("R50+ViT-B/16", dict(SMALL, depth=1, resnet_layers=(1, 1), image_size=32, stem_indices=[1, 2]), (32, 48)),
    pytest.param("Swin-T", dict(image_size=64, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                window_size=2), (64, 64), marks=pytest.mark.slow),
    pytest.param("BiT-R26x1", dict(base_width=16, num_groups=4, image_size=32), (48, 80), marks=pytest.mark.slow),
    # the patch maps without DeiT's two or DINOv2's 1 + 2 prefix tokens, read at another size
    pytest.param("DeiT-Ti/16-distilled", dict(SMALL, depth=2, image_size=32, patch_size=8), (48, 40),
                 marks=pytest.mark.slow),
    ("DINOv2-S/14-reg", dict(SMALL, depth=2, image_size=28, patch_size=7, num_registers=2), (35, 49)),
])
def test_backbone_exports_its_maps_as_named_outputs(tmp_path, name, overrides, size):
    backbone = create_model(name, features_only=True, **overrides).eval()
    randomised(backbone.model)
    path = tmp_path / "backbone.onnx"
    export_onnx(backbone, path)
    session = onnxruntime_session(path)
    names = [f"stem_{i}" for i in overrides.get("stem_indices", ())] + [f"feature_{i}" for i in backbone.out_indices]
    assert [o.name for o in session.get_outputs()] == names
    described = read_metadata(path)["output"]["feature_info"]
    assert [(d["name"], d["num_chs"], d["reduction"]) for d in described] == list(zip(
        names, backbone.feature_info.channels(), backbone.feature_info.reduction(), strict=True))
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = backbone(x)
    got = onnx_export.run_onnx_outputs(session, x)
    for mine, theirs in zip(expected, got, strict=True):
        np.testing.assert_allclose(theirs, mine.numpy(), rtol=0, atol=1e-4 * max(1.0, float(mine.abs().max())))
