"""The accuracy ledger (issue 28): short, seeded trainings that stand for what users run, each result
recorded with its seed spread in ``benchmarks/ledger.json`` and checked against it.

Every change to vitkit so far was checked against a reference in isolation, and none noticed that
together they cost the default recipe 14 points on a user's letters. The ledger holds the accuracy of
the commands a user runs instead: each :class:`Entry` is one or more ``vitkit train`` / ``vitkit
finetune`` runs, made through the same merge of recipe, preset and options as the command line
(:func:`~vitkit.train.settings.resolve_training_config`), then measured as that command's user would:
the last run's test top-1, or few-shot (§4.1, big_vision's protocol) or a linear probe (MAE's
protocol) on the frozen features. Each entry runs with seeds 0, 1 and 2 (``--seed``) on :data:`THREADS` torch
thread(s); a run repeats bit for bit on one machine kind (torch build, thread count, CPU), which the
ledger records beside the numbers.

The check (:func:`check_entry`): an entry fails when its value falls below the recorded one by more
than the recorded spread (max - min over the seeds), or :data:`FLOOR` points where the seeds agreed
more closely than that -- the quick check compares seed 0 with the recorded seed 0, the full check
the mean with the recorded mean. A value above by more than the same tolerance is reported ("moved
up: rewrite the ledger") but passes. An entry whose command changed since it was recorded fails
too: its recorded number belongs to another command.

    >>> from vitkit.studies.ledger import ENTRIES, run_entry
    >>> values, seconds = run_entry(ENTRIES["digits-default"], seeds=(0,), work="/tmp/ledger")
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitkit.cpuinfo import cpu_name
from vitkit.errors import VitkitError

#: The seeds every entry is recorded with (``--seed``).
SEEDS = (0, 1, 2)
#: The smallest tolerance (points of top-1): seeds that agree to the digit still leave room for the
#: last image or two to fall the other way on another thread count or torch build.
FLOOR = 0.5
#: The data name that stands for the letters ImageFolder (:mod:`vitkit.data.letters`): the ledger draws
#: it into its data folder, and a user's command names their own folder the same way (``--data letters``).
LETTERS = "letters"
#: A run's ``checkpoint`` or ``teacher`` option that names an earlier run of the same entry: ``"@pretrain"``
#: is that run's model (``pretrain/model`` in the command).
EARLIER = "@"
#: The options that may name an earlier run (:data:`EARLIER`): fine-tuning's checkpoint, distillation's teacher.
REFERENCES = ("checkpoint", "teacher")
#: What every entry measures.
METRIC = "test top-1 %"
#: The torch threads the ledger is written with (``--threads`` overrides; a check runs each entry with the
#: threads of its record, since another count changes the sums and so the numbers). One, not the machine's
#: cores: these models are small, and on this project's shared 2-core machine two threads spin against the
#: other processes -- digits-small-data, seed 0, took 14.5 s on one thread and 101.7 s on two (load about
#: 3) -- while one thread also repeats bit for bit on a machine with another number of cores.
THREADS = 1


@dataclass(frozen=True)
class Run:
    """One training command: ``vitkit train`` (``recipe="pretrain"``) or ``vitkit finetune``, with
    ``options`` as :func:`~vitkit.train.settings.resolve_training_config` takes them (TrainConfig fields,
    architecture and objective options by name; ``checkpoint="@name"`` or ``teacher="@name"``: an earlier
    run's model) and the
    named ``preset`` (``--recipe``). ``name`` is its ``--out`` folder."""

    name: str
    recipe: str
    options: Mapping[str, Any]
    preset: str | None = None

    def argv(self, seed: int | None = None) -> list[str]:
        """The command line (``vitkit`` left out) that runs it; ``--seed`` only when ``seed`` is given."""
        options = self.resolved(lambda name: f"{name}/model")
        words = ["train" if self.recipe == "pretrain" else "finetune"]
        checkpoint = str(options.pop("checkpoint", None) or "")
        if checkpoint:  # fine-tuning's CKPT argument
            words.append(checkpoint)
        if self.preset is not None:
            words += ["--recipe", self.preset]
        for name, value in options.items():
            words += _flag_words(name, value)
        if seed is not None:
            words += ["--seed", str(seed)]
        return [*words, "--out", self.name]

    def resolved(self, model_of: Callable[[str], Any]) -> dict[str, Any]:
        """The options with each reference to an earlier run (``"@name"``, :data:`REFERENCES`) replaced by
        ``model_of(name)``: that run's model folder."""
        return {key: model_of(value[len(EARLIER):]) if key in REFERENCES and str(value).startswith(EARLIER)
                else value for key, value in self.options.items()}


@dataclass(frozen=True)
class Probe:
    """A measure of the frozen model of an entry's last run on ``data``: ``"fewshot"`` (``shots`` images
    per class, the mean over ``draws`` draws; :func:`~vitkit.evaluate.fewshot.fewshot_evaluate`) or
    ``"linprobe"`` (``epochs`` passes; :func:`~vitkit.evaluate.linear_probe.linear_probe`)."""

    kind: str
    data: str
    shots: int = 5
    draws: int = 3
    epochs: int = 90

    def argv(self, checkpoint: str, seed: int | None = None) -> list[str]:
        words = [self.kind, f"{checkpoint}/model", "--data", self.data]
        words += ["--shots", str(self.shots), "--draws", str(self.draws)] if self.kind == "fewshot" \
            else ["--epochs", str(self.epochs)]
        return words + (["--seed", str(seed)] if seed is not None else [])


@dataclass(frozen=True)
class Entry:
    """A named line of the ledger: what a user does (``description``), the training ``runs`` it takes
    and, where the measure is not the last run's test top-1, the ``probe`` of its frozen features."""

    name: str
    description: str
    runs: tuple[Run, ...]
    probe: Probe | None = None
    #: options set in every run on top of the command's: a test configuration (:meth:`configured`), checked
    #: against the entry's record because its command, shown and compared, stays the entry's
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.probe is not None and self.probe.kind not in ("fewshot", "linprobe"):
            raise ValueError(f"probe kind must be fewshot or linprobe, got {self.probe.kind!r}")

    def command(self, seed: int | None = None) -> str:
        """The ``vitkit`` command lines it stands for, joined by ``&&``."""
        lines = [run.argv(seed) for run in self.runs]
        if self.probe is not None:
            lines.append(self.probe.argv(self.runs[-1].name, seed))
        return " && ".join(" ".join(["vitkit", *words]) for words in lines)

    def configured(self, **options: Any) -> Entry:
        """A test configuration of this entry: ``options`` set in every run (``lr=1e-9``: a broken default),
        while its name and command, and so the record it is checked against, stay this entry's."""
        return dataclasses.replace(self, overrides={**self.overrides, **options})


def _flag_words(name: str, value: Any) -> list[str]:
    """``--flag value`` as the command line spells option ``name`` (a switch: the flag alone)."""
    from vitkit.options import field_options
    from vitkit.train.recipes import TrainConfig
    from vitkit.train.settings import flag_of

    option = field_options(TrainConfig).get(name)
    flag = flag_of(name)
    if isinstance(value, bool):
        negated = option is not None and flag.startswith("--no-")
        if value == negated:
            raise ValueError(f"{name}={value} is the default of {flag}: leave it out")
        return [flag]
    if isinstance(value, (tuple, list)):
        return [flag, ",".join(_number(v) for v in value)]
    return [flag, _number(value) if isinstance(value, (int, float)) else str(value)]


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------------------- the entries
#: The small ViT of the letters and digits entries: ViT-Ti/16's shape scaled down (the README's example
#: model, at the ledger's budget): D 64, 4 layers, 4 heads, MLP 128.
SMALL_VIT = dict(model="ViT-Ti/16", hidden_size=64, depth=4, num_heads=4, mlp_dim=128)
#: Every run evaluates once, at its end (the number is the same; the per-epoch evaluations cost time).
ONCE = dict(eval_every=1000)
#: A mirror image of a digit or a letter is another symbol.
NO_FLIP = dict(flip=False)


def _entries() -> dict[str, Entry]:
    pretrain_16 = Run("pretrain", "pretrain", dict(data="mnist5k", **SMALL_VIT, patch_size=4, image_size=16,
                                                   epochs=10, lr=2e-3, weight_decay=0.05, crop_scale=(0.4, 1.0),
                                                   **NO_FLIP, **ONCE))
    # issue 27: a DeiT-Ti student on the letters, with the preset alone and with a BiT teacher trained
    # first on the same letters (DeiT §4's hard distillation, its defaults)
    deit_student = dict(data=LETTERS, model="DeiT-Ti/16-distilled", image_size=32, epochs=15, **NO_FLIP, **ONCE)
    bit_teacher = Run("teacher", "pretrain", dict(data=LETTERS, model="BiT-R26x1", image_size=32, epochs=10,
                                                  **NO_FLIP, **ONCE), preset="small-data")
    entries = [
        Entry("letters-default", "the default recipe from scratch on a user's 32-px letters (issue 28's command "
              "with a smaller model, 8-px patches and 20 epochs)",
              (Run("run", "pretrain", dict(data=LETTERS, **SMALL_VIT, patch_size=8, image_size=32, epochs=20,
                                           **ONCE)),)),
        Entry("digits-default", "the default recipe from scratch on the digits at 16 px",
              (Run("run", "pretrain", dict(data="digits", **SMALL_VIT, patch_size=4, image_size=16, epochs=30,
                                           **ONCE)),)),
        Entry("letters-small-data", "--recipe small-data from scratch on the letters (the preset's 8-px patches; "
              "15 of its 50 epochs)",
              (Run("run", "pretrain", dict(data=LETTERS, **SMALL_VIT, image_size=32, epochs=15, **NO_FLIP, **ONCE),
                   preset="small-data"),)),
        Entry("digits-small-data", "--recipe small-data from scratch on the digits at 16 px (4-px patches; 15 of "
              "its 50 epochs)",
              (Run("run", "pretrain", dict(data="digits", **SMALL_VIT, patch_size=4, image_size=16, epochs=15,
                                           **NO_FLIP, **ONCE), preset="small-data"),)),
        Entry("finetune-higher-res", "pre-train on MNIST-5k at 16 px, fine-tune on the digits at 24 px (the "
              "position embeddings interpolated, §3.2; the demo's path, shorter)",
              (pretrain_16, Run("finetune", "finetune", dict(checkpoint=EARLIER + "pretrain", data="digits",
                                                             image_size=24, epochs=8, lr=0.1, crop_scale=(0.85, 1.0),
                                                             **NO_FLIP, **ONCE)))),
        Entry("fewshot-5", "5-shot linear accuracy on the digits of the frozen MNIST-5k pre-trained model "
              "(§4.1, big_vision's protocol; mean of 3 draws)", (pretrain_16,),
              Probe("fewshot", "digits", shots=5, draws=3)),
        Entry("mae-linprobe", "MAE pre-training on MNIST-5k at 16 px (no labels, global average pooling; --lr is "
              "MAE's base rate per 256 images), then a linear probe of its frozen features on the digits (MAE's "
              "protocol)",
              (Run("pretrain", "pretrain", dict(data="mnist5k", objective="mae", **SMALL_VIT, patch_size=4,
                                                classifier="gap", image_size=16, epochs=15, lr=4e-3,
                                                decoder_hidden_size=32, decoder_depth=1, decoder_num_heads=4,
                                                decoder_mlp_dim=64, crop_scale=(0.4, 1.0), **NO_FLIP, **ONCE)),),
              Probe("linprobe", "digits", epochs=30)),
        Entry("swin-digits", "a small Swin with --recipe small-data from scratch on the digits at 16 px (2x2 "
              "patches, 4x4 windows)",
              (Run("run", "pretrain", dict(data="digits", model="Swin-T", patch_size=2, embed_dim=32, depths=[2, 2],
                                           num_heads=[2, 4], window_size=4, image_size=16, epochs=15, **NO_FLIP,
                                           **ONCE), preset="small-data"),)),
        Entry("hybrid-digits", "a small R+ViT hybrid (BiT root stem, 1x1 patches) with --recipe small-data from "
              "scratch on the digits at 16 px",
              (Run("run", "pretrain", dict(data="digits", model="R+ViT-Ti/16", hidden_size=64, depth=4,
                                           num_heads=4, mlp_dim=128, patch_size=1, image_size=16, epochs=15,
                                           **NO_FLIP, **ONCE), preset="small-data"),)),
        Entry("deit-letters-small-data", "a DeiT-Ti student (12 blocks, D 192, distillation token) with --recipe "
              "small-data alone on the letters (15 of its 50 epochs; the arm without a teacher)",
              (Run("run", "pretrain", deit_student, preset="small-data"),)),
        Entry("deit-distill-letters", "the same DeiT-Ti student with a BiT-R26x1 teacher trained first on the "
              "letters with the preset (DeiT §4: hard distillation, alpha 0.5)",
              (bit_teacher, Run("run", "pretrain", dict(deit_student, teacher=EARLIER + "teacher"),
                                preset="small-data"))),
    ]
    return {entry.name: entry for entry in entries}


#: Every entry, in table order.
ENTRIES: dict[str, Entry] = _entries()
#: The entries ``make ledger-quick`` checks with seed 0 (in CI, after the tests; under 5 minutes). swin-digits
#: (19 s) joined after a preset change took 15 points from it and only a full rewrite of the ledger saw it.
QUICK = ("letters-default", "digits-small-data", "finetune-higher-res", "swin-digits")


def select(names: Iterable[str] | None, entries: Mapping[str, Entry] = ENTRIES) -> list[Entry]:
    """The entries named (all for None), in table order; an unknown name is one line naming the known."""
    if names is None:
        return list(entries.values())
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in entries]
    if unknown or not names:
        raise VitkitError(f"unknown ledger entr{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown) or '(none)'} "
                          f"(known: {', '.join(entries)})")
    return [entry for name, entry in entries.items() if name in names]


