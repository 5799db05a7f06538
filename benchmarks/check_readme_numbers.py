"""Check (or rewrite) the demo results in the README against a fresh ``vitkit demo --json`` run.

    python benchmarks/check_readme_numbers.py                  # run the demo (a few CPU minutes), compare
    python benchmarks/check_readme_numbers.py --from-json r.json   # compare with a saved `vitkit demo --json` line
    python benchmarks/check_readme_numbers.py --write           # run it and rewrite the README's block

The README's demo tables live between ``<!-- demo-results ... -->`` and ``<!-- /demo-results -->``
and are written by ``--write`` from the JSON the demo prints, together with the command and the
machine, so every number there comes from that command.

What counts as agreement (run-to-run noise: another machine, thread count or torch build changes
the floating-point sums, hence the trained weights, hence which test images fall on which side):

* top-1 rows: |README - fresh| <= 2 sqrt(p (1 - p) / n) + 1 / n, with p the README's accuracy and
  n the test images of that row: two binomial standard errors plus one image;
* few-shot cells (mean +- std over ``draws`` draws): |difference of the means| <=
  2 sqrt((std_README^2 + std_fresh^2) / draws) + 0.05 points (the README's rounding).

Which rule applies depends on the machine: a demo run is deterministic, so on the machine kind the
block was written on (:func:`machine_kind`: the same CPU model, CPU count, torch threads, torch build and
GPU, recorded in the block) every number must match the README to its last printed digit; the tolerances
above apply only on another kind. The check says which case it is in.

Timings are not checked: the README gives none for the demo (the demo prints its own), and the speed
figures in ``docs/`` say which command measured them on which machine. The demo block is the only
generated block: the other measured tables in ``docs/`` stand beside the command that produced them.
Exit status 0 when everything agrees, 1 when a number disagrees (each one printed), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = re.compile(r"<!-- demo-results\b[^>]*-->\n")
END = "<!-- /demo-results -->"
PERCENT = re.compile(r"^\s*([0-9.]+)%\s*$")
MEAN_STD = re.compile(r"^\s*([0-9.]+)\s*±\s*([0-9.]+)%\s*$")
SHOT = re.compile(r"^\s*(\d+)-shot\s*$")
KIND = re.compile(r"^<!-- machine-kind: (\{.*\}) -->$", re.M)
#: The fields of the demo's ``machine`` record that decide its floating-point sums (not the kernel version).
KIND_FIELDS = ("cpu_model", "cpus", "torch_threads", "torch", "gpu")
#: What the block says before ``--write`` has been run for the current code.
PLACEHOLDER = "(not yet generated for this version: run `python benchmarks/check_readme_numbers.py --write`)"


def _label(name: str) -> str:
    """Row names as the README shows them: no indentation, an arrow for "->"."""
    return name.strip().replace("->", "→")


def _block(text: str) -> tuple[int, int]:
    """(start, end) of the text between the markers; ValueError when they are missing."""
    begin = BEGIN.search(text)
    end = text.find(END, begin.end() if begin else 0)
    if begin is None or end < 0:
        raise ValueError("the README has no <!-- demo-results --> ... <!-- /demo-results --> block")
    return begin.end(), end


def machine_kind(machine: dict) -> dict:
    """The part of a demo's ``machine`` record on which a deterministic run's numbers depend."""
    return {k: machine.get(k) for k in KIND_FIELDS}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_readme(text: str) -> dict:
    """{"top1": {row: fraction}, "fewshot": {row: {shots: (mean, std)}}, "kind": machine kind or None}
    from the README's block."""
    start, end = _block(text)
    top1: dict[str, float] = {}
    fewshot: dict[str, dict[int, tuple[float, float]]] = {}
    shots: list[int] = []
    for line in text[start:end].splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = _cells(line)
        found = [SHOT.match(c) for c in cells[1:]]
        if found and all(found):
            shots = [int(m.group(1)) for m in found]
            continue
        if len(cells) == 2 and PERCENT.match(cells[1]):
            top1[cells[0]] = float(PERCENT.match(cells[1]).group(1)) / 100
        elif len(cells) == len(shots) + 1 and shots and all(MEAN_STD.match(c) for c in cells[1:]):
            fewshot[cells[0]] = {k: (float(m.group(1)) / 100, float(m.group(2)) / 100)
                                 for k, m in zip(shots, (MEAN_STD.match(c) for c in cells[1:]), strict=True)}
    if not top1:
        if PLACEHOLDER in text[start:end]:
            raise ValueError("the README's demo results are not generated yet: run "
                             "`python benchmarks/check_readme_numbers.py --write`")
        raise ValueError("the README's demo-results block has no top-1 rows")
    kind = KIND.search(text[start:end])
    return {"top1": top1, "fewshot": fewshot, "kind": json.loads(kind.group(1)) if kind else None}


def parse_run(result: dict) -> dict:
    """The same structure from ``vitkit demo --json`` output, plus the test-set sizes and draws."""
    return {"top1": {_label(r["name"]): r["top1"] for r in result["results"]},
            "images": {_label(r["name"]): r["images"] for r in result["results"]},
            "fewshot": {name: {r["shots"]: (r["mean"], r["std"]) for r in rows}
                        for name, rows in result["fewshot"].items()},
            "draws": int(result.get("settings", {}).get("draws", 1)),
            "kind": machine_kind(result.get("machine", {}))}


def same_kind(readme: dict, fresh: dict) -> tuple[bool, str]:
    """(whether the fresh run ran on the README block's machine kind, a sentence saying so)."""
    if readme.get("kind") is None:
        return False, "the README's block records no machine kind: checked within run-to-run noise"
    differ = [f"{k} {readme['kind'].get(k)!r} vs {fresh['kind'].get(k)!r}" for k in KIND_FIELDS
              if readme["kind"].get(k) != fresh["kind"].get(k)]
    if differ:
        return False, f"another machine kind than the README's ({'; '.join(differ)}): checked within run-to-run noise"
    return True, "the machine kind the README's block was written on: every number checked exactly"


