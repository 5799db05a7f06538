"""``vitkit bench``: the report's layout, the peer's weights, the measuring helpers. No timing is asserted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vitkit
import vitkit.deploy.bench.runners
from vitkit.cli.main import main
from vitkit.deploy.bench import REPORT_SCHEMA, check_report, matmul_peak, register_runner, transformers_peer
from vitkit.deploy.bench.peer import peer_forward
from vitkit.deploy.bench.runners import registered_runners
from vitkit.deploy.bench.timing import Clock, interleaved, peak_memory_mib, percentile

TINY = ["ViT-Ti/16", "--image-size", "16", "--patch-size", "4", "--depth", "1", "--hidden-size", "32",
        "--num-heads", "2", "--mlp-dim", "64", "--num-classes", "10", "--batch-size", "4", "--repeats", "1",
        "--warmup", "1", "--latency-repeats", "2"]


def run_json(argv: list[str], capsys, printed: list[str] | None = None) -> dict:
    main(["bench", *argv, "--json"])
    lines = capsys.readouterr().out.splitlines()
    if printed is not None:
        printed += lines[:-1]
    return json.loads(lines[-1])


def test_bench_json_has_every_field_with_consistent_numbers(capsys):
    printed: list[str] = []
    report = run_json([*TINY, "--mode", "all", "--compare", "transformers", "--rows", "int8,merge2,int8+merge2",
                       "--markdown"], capsys, printed)
    table = [line for line in printed if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table] == ["| inference", "| fp32", "| int8", "| merge2", "| int8+merge2",
                                                         "| transformers", "| training step", "| vitkit",
                                                         "| transformers"]
    check_report(report)
    assert report["schema"] == "vitkit.bench/1"
    assert set(report) == set(REPORT_SCHEMA)
    assert [r["name"] for r in report["inference"]] == ["fp32", "int8", "merge2", "int8+merge2", "transformers"]
    assert [r["name"] for r in report["training"]] == ["vitkit", "transformers"]
    rows = {r["name"]: r for r in report["inference"]}
    assert rows["fp32"]["vs_fp32"] == 1.0 and rows["transformers"]["vs_transformers"] == 1.0
    assert rows["merge2"]["gflops_per_image"] < rows["fp32"]["gflops_per_image"] == rows["int8"]["gflops_per_image"]
    for row in report["inference"]:
        assert row["images_per_second"] == pytest.approx(4 / row["seconds_per_batch"]["median"])
        assert row["achieved_gflops"] == pytest.approx(row["images_per_second"] * row["gflops_per_image"])
        assert row["latency_ms"]["p95"] >= row["latency_ms"]["p50"] > 0
        assert row["vs_transformers"] == pytest.approx(row["images_per_second"] /
                                                       rows["transformers"]["images_per_second"])
    training = report["training"][0]
    assert training["gflops_per_image"] == pytest.approx(3 * report["gflops_per_image"])
    assert report["peak"]["gflops"] > 0 and report["machine"]["threads"] >= 1
    assert report["settings"]["image_size"] == [16, 16]


def test_check_report_names_what_is_wrong():
    with pytest.raises(ValueError, match="missing 'peak'"):
        check_report({k: v for k, v in _minimal_report().items() if k != "peak"})
    bad = _minimal_report()
    bad["inference"] = [{"name": 3}]
    with pytest.raises(ValueError, match=r"inference\[0\]"):
        check_report(bad)
    check_report(_minimal_report())


def _minimal_report() -> dict:
    return {"schema": "vitkit.bench/1", "model": "m", "params_m": 1.0, "gflops_per_image": 1.0,
            "machine": {"device": "cpu", "device_name": "x", "threads": 1, "torch": "2", "transformers": None,
                        "python": "3"},
            "settings": {"mode": "inference", "batch_size": 1, "image_size": [16, 16], "precision": "fp32",
                         "repeats": 1, "warmup": 0, "latency_repeats": 0},
            "peak": {"gflops": 1.0, "matmul_size": 8, "dtype": "float32"}, "inference": [], "training": []}


def test_the_transformers_peer_computes_what_vitkit_computes():
    model = vitkit.create_model("ViT-Ti/16", num_classes=7, image_size=32, patch_size=8, depth=2, hidden_size=48,
                                num_heads=3, mlp_dim=96, seed=0).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight)
        x = torch.randn(2, 3, 32, 32)
        peer = transformers_peer(model).eval()
        assert type(peer).__module__.startswith("transformers.")
        torch.testing.assert_close(peer_forward(peer)(x), model(x), atol=1e-5, rtol=1e-5)


def test_a_registered_runner_becomes_a_row(capsys, monkeypatch):
    calls = []

    def doubling_runner(model, example):
        def run(x):
            calls.append(x.shape[0])
            return model(x)

        return run

    monkeypatch.setattr("vitkit.deploy.bench.runners._RUNNERS", dict(vitkit.deploy.bench.runners._RUNNERS))
    register_runner("test-runner", doubling_runner)
    assert "test-runner" in registered_runners()
    report = run_json([*TINY, "--rows", "test-runner", "--no-memory"], capsys)
    assert [r["name"] for r in report["inference"]] == ["fp32", "test-runner"]
    assert 4 in calls and 1 in calls  # the batch and the batch-1 latency calls


def test_interleaved_rounds_alternate_the_contenders():
    order = []
    times = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, Clock("cpu"),
                        repeats=3, warmup=1)
    assert order == ["a", "b"] + ["a", "b"] * 3
    assert [len(v) for v in times.values()] == [3, 3]


def test_percentile_matches_numpy():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    for q in (0, 50, 95, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_peak_memory_sees_a_64_mib_allocation():
    measured = peak_memory_mib(lambda: torch.ones(16 * 2**20), "cpu")  # 64 MiB of float32
    if measured is None:
        pytest.skip("no /proc/self/clear_refs here")
    assert 56 <= measured <= 96


def test_matmul_peak_is_a_positive_rate():
    assert matmul_peak("cpu", size=128, repeats=2) > 0


@pytest.mark.parametrize("extra,message", [
    (["--rows", "int4"], "unknown bench row"),
    (["--precision", "fp16", "--device", "cpu"], "fp16 runs on a GPU only"),
    (["--mode", "train", "--compare", "onnx"], "training compares with transformers only"),
    (["--mode", "train", "--rows", "compile"], "--mode train takes --compile"),
    (["--mode", "train", "--int8"], "--rows, --int8 and --merge are inference rows"),
    (["--batch-size", "0"], "--batch-size: got '0'; allowed: an integer >= 1"),
    (["--int8", "--precision", "bf16"], "int8 layers take fp32 activations"),
])
def test_bad_bench_options_are_one_line_errors(extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *TINY, *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_architecture_options_do_not_apply_to_a_checkpoint(tmp_path, capsys):
    model = vitkit.create_model("ViT-Ti/16", num_classes=2, image_size=16, patch_size=4, depth=1, hidden_size=32,
                                num_heads=2, mlp_dim=64)
    vitkit.save_native(model, tmp_path / "m")
    with pytest.raises(SystemExit):
        main(["bench", str(tmp_path / "m"), "--depth", "2"])
    assert "apply to a variant name" in capsys.readouterr().err


@pytest.mark.slow
def test_the_onnxruntime_row_runs_the_exported_model(capsys):
    report = run_json([*TINY, "--rows", "onnxruntime", "--no-memory", "--latency-repeats", "0"], capsys)
    assert [r["name"] for r in report["inference"]] == ["fp32", "onnxruntime"]
    assert report["inference"][1]["gflops_per_image"] == report["gflops_per_image"]