# --------------------------------------------------------------------------------------------- running
@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch on ``threads`` threads inside the block, its previous count restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_entry(entry: Entry, *, seeds: Sequence[int] = SEEDS, work: str | os.PathLike | None = None,
              data_dir: str | os.PathLike | None = None,
              report: Callable[[str], None] | None = None) -> tuple[dict[int, float], float]:
    """({seed: test top-1 in %}, seconds) of ``entry`` run with each seed, on torch's present threads
    (:func:`torch_threads`). Runs go to ``work`` (a temporary folder, removed afterwards, when None); the
    letters are drawn into ``data_dir`` once."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="vitkit-ledger-") as tmp:
            return run_entry(entry, seeds=seeds, work=tmp, data_dir=data_dir or Path(tmp) / "data", report=report)
    work = Path(work)
    data_dir = Path(data_dir) if data_dir is not None else work / "data"
    start = time.perf_counter()
    values = {}
    for seed in seeds:
        if report:
            report(f"[{entry.name}] seed {seed}: {entry.command(seed)}")
        values[seed] = measure(entry, seed, work / entry.name / f"seed{seed}", data_dir)
    return values, time.perf_counter() - start


def measure(entry: Entry, seed: int, out: Path, data_dir: Path) -> float:
    """Test top-1 (%) of one seed of ``entry``: its runs in ``out``, then its probe if it has one."""
    from vitkit.checkpoints.detect import load_model
    from vitkit.data.sources import open_source
    from vitkit.train.loop import train
    from vitkit.train.settings import resolve_training_config

    models: dict[str, Path] = {}
    result = None
    for run in entry.runs:
        options = {**run.resolved(lambda name: str(models[name])), **entry.overrides, "seed": seed,
                   "out": str(out / run.name)}
        options["data"] = data_path(options["data"], data_dir)
        result = train(resolve_training_config(run.recipe, options, preset=run.preset), progress=False)
        models[run.name] = out / run.name / "model"
    if entry.probe is None:
        return 100 * result.metrics["test_top1"]
    probe = entry.probe
    data = data_path(probe.data, data_dir)
    train_set, test_set = open_source(data, "train"), open_source(data, "test")
    model = load_model(models[entry.runs[-1].name])
    if probe.kind == "fewshot":
        from vitkit.evaluate.fewshot import fewshot_evaluate

        return 100 * fewshot_evaluate(model, train_set, test_set, shots=[probe.shots], draws=probe.draws,
                                      seed=seed)[0].mean
    from vitkit.evaluate.linear_probe import linear_probe

    return 100 * linear_probe(model, train_set, test_set, epochs=probe.epochs, seed=seed).top1


def data_path(name: str, data_dir: Path) -> str:
    """``name`` as a data source: :data:`LETTERS` is the letters folder drawn under ``data_dir``."""
    if name != LETTERS:
        return name
    from vitkit.data.letters import write_letters

    write_letters(data_dir / LETTERS)  # reused when it already holds the same drawing
    return str(data_dir / LETTERS)


def letters_record() -> dict[str, Any]:
    """Which letters this machine draws: the number of fonts and a digest of their names (another
    font set is another data set)."""
    from vitkit.data.letters import letter_fonts

    names = sorted(f.name for f in letter_fonts())
    return {"fonts": len(names), "digest": hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]}


def machine_record() -> dict[str, Any]:
    """What the numbers were measured on: torch build and threads, CPU model, the letters' fonts."""
    from vitkit.studies.demo import machine_description

    return {**machine_description(), "cpu_model": cpu_name(), "letters": letters_record()}


