"""``vitkit --help`` and ``vitkit models``, through the real console entry point."""

from __future__ import annotations

import json
import subprocess
import sys


def vitkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitkit", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands():
    result = vitkit("--help")
    assert result.returncode == 0 and "models" in result.stdout


def test_models_prints_the_variant_table_as_text_and_json():
    result = vitkit("models", "ViT-B", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("ViT-B/16") and "86.6M" in line and " 197" in line for line in lines)
    data = json.loads(lines[-1])
    row = {r["name"]: r for r in data["models"]}["ViT-B/16"]
    assert row["seq_len"] == 197 and abs(row["params"] - 86.6e6) < 0.1e6 and abs(row["gflops"] - 35.1) < 0.1


def test_unknown_model_name_is_one_line_with_suggestions_and_exit_2():
    result = vitkit("models", "ViT-Q/16")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown model 'ViT-Q/16'" in result.stderr and "closest:" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_are_one_line_and_exit_2():
    result = vitkit("models", "--image-size", "big")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0


def test_a_variant_that_cannot_take_the_size_marks_its_row_and_the_others_are_listed():
    result = vitkit("models", "ViT-B", "--image-size", "384", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout.strip().splitlines()[-1])["models"]}
    assert rows["ViT-B/14"] == {"name": "ViT-B/14", "family": "vit",
                                "error": "image size 384x384 is not divisible by the patch size 14"}
    assert rows["ViT-B/16"]["seq_len"] == 1 + (384 // 16) ** 2  # 577: the §3.2 fine-tuning resolution
    assert any(line.startswith("ViT-B/14") and "not divisible by the patch size 14" in line
               for line in result.stdout.splitlines())
    only_bad = vitkit("models", "ViT-B/14", "--image-size", "384")
    assert only_bad.returncode == 2 and "no listed variant can take 384x384 images" in only_bad.stderr