def compare(readme: dict, fresh: dict, exact: bool = False) -> list[str]:
    """One line per README number outside run-to-run noise of the fresh run (see the module notes);
    ``exact``: per number that differs from the fresh run's at the README's printed precision."""
    problems = []
    for name, value in readme["top1"].items():
        if name not in fresh["top1"]:
            problems.append(f"top-1 row {name!r}: not in the fresh run")
            continue
        n = fresh["images"][name]
        # exact: the README prints percent to 2 decimals, so half of its last digit
        tolerance = 0.5e-4 if exact else 2 * math.sqrt(value * (1 - value) / n) + 1 / n
        if abs(fresh["top1"][name] - value) > tolerance:
            problems.append(f"top-1 {name!r}: README {100 * value:.2f}%, fresh run {100 * fresh['top1'][name]:.2f}% "
                            f"(allowed +-{100 * tolerance:.2f} points)")
    for name, cells in readme["fewshot"].items():
        for shots, (mean, std) in cells.items():
            if shots not in fresh["fewshot"].get(name, {}):
                problems.append(f"few-shot {name!r} {shots}-shot: not in the fresh run")
                continue
            new_mean, new_std = fresh["fewshot"][name][shots]
            tolerance = 0.5e-3 if exact else 2 * math.sqrt((std ** 2 + new_std ** 2) / fresh["draws"]) + 0.0005
            if exact and abs(new_std - std) > tolerance:
                problems.append(f"few-shot {name!r} {shots}-shot: README spread {100 * std:.1f}%, fresh run "
                                f"{100 * new_std:.1f}% (exact check)")
            if abs(new_mean - mean) > tolerance:
                problems.append(f"few-shot {name!r} {shots}-shot: README {100 * mean:.1f}%, fresh run "
                                f"{100 * new_mean:.1f}% (allowed +-{100 * tolerance:.1f} points)")
    return problems


def render(result: dict, command: str) -> str:
    """The README block's content for a ``vitkit demo --json`` result."""
    m = result.get("machine", {})
    s = result.get("settings", {})
    gpu = m.get("gpu") or "no GPU"
    lines = [f"Measured with `{command}` (what `make demo` runs) on {m.get('platform', '?')}, "
             f"{m.get('cpus', '?')} CPUs ({m.get('torch_threads', '?')} torch threads), torch {m.get('torch', '?')}, "
             f"{gpu}; `python benchmarks/check_readme_numbers.py` repeats the run and checks these numbers "
             "(exactly on this machine kind, within run-to-run noise on others).",
             f"<!-- machine-kind: {json.dumps(machine_kind(m), sort_keys=True)} -->", ""]
    images = result["results"][0]["images"]
    lines += [f"| digits test set ({images} images) | top-1 |", "|---|---|"]
    lines += [f"| {_label(r['name'])} | {100 * r['top1']:.2f}% |" for r in result["results"]]
    first = next(iter(result["fewshot"].values()))
    shots = [r["shots"] for r in first]
    lines += ["", f"| few-shot linear, frozen features (digits; pre-logits, L2 2^10, {s.get('draws', '?')} draws) | "
              + " | ".join(f"{k}-shot" for k in shots) + " |", "|---|" + "---|" * len(shots)]
    for name, rows in result["fewshot"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}%" for r in rows)
                     + " |")
    return "\n".join(lines) + "\n"


def rewrite(text: str, result: dict, command: str) -> str:
    start, end = _block(text)
    return text[:start] + render(result, command) + text[end:]


def run_demo(seed: int) -> dict:
    """``vitkit demo --json`` in a fresh process, its runs in a scratch directory; the JSON line."""
    with tempfile.TemporaryDirectory(prefix="vitkit-readme-check-") as out:
        done = subprocess.run([sys.executable, "-m", "vitkit", "demo", "--seed", str(seed), "--quiet", "--json",
                               "--out", out], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"vitkit demo failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_saved_run(path: Path) -> dict:
    """The last line of a saved ``vitkit demo --json`` output; ValueError when there is none."""
    lines = path.read_text().strip().splitlines()
    if not lines:
        raise ValueError(f"{path} is empty: save the output of `vitkit demo --json` there")
    result = json.loads(lines[-1])
    if not isinstance(result, dict) or not {"results", "fewshot"} <= set(result):
        raise ValueError(f"{path}: the last line is not `vitkit demo --json` output (no results and fewshot)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--from-json", type=Path, help="a saved `vitkit demo --json` last line instead of a run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="rewrite the README's block from the run")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text()
        readme = None if args.write else parse_readme(text)
        result = read_saved_run(args.from_json) if args.from_json else run_demo(args.seed)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"check_readme_numbers: {exc}", file=sys.stderr)
        return 2
    command = f"vitkit demo --seed {result.get('settings', {}).get('seed', args.seed)}"
    if args.write:  # the README as it is now: it may have been edited while the demo ran
        args.readme.write_text(rewrite(args.readme.read_text(), result, command))
        print(f"{args.readme}: demo results rewritten from `{command}`")
        return 0
    fresh = parse_run(result)
    exact, case = same_kind(readme, fresh)
    print(case)
    problems = compare(readme, fresh, exact=exact)
    for line in problems:
        print(line)
    verdict = ("all equal" if exact else "all within run-to-run noise") if not problems else f"{len(problems)} disagree"
    print(f"{len(readme['top1'])} top-1 rows and {sum(map(len, readme['fewshot'].values()))} few-shot cells checked: "
          + verdict)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
