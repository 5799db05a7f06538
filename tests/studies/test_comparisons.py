"""The README's comparisons drawn from the accuracy ledger (vitkit.studies.comparisons): the verdict's
rule, the block written from the ledger, and the README holding what the ledger gives today."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from vitkit.errors import VitkitError
from vitkit.studies.comparisons import COMPARISONS, block_pattern, render, rewrite, verdict
from vitkit.studies.ledger import ENTRIES, read_ledger

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("accuracy_ledger_cmp", ROOT / "benchmarks" / "accuracy_ledger.py")
accuracy_ledger = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accuracy_ledger)


def _record(values: list[float], command: str = "vitkit train --out run") -> dict:
    return {"values": values, "mean": sum(values) / len(values), "seeds": list(range(len(values))),
            "seconds": 600.0, "command": command, "machine": {"cpu_model": "X", "cpus": 2, "torch_threads": 1,
                                                                "torch": "2.13.0+cpu"}}


def test_every_comparison_names_two_ledger_entries():
    for comparison in COMPARISONS.values():
        assert comparison.baseline in ENTRIES and comparison.treatment in ENTRIES


@pytest.mark.parametrize("treatment, word", [([84.0, 85.0, 83.5], "helped"), ([76.0, 77.0, 75.5], "hurt"),
                                             ([79.0, 82.0, 80.5], "cannot tell")])
def test_the_verdict_is_the_welch_interval_of_the_difference(treatment, word):
    """Helped: the 95% interval wholly above zero; hurt: wholly below; otherwise the seeds cannot tell
    (80.2 ± 0.8 against 80.5 ± 1.5 over three seeds is inside the noise)."""
    got, interval = verdict(_record([80.0, 81.0, 79.5]), _record(treatment))
    assert got == word, interval
    assert "95% interval [" in interval


def test_a_single_seed_has_no_interval():
    assert verdict(_record([80.0]), _record([90.0]))[0] == "cannot tell"


def test_the_block_is_written_from_the_ledger_and_a_missing_entry_is_one_line(tmp_path):
    comparison = COMPARISONS["distillation"]
    entries = {comparison.baseline: _record([80.0, 81.0, 79.5]),
               comparison.treatment: _record([84.0, 85.0, 83.5], "vitkit train t && vitkit train s")}
    block = render(comparison, entries)
    assert "| 80.2 ± 0.8 | 80.0, 81.0, 79.5 |" in block and "| 84.2 ± 0.8 | 84.0, 85.0, 83.5 |" in block
    assert "distillation **helped** here" in block and "vitkit train t && \\\n  vitkit train s" in block
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- ledger-comparison distillation -->\nold\n"
                      "<!-- /ledger-comparison distillation -->\nend\n")
    ledger = tmp_path / "ledger.json"
    ledger.write_text(json.dumps({"entries": entries}))
    assert accuracy_ledger.main(["--readme", str(readme), "--ledger", str(ledger)]) == 0
    assert readme.read_text() == f"# x\n\n{block}\nend\n"
    with pytest.raises(VitkitError, match="no record of deit-distill-letters"):
        render(comparison, {comparison.baseline: entries[comparison.baseline]})
    readme.write_text("no block\n")
    assert accuracy_ledger.main(["--readme", str(readme), "--ledger", str(ledger)]) == 2


def test_the_readme_holds_what_the_ledger_gives():
    """A rewritten ledger entry leaves no stale number in the README: each comparison block there is
    the one the recorded entries render."""
    readme = (ROOT / "README.md").read_text()
    entries = read_ledger(ROOT / "benchmarks" / "ledger.json")["entries"]
    for name in COMPARISONS:
        assert block_pattern(name).search(readme), f"README.md has no {name} comparison block"
    assert rewrite(readme, entries) == readme, "README.md's comparison blocks are stale: run " \
                                               "python benchmarks/accuracy_ledger.py --readme README.md"
