"""Inference fast paths (int8, token merging, compile) and the accuracy guard; eval/predict options."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from trainutil import tiny_checkpoint

import vitkit
from vitkit import VitkitError
from vitkit.cli.main import main
from vitkit.data.sources import open_source
from vitkit.deploy.fastpath import FastPath, apply_fast_path, guard, quantize_int8

SAMPLE = str(files("vitkit") / "assets" / "sample.png")
SMALL = dict(image_size=16, patch_size=4, depth=2, hidden_size=64, num_heads=2, mlp_dim=128)


#: the families on ViT's encoder: DeiT's two heads (averaged), DINOv2's registers and LayerScale (at 1, so that
#: its blocks count as much as ViT's rather than its 1e-5 start)
FAMILY_MODELS = {"ViT-Ti/16": {}, "DeiT-Ti/16-distilled": {}, "DINOv2-S/14-reg": {"layer_scale": 1.0}}


def small_model(name: str = "ViT-Ti/16") -> vitkit.VisionTransformer:
    model = vitkit.create_model(name, num_classes=10, seed=0, **SMALL, **FAMILY_MODELS[name]).eval()
    with torch.no_grad():
        for seed, head in enumerate((model.head, getattr(model, "head_dist", None)), start=1):
            if head is not None:
                torch.nn.init.normal_(head.weight, std=0.5, generator=torch.Generator().manual_seed(seed))
    return model


def test_fast_path_names_parse_back():
    for spec in ["fp32", "int8", "merge8", "compile", "int8+merge8", "int8+merge16+compile"]:
        assert FastPath.parse(spec).name == spec
    assert FastPath.parse("merge8+int8") == FastPath(int8=True, merge=8)
    assert not FastPath.parse("fp32").enabled
    with pytest.raises(VitkitError, match="unknown fast path"):
        FastPath.parse("int4")


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_int8_logits_stay_within_five_percent_of_fp32(name):
    """Stated tolerance: relative L2 error of the logits below 5%, top-1 agreement at least 85%
    (dynamic per-channel int8 on a random model and random inputs, whose logits have small
    margins; fp32 is the reference). The same for DeiT and DINOv2 as for ViT."""
    model = small_model(name)
    x = torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain, fast = model(x), quantize_int8(model)(x)
    assert float((fast - plain).norm() / plain.norm()) < 0.05
    assert float((fast.argmax(1) == plain.argmax(1)).float().mean()) >= 0.85
    assert not any(type(m) is torch.nn.Linear for m in quantize_int8(model).modules())  # every one quantised


def test_fast_path_leaves_the_model_alone_and_keeps_its_metadata():
    model = small_model()
    model.label_names = [str(i) for i in range(10)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = apply_fast_path(model, FastPath(int8=True, merge=2))
    assert fast.label_names == model.label_names and fast.config == model.config
    assert fast.preprocessing == model.preprocessing
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name])


def test_int8_on_a_gpu_model_is_refused():
    model = small_model().to("meta")
    with pytest.raises(VitkitError, match="CPU only"):
        quantize_int8(model)


@pytest.mark.slow
def test_compiled_logits_equal_fp32_within_1e_4():
    model = small_model()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(apply_fast_path(model, FastPath(compile=True))(x), model(x), atol=1e-4, rtol=1e-4)


def test_guard_reports_accuracies_a_reference_agrees_with():
    run = tiny_checkpoint()
    model = vitkit.load_model(run / "model")
    data = open_source("digits", "test")
    checked = guard(model, apply_fast_path(model, FastPath(int8=True)), data, batch_size=64)
    labels = [data[i][1] for i in range(len(data))]
    with torch.no_grad():
        from vitkit.data.transforms import eval_transform

        transform = eval_transform(model.preprocessing)
        images = torch.stack([transform(data[i][0]) for i in range(len(data))])
        plain = model(images).argmax(1).tolist()
    assert checked.images == len(data) == 359
    assert checked.plain.top1 == pytest.approx(accuracy_score(labels, plain))
    assert abs(checked.fast.top1 - checked.plain.top1) <= 0.02  # int8 within 2 points on 359 images
    assert checked.agreement >= 0.95
    assert checked.to_dict()["top1_change"] == pytest.approx(checked.fast.top1 - checked.plain.top1)


def test_guard_without_matching_labels_gives_agreement_only():
    model = vitkit.create_model("ViT-Ti/16", num_classes=3, seed=0, **SMALL)
    checked = guard(model, apply_fast_path(model, FastPath(merge=2)), open_source("digits", "test"))
    assert checked.plain is None and 0.0 <= checked.agreement <= 1.0
    assert checked.to_dict()["top1"] is None and "agreement" in checked.line()


def test_eval_with_int8_and_guard_prints_both_accuracies(capsys, tmp_path):
    run = tiny_checkpoint()
    main(["eval", str(run), "--data", "digits", "--int8", "--merge", "1", "--guard", "--confusion", "none",
          "--json"])
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("guard: top-1") and "vs fp32" in line for line in out)
    result = json.loads(out[-1])
    assert result["fast_path"] == "int8+merge1"
    assert result["guard"]["top1"] == pytest.approx(result["top1"])
    assert 0.9 <= result["guard"]["agreement"] <= 1.0


def test_eval_guard_rows_print_the_trade_off_table_each_row_as_its_own_guard(capsys):
    """Issue 23 item 3: `vitkit eval --guard --rows` prints R against accuracy and speed; every row's numbers
    are the guard's own (the same as `--guard` with that path alone), the fp32 pass is shared."""
    run = tiny_checkpoint()
    main(["eval", str(run), "--data", "digits", "--guard", "--rows", "int8,merge1,fp32,int8+merge2,merge1",
          "--batch-size", "64", "--confusion", "none", "--json"])
    out = capsys.readouterr().out.splitlines()
    result = json.loads(out[-1])
    rows = result["trade_off"]
    assert [r["path"] for r in rows] == ["int8", "merge1", "int8+merge2"]  # fp32 is the reference, repeats once
    assert result["fast_path"] == "fp32" and result["top1"] == pytest.approx(rows[0]["fp32_top1"])
    model = vitkit.load_model(run / "model")
    alone = guard(model, apply_fast_path(model, FastPath.parse("int8+merge2")), open_source("digits", "test"),
                  batch_size=64)
    assert rows[2]["top1"] == pytest.approx(alone.fast.top1) and rows[2]["agreement"] == alone.agreement
    for row in rows:
        assert row["images_per_second"] > 0 and row["fp32_images_per_second"] > 0
        assert row["speedup"] == pytest.approx(row["images_per_second"] / row["fp32_images_per_second"])
    header = out.index(next(line for line in out if line.startswith("trade-off on 359 images")))
    table = [line.split() for line in out[header + 2:header + 6]]
    assert [line[0] for line in table] == ["fp32", "int8", "merge1", "int8+merge2"]
    assert table[3][1] == f"{100 * rows[2]['top1']:.2f}%" and table[3][-1] == f"{rows[2]['speedup']:.2f}x"


