"""benchmarks/check_readme_numbers.py: the README's demo tables are parsed, compared with a run within
run-to-run noise, and rewritten from a run; the real check (a full demo) is marked slow."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_readme_numbers", ROOT / "benchmarks" / "check_readme_numbers.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


def demo_json(finetune=0.9805, ema=0.9833, scratch=0.9777, pretrain=0.959, few=(0.623, 0.055)) -> dict:
    """The shape of `vitkit demo --json` output (numbers chosen by the test)."""
    rows = [("pre-trained on MNIST-5k, fine-tuned (16->24 px)", finetune, 359),
            ("  the same, weight average (EMA)", ema, 359),
            ("trained from scratch on the digits (24 px)", scratch, 359),
            ("(pre-training: MNIST-5k test set, 16 px)", pretrain, 1000)]
    cell = {"mean": few[0], "std": few[1]}
    return {"results": [{"name": n, "top1": v, "images": k, "run": "runs/x"} for n, v, k in rows],
            "fewshot": {"MNIST-5k pre-trained": [{"shots": 1, **cell}, {"shots": 5, "mean": 0.814, "std": 0.021}],
                        "random initialisation": [{"shots": 1, "mean": 0.221, "std": 0.044},
                                                  {"shots": 5, "mean": 0.512, "std": 0.023}]},
            "seconds": {"total": 121.0}, "settings": {"seed": 0, "draws": 5},
            "machine": {"platform": "Linux-test", "cpus": 2, "torch_threads": 2, "torch": "2.13.0", "gpu": None}}


README = """# project

text before

<!-- demo-results: written by benchmarks/check_readme_numbers.py --write -->
old text
<!-- /demo-results -->

text after
"""


def test_a_rewritten_block_parses_back_to_the_runs_numbers():
    text = check.rewrite(README, demo_json(), "vitkit demo --seed 0")
    assert text.startswith("# project\n\ntext before") and text.endswith("<!-- /demo-results -->\n\ntext after\n")
    assert "old text" not in text and "`vitkit demo --seed 0`" in text and "Linux-test, 2 CPUs" in text
    parsed = check.parse_readme(text)
    assert parsed["top1"]["pre-trained on MNIST-5k, fine-tuned (16→24 px)"] == pytest.approx(0.9805)
    assert parsed["top1"]["the same, weight average (EMA)"] == pytest.approx(0.9833)
    assert parsed["fewshot"]["MNIST-5k pre-trained"][1] == pytest.approx((0.623, 0.055))
    assert parsed["fewshot"]["random initialisation"][5] == pytest.approx((0.512, 0.023))
    assert check.compare(parsed, check.parse_run(demo_json())) == []


def test_disagreements_beyond_run_to_run_noise_are_named():
    readme = check.parse_readme(check.rewrite(README, demo_json(), "vitkit demo --seed 0"))
    # two binomial standard errors plus one image on 359: about 1.75 points at 98%
    allowed = 2 * math.sqrt(0.9805 * 0.0195 / 359) + 1 / 359
    assert check.compare(readme, check.parse_run(demo_json(finetune=0.9805 - 0.9 * allowed))) == []
    problems = check.compare(readme, check.parse_run(demo_json(finetune=0.9805 - 1.1 * allowed)))
    assert len(problems) == 1 and "fine-tuned" in problems[0] and "README 98.05%" in problems[0]
    # few-shot: two standard errors of the difference of two 5-draw means (plus rounding)
    few_allowed = 2 * math.sqrt(2 * 0.055 ** 2 / 5) + 0.0005
    assert check.compare(readme, check.parse_run(demo_json(few=(0.623 + 0.9 * few_allowed, 0.055)))) == []
    problems = check.compare(readme, check.parse_run(demo_json(few=(0.623 + 1.1 * few_allowed, 0.055))))
    assert len(problems) == 1 and "1-shot" in problems[0]


def test_the_command_line_checks_a_saved_run(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(check.rewrite(README, demo_json(), "vitkit demo --seed 0"))
    saved = tmp_path / "demo.json"
    saved.write_text("progress lines\n" + json.dumps(demo_json(scratch=0.90)) + "\n")
    assert check.main(["--readme", str(readme), "--from-json", str(saved)]) == 1
    assert "trained from scratch" in capsys.readouterr().out
    saved.write_text(json.dumps(demo_json()) + "\n")
    assert check.main(["--readme", str(readme), "--from-json", str(saved)]) == 0
    (tmp_path / "plain.md").write_text("# no block\n")
    assert check.main(["--readme", str(tmp_path / "plain.md"), "--from-json", str(saved)]) == 2


def test_a_saved_run_that_is_not_demo_output_is_one_line_and_exit_2(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(check.rewrite(README, demo_json(), "vitkit demo --seed 0"))
    for name, text in [("empty.json", ""), ("other.json", '{"accuracy": 0.9}\n'), ("list.json", "[1, 2]\n"),
                       ("broken.json", "{not json\n")]:
        (tmp_path / name).write_text(text)
        assert check.main(["--readme", str(readme), "--from-json", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("check_readme_numbers: "), err


def test_the_readme_has_the_demo_block():
    """The block is there; it holds either the run's tables or, until `--write` has been run for this
    version of the code, the placeholder that says so (the slow test below then fails)."""
    text = (ROOT / "README.md").read_text()
    start, end = check._block(text)
    if check.PLACEHOLDER in text[start:end]:
        with pytest.raises(ValueError, match="not generated yet"):
            check.parse_readme(text)
        return
    parsed = check.parse_readme(text)
    assert len(parsed["top1"]) == 4 and set(parsed["fewshot"]) == {"MNIST-5k pre-trained", "random initialisation"}


@pytest.mark.slow
def test_the_readme_agrees_with_a_fresh_demo_run():
    """The whole demo (a few CPU minutes): the integrator's regeneration check."""
    readme = check.parse_readme((ROOT / "README.md").read_text())
    assert check.compare(readme, check.parse_run(check.run_demo(seed=0))) == []


def test_on_the_blocks_machine_kind_every_number_must_match_exactly(tmp_path, capsys):
    """A deterministic demo on the machine kind the block was written on gives its numbers to the digit:
    a difference inside run-to-run noise (one image) fails there, and passes on another kind."""
    readme = tmp_path / "README.md"
    readme.write_text(check.rewrite(README, demo_json(), "vitkit demo --seed 0"))
    parsed = check.parse_readme(readme.read_text())
    assert parsed["kind"] == {"cpu_model": None, "cpus": 2, "torch_threads": 2, "torch": "2.13.0", "gpu": None}
    one_image_off = demo_json(scratch=0.9777 - 1 / 359)
    saved = tmp_path / "demo.json"
    saved.write_text(json.dumps(one_image_off) + "\n")
    assert check.main(["--readme", str(readme), "--from-json", str(saved)]) == 1
    out = capsys.readouterr().out
    assert "checked exactly" in out and "trained from scratch" in out
    other = dict(one_image_off, machine={**one_image_off["machine"], "torch_threads": 4})
    saved.write_text(json.dumps(other) + "\n")
    assert check.main(["--readme", str(readme), "--from-json", str(saved)]) == 0
    assert "torch_threads 2 vs 4" in capsys.readouterr().out
    # a few-shot spread that differs is a difference on the same kind too
    assert check.compare(parsed, check.parse_run(demo_json(few=(0.623, 0.056))), exact=True)
    assert check.compare(parsed, check.parse_run(demo_json()), exact=True) == []