# ------------------------------------------------------------------------------------------ the ledger
def entry_record(entry: Entry, values: Mapping[int, float], seconds: float,
                 machine: Mapping[str, Any]) -> dict[str, Any]:
    """One entry as the ledger file holds it."""
    numbers = [values[s] for s in sorted(values)]
    return {"description": entry.description, "command": entry.command(), "metric": METRIC,
            "seeds": sorted(values), "values": [round(v, 4) for v in numbers],
            "mean": round(statistics.fmean(numbers), 4), "spread": round(max(numbers) - min(numbers), 4),
            "seconds": round(seconds, 1), "machine": dict(machine)}


def read_ledger(path: str | os.PathLike) -> dict[str, Any]:
    """The ledger file at ``path``; one line when it is missing or not a ledger."""
    from vitkit.files import require_regular_file

    path = Path(path)
    if not path.exists():
        raise VitkitError(f"{path}: no ledger there (write one with --write)")
    try:
        ledger = json.loads(require_regular_file(path, "ledger").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VitkitError(f"{path}: not a readable ledger ({exc})") from None
    if not isinstance(ledger, dict) or not isinstance(ledger.get("entries"), dict):
        raise VitkitError(f"{path}: not a ledger (no \"entries\" object)")
    return ledger


def write_ledger(path: str | os.PathLike, records: Mapping[str, Mapping[str, Any]],
                 order: Iterable[str] = ENTRIES) -> dict[str, Any]:
    """Merge ``records`` into the ledger at ``path`` (created when missing) and write it atomically;
    entries are kept in ``order``, unknown ones after them."""
    from vitkit.atomic import write_text_atomic

    old = read_ledger(path)["entries"] if Path(path).exists() else {}
    merged = {**old, **records}
    ranked = {name: i for i, name in enumerate(order)}
    entries = dict(sorted(merged.items(), key=lambda item: (ranked.get(item[0], len(ranked)), item[0])))
    ledger = {"written_by": "benchmarks/accuracy_ledger.py --write", "metric": METRIC, "floor": FLOOR,
              "entries": entries}
    text = json.dumps(ledger, indent=1)
    # a list of numbers on one line ("values": [53.42, 53.33, 52.5]): an entry reads at a glance, diffs stay short
    text = re.sub(r"\[\s+(-?[0-9][0-9.eE+-]*(?:,\s+-?[0-9][0-9.eE+-]*)*)\s+\]",
                  lambda m: "[" + ", ".join(n.strip() for n in m.group(1).split(",")) + "]", text)
    write_text_atomic(path, text + "\n")
    return ledger


@dataclass
class Verdict:
    """How one entry compares with its record: ``status`` is ``ok``, ``up`` (above by more than the
    tolerance: passes, the ledger wants rewriting), ``down`` (fails), ``changed`` (the command is not
    the recorded one: fails) or ``missing`` (not recorded: fails)."""

    name: str
    status: str
    value: float | None = None
    recorded: float | None = None
    tolerance: float | None = None
    #: what was compared ("seed 0", "mean of seeds 0,1,2") and why the tolerance is what it is
    basis: str = ""
    why: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in ("down", "changed", "missing")

    def line(self) -> str:
        """One line naming the entry, the values and the tolerance."""
        if self.status == "missing":
            return f"{self.name}: not in the ledger (record it: --write --entries {self.name})"
        if self.status == "changed":
            return (f"{self.name}: its command changed since it was recorded; rewrite it in the same commit "
                    f"(--write --entries {self.name}) and say why")
        compared = f"{self.basis} {self.value:.2f}% vs recorded {self.recorded:.2f}%"
        if self.status == "down":
            return (f"{self.name}: {compared}: {self.recorded - self.value:.2f} points below, more than the "
                    f"tolerance {self.tolerance:.2f} ({self.why})")
        if self.status == "up":
            return (f"{self.name}: {compared}: moved up {self.value - self.recorded:.2f} points, more than the "
                    f"tolerance {self.tolerance:.2f} ({self.why}): rewrite the ledger (--write --entries {self.name})")
        return f"{self.name}: {compared}, within the tolerance {self.tolerance:.2f} ({self.why})"


def tolerance(record: Mapping[str, Any], floor: float = FLOOR) -> tuple[float, str]:
    """(points, why): the recorded spread of the seeds, or ``floor`` when they agreed more closely."""
    spread = float(record["spread"])
    if spread >= floor:
        return spread, f"the spread of seeds {','.join(map(str, record['seeds']))}"
    return floor, f"the floor of {floor:g} points (the seeds' spread is {spread:.2f})"


def check_entry(entry: Entry, values: Mapping[int, float], record: Mapping[str, Any] | None, *,
                quick: bool, floor: float = FLOOR) -> Verdict:
    """Compare a fresh run of ``entry`` (``values``: {seed: %}) with its ``record``: quick, seed 0 with
    the recorded seed 0; else the mean with the recorded mean (see the module notes)."""
    if record is None:
        return Verdict(entry.name, "missing")
    if record.get("command") != entry.command():
        return Verdict(entry.name, "changed")
    if quick:
        value, recorded, basis = values[0], record["values"][record["seeds"].index(0)], "seed 0"
    else:
        value, recorded = statistics.fmean(values.values()), float(record["mean"])
        basis = f"mean of seeds {','.join(map(str, sorted(values)))}"
    allowed, why = tolerance(record, floor)
    status = "down" if value < recorded - allowed else "up" if value > recorded + allowed else "ok"
    return Verdict(entry.name, status, value, recorded, allowed, basis, why)


def machine_differences(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between the machine an entry was recorded on and this one (torch, threads, CPU,
    fonts): a deterministic run repeats to the digit only on the same kind."""
    keys = ("torch", "torch_threads", "cpu_model", "letters")
    return [f"{key} {recorded.get(key)} -> {now.get(key)}" for key in keys if recorded.get(key) != now.get(key)]


def record(entries: Sequence[Entry], path: str | os.PathLike, *, seeds: Sequence[int] = SEEDS,
           work: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
           threads: int = THREADS, report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``entries`` with ``seeds`` on ``threads`` torch threads and merge each into the ledger at ``path``
    as soon as its seeds are done (``--write``: an interrupted rewrite keeps the entries it finished, each
    one whole)."""
    if Path(path).exists():
        read_ledger(path)  # a file that is not a ledger is refused before the work, not after it
    written: dict[str, Any] = {}
    with torch_threads(threads):
        machine = machine_record()
        for entry in entries:
            values, seconds = run_entry(entry, seeds=seeds, work=work, data_dir=data_dir, report=report)
            written = write_ledger(path, {entry.name: entry_record(entry, values, seconds, machine)})
    return written


@dataclass
class CheckResult:
    """What :func:`check` found: a verdict per entry, the seconds each took, what else to say."""

    verdicts: list[Verdict]
    seconds: dict[str, float]
    notes: list[str]

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.failed]

    def text(self) -> str:
        """The table, then one line per failing entry and per entry that moved up, then the notes."""
        lines = [table(self.verdicts, self.seconds)]
        flagged = [v for v in self.verdicts if v.failed or v.status == "up"]
        if flagged:
            lines.append("")
            lines += [("FAILED " if v.failed else "moved up ") + v.line() for v in flagged]
        if self.notes:
            lines.append("")
            lines += self.notes
        return "\n".join(lines)


def check(entries: Sequence[Entry], path: str | os.PathLike, *, quick: bool, work: str | os.PathLike | None = None,
          data_dir: str | os.PathLike | None = None, threads: int | None = None,
          report: Callable[[str], None] | None = None) -> CheckResult:
    """Run ``entries`` (quick: seed 0; else the seeds each was recorded with) and compare each with the
    ledger at ``path``. Each runs on the torch threads of its record (``threads``: on these instead). An
    entry not recorded, or recorded with another command, is not run."""
    ledger = read_ledger(path)["entries"]
    for entry in entries:  # before any run
        saved = ledger.get(entry.name)
        if quick and saved is not None and 0 not in saved.get("seeds", ()):
            raise VitkitError(f"{entry.name}: the quick check compares seed 0, which the ledger does not record")
    verdicts, seconds, notes = [], {}, []
    for entry in entries:
        saved = ledger.get(entry.name)
        if saved is None or saved.get("command") != entry.command():
            verdict = check_entry(entry, {}, saved, quick=quick)  # nothing to run: no record to compare with
        else:
            seeds = (0,) if quick else tuple(saved["seeds"])
            with torch_threads(threads or int(saved.get("machine", {}).get("torch_threads") or THREADS)):
                machine = machine_record()
                values, seconds[entry.name] = run_entry(entry, seeds=seeds, work=work, data_dir=data_dir,
                                                        report=report)
            verdict = check_entry(entry, values, saved, quick=quick)
            differences = machine_differences(saved.get("machine", {}), machine)
            if differences and verdict.status != "ok":
                verdict.notes.append(f"recorded on another machine kind ({'; '.join(differences)}): a deterministic "
                                     f"run repeats to the digit only on the same kind")
        verdicts.append(verdict)
        notes += [f"{entry.name}: {note}" for note in verdict.notes]
    return CheckResult(verdicts, seconds, notes)


def table(verdicts: Sequence[Verdict], seconds: Mapping[str, float]) -> str:
    """The printed summary: one row per entry."""
    width = max([len(v.name) for v in verdicts] + [5]) + 2
    lines = [f"{'entry':<{width}}{'now':>9}{'recorded':>10}{'tol.':>7}{'time':>8}  verdict"]
    for v in verdicts:
        numbers = (f"{v.value:>8.2f}%{v.recorded:>9.2f}%{v.tolerance:>7.2f}" if v.value is not None
                   else f"{'':>9}{'':>10}{'':>7}")
        verdict = {"ok": "ok", "up": "moved up: rewrite the ledger", "down": "FAILED: below the record",
                   "changed": "FAILED: command changed", "missing": "FAILED: not recorded"}[v.status]
        lines.append(f"{v.name:<{width}}{numbers}{seconds.get(v.name, 0):>7.0f}s  {verdict}")
    return "\n".join(lines)