def test_predict_with_a_fast_path(capsys):
    run = tiny_checkpoint()
    main(["predict", str(run), SAMPLE, "--merge", "2", "--top-k", "2", "--json"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["fast_path"] == "merge2" and len(result["predictions"][0]["top"]) == 2


@pytest.mark.parametrize("argv,message", [
    (["eval", "RUN", "--data", "digits", "--guard"], "--guard compares a fast path"),
    (["eval", "RUN", "--data", "digits", "--rows", "int8"], "--rows lists the fast paths --guard compares"),
    (["eval", "RUN", "--data", "digits", "--guard", "--rows", "int8,transformers"], "unknown fast path"),
    (["eval", "RUN", "--data", "digits", "--merge", "-1"], "--merge: got '-1'; allowed: an integer >= 0"),
    (["predict", "RUN", "IMG", "--int8", "--attention", "out"], "--attention draws the plain model"),
])
def test_bad_fast_path_options_are_one_line_errors(argv, message, capsys):
    run = str(tiny_checkpoint())
    argv = [run if a == "RUN" else SAMPLE if a == "IMG" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_guard_images_are_spread_evenly_and_stay_the_same():
    from vitkit.deploy.fastpath import guard_images

    data = open_source("digits", "test")
    picked = guard_images(data, 10)
    assert len(picked) == 10 and guard_images(data, None) is data
    want = [data[i][1] for i in np.linspace(0, len(data) - 1, 10).round().astype(int)]
    assert [picked[i][1] for i in range(10)] == want
    with pytest.raises(VitkitError, match="at least one image"):
        guard_images(data, -1)


@pytest.mark.parametrize("name", ["DeiT-Ti/16-distilled", "DINOv2-S/14-reg"])
def test_eval_fast_paths_on_the_families_with_extra_prefix_tokens(name, capsys, tmp_path):
    """Issue 27: `vitkit eval --int8 --merge --guard` runs on a DeiT (distillation token, averaged heads)
    and a DINOv2 with registers from their checkpoints, the guard comparing with the same model in fp32."""
    model = vitkit.create_model(name, num_classes=10, seed=0, **SMALL)
    generator = torch.Generator().manual_seed(0)
    for head in (model.head, getattr(model, "head_dist", None)):  # zero heads would make every path agree
        if head is not None:
            head.weight.data = torch.randn(head.weight.shape, generator=generator)
    run = vitkit.save_model(model, tmp_path / "model", to="native")
    main(["eval", str(run), "--data", "digits", "--int8", "--merge", "2", "--guard", "--confusion", "none", "--json"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["fast_path"] == "int8+merge2"
    assert result["guard"]["top1"] == pytest.approx(result["top1"])
    assert 0.8 <= result["guard"]["agreement"] <= 1.0
