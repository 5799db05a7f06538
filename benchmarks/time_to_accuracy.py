"""Time to accuracy (issue 23): how soon ``vitkit train`` reaches the accuracy a transformers user's
training loop reaches, on the same architecture, data, optimiser, schedule and augmentation.

For each data set, one run, in this order on one machine:

* **transformers** -- ``ViTForImageClassification`` in the plain PyTorch loop a transformers user writes:
  a ``DataLoader`` over the images with the per-image random-resized crop (Pillow, as torchvision's
  ``RandomResizedCrop`` does), ``torch.optim.AdamW`` with the Trainer's decay rule (no weight decay on
  biases and LayerNorm weights), ``get_cosine_schedule_with_warmup``, cross-entropy with the same label
  smoothing, the same gradient clipping, an evaluation on the test split after every epoch. The model is
  the one ``vitkit train`` starts from with the run's seed (:func:`vitkit.train.loop.build_model`),
  exported to transformers and read back by its own ``from_pretrained``
  (:func:`vitkit.deploy.bench.peer.transformers_peer`): both sides start from the same weights.
* **vitkit arms** -- ``vitkit train`` with the same recipe (``--recipe small-data`` for the model at hand,
  drop path off because transformers' ViT has none), plus what each arm adds (``--arm NAME:opt=value,...``:
  the levers of issue 23, e.g. ``--arm patch-drop:patch_drop=0.5``), evaluated after every epoch as well.

The target is the test top-1 the transformers run has at its end. A run's time to the target is the wall
time, evaluations and (vitkit's) per-epoch checkpoints included, at the first epoch whose test top-1 is
within :data:`TOLERANCE` (0.5 points) of it -- the issue's "same accuracy (within 0.5 points)"; the ratio
is the transformers run's whole time over the arm's time to the target (above 1: vitkit sooner). The table
also gives the transformers run's own first epoch within the tolerance, so a reader sees how much of a ratio
a shorter transformers schedule might take back. The issue's goal: an arm at least 1.5x sooner on both
data sets. An arm may set its own ``epochs`` (``--arm short:epochs=14``): "vitkit with its fastest
settings" includes a shorter schedule that still reaches the target.

    .venv/bin/python benchmarks/time_to_accuracy.py --from-results runs/tta/results.json --write docs/training.md

    .venv/bin/python benchmarks/time_to_accuracy.py --out runs/tta                        # both data sets
    .venv/bin/python benchmarks/time_to_accuracy.py --out runs/tta --write docs/training.md  # rewrite the table
    .venv/bin/python benchmarks/time_to_accuracy.py --out /tmp/tta --epochs 1 --datasets mnist5k   # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

DATASETS = ("mnist5k", "letters")
#: the architecture both sides train: a ViT at 32 px with 4x4 patches of 8 px (the small-data preset's grid),
#: 6 blocks of width 128 -- small enough that two runs per data set fit this 2-core machine in minutes
MODEL = dict(model="ViT-Ti/16", hidden_size=128, depth=6, num_heads=4, mlp_dim=256, patch_size=8)
SIZE = 32
#: the vitkit arms run by default: the same recipe, then each lever of issue 23: token dropping, the
#: low-resolution schedule (24 px, a 3x3 grid, for 14 of the 20 epochs), both together, torch.compile, and
#: twice the batch with the learning rate scaled linearly (2 x the preset's 2e-3 x 4/6 for 6 blocks)
ARMS = ("same", "patch-drop:patch_drop=0.5", "low-res:low_res_size=24,low_res_epochs=14",
        "both:patch_drop=0.5,low_res_size=24,low_res_epochs=14", "compile:compile=true",
        "batch-128:batch_size=128,lr=0.002667", "short-14:epochs=14", "short-12:epochs=12")
#: "the same accuracy (within 0.5 points)": how far below the target an arm's top-1 may be and count
TOLERANCE = 0.005
BLOCK = re.compile(r"<!-- time-to-accuracy.*?<!-- /time-to-accuracy -->", re.S)
COMMAND = "python benchmarks/time_to_accuracy.py --out runs/tta --threads 2 --write docs/training.md"


def parse_arm(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:opt=value,opt=value`` -> (NAME, options); a value is read as JSON where it parses (numbers)."""
    name, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"time_to_accuracy: error: --arm {text!r}: expected opt=value, got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return name.strip(), options


def dataset_path(name: str, out: Path) -> str:
    """The ``--data`` of a data set (the letters drawn into ``out`` once)."""
    if name == "letters":
        from vitkit.data.letters import write_letters

        write_letters(out / "letters")
        return str(out / "letters")
    return name


def base_config(data: str, epochs: int, seed: int, out: Path, extra: dict[str, Any] | None = None):
    """The run both sides follow: the small-data preset's recipe for :data:`MODEL` at 32 px, no flips
    (digits and letters), no drop path, an evaluation after every epoch."""
    from vitkit.train.settings import resolve_training_config

    options = dict(data=data, **MODEL, image_size=SIZE, epochs=epochs, flip=False, drop_path=0.0, eval_every=1,
                   seed=seed, out=str(out))
    options.update(extra or {})  # an arm's own options win, its epochs included
    return resolve_training_config("pretrain", options, preset="small-data")


def vitkit_arm(config) -> list[tuple[float, float]]:
    """Train with ``vitkit train``'s own loop; [(wall seconds, test top-1)] after each epoch (metrics.csv)."""
    from vitkit.train.loop import train

    train(config, progress=False)
    with open(Path(config.out) / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [(float(r["time_s"]), float(r["value"])) for r in rows if r["metric"] == "test/top1"]


def transformers_arm(config) -> list[tuple[float, float]]:
    """The transformers user's loop (module notes); [(wall seconds, test top-1)] after each epoch."""
    import transformers

    from vitkit.data.sources import open_source
    from vitkit.data.transforms import eval_transform, train_transform
    from vitkit.deploy.bench.peer import transformers_peer
    from vitkit.train.loop import build_model
    from vitkit.train.recipes import warmup_steps

    # the crops draw from torch's global generator, which torch seeds afresh in every process: seeded here so
    # the arm is the same run every time (two unseeded runs ended at 96.2% and 97.1% on MNIST-5k)
    torch.manual_seed(config.seed)
    train_set, test_set = open_source(config.data, "train"), open_source(config.data, "test")
    built = build_model(config, train_set.label_names)  # the model vitkit's run starts from (its seed)
    model, pre = transformers_peer(built), built.preprocessing
    augment = train_transform(pre, flip=config.flip, scale=tuple(config.crop_scale))
    evaluate_view = eval_transform(pre)

    def mapped(dataset, transform: Callable) -> torch.utils.data.Dataset:
        class Mapped(torch.utils.data.Dataset):
            def __len__(self) -> int:
                return len(dataset)

            def __getitem__(self, i: int):
                image, label = dataset.load(i)
                return transform(image), label
        return Mapped()

    generator = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(mapped(train_set, augment), batch_size=config.batch_size, shuffle=True,
                                         drop_last=True, generator=generator, num_workers=0)
    test_loader = torch.utils.data.DataLoader(mapped(test_set, evaluate_view), batch_size=256, num_workers=0)
    # the Trainer's rule: decay every weight outside LayerNorm, no bias
    decay = {n for n in transformers.trainer_pt_utils.get_parameter_names(model, [nn.LayerNorm]) if "bias" not in n}
    groups = [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": config.weight_decay},
              {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas))
    total = config.epochs * len(loader)
    scheduler = transformers.get_cosine_schedule_with_warmup(optimizer, warmup_steps(config, total), total)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    start, out = time.perf_counter(), []
    for _ in range(config.epochs):
        model.train()
        for images, labels in loader:
            loss = loss_fn(model(pixel_values=images).logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += int((model(pixel_values=images).logits.argmax(-1) == labels).sum())
        out.append((time.perf_counter() - start, correct / len(test_set)))
    return out


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Seconds at the first epoch whose top-1 is within :data:`TOLERANCE` of ``target`` (None: never)."""
    return next((seconds for seconds, top1 in curve if top1 >= target - TOLERANCE - 1e-9), None)


def run_dataset(name: str, arms: list[tuple[str, dict[str, Any]]], epochs: int, seed: int, out: Path,
                report: Callable[[str], None]) -> dict[str, Any]:
    """Every run on one data set and its row of results."""
    data = dataset_path(name, out)
    report(f"[{name}] transformers loop, {epochs} epochs")
    reference = transformers_arm(base_config(data, epochs, seed, out / name / "transformers"))
    target = reference[-1][1]
    rows = [{"arm": "transformers", "options": {}, "final": target, "minutes": reference[-1][0] / 60,
             "to_target": time_to(reference, target) / 60, "ratio": 1.0}]
    for arm, options in arms:
        report(f"[{name}] vitkit {arm} {options or ''}")
        try:
            curve = vitkit_arm(base_config(data, epochs, seed, out / name / arm, options))
        except Exception as exc:  # one arm that cannot run (e.g. no compiler for torch.compile) costs its row only
            report(f"[{name}] vitkit {arm} failed: {exc}")
            rows.append({"arm": f"vitkit {arm}", "options": options, "failed": str(exc).splitlines()[0][:120]})
            continue
        reached = time_to(curve, target)
        rows.append({"arm": f"vitkit {arm}", "options": options, "final": curve[-1][1], "minutes": curve[-1][0] / 60,
                     "to_target": None if reached is None else reached / 60,
                     "ratio": None if reached is None else reference[-1][0] / reached})
    return {"data": name, "epochs": epochs, "target": target, "rows": rows}


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| data | run | options | final top-1 | minutes | minutes to target | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for result in results:
        for row in result["rows"]:
            options = " ".join(f"`{k}={v}`" for k, v in row["options"].items()) or "-"
            if row.get("failed"):
                lines.append(f"| {result['data']} | {row['arm']} | {options} | failed: {row['failed']} | - | - | - |")
                continue
            to_target = f"{row['to_target']:.2f}" if row["to_target"] is not None else "not reached"
            ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
            lines.append(f"| {result['data']} (target {100 * result['target']:.1f}%) | {row['arm']} | {options} | "
                         f"{100 * row['final']:.1f}% | {row['minutes']:.2f} | {to_target} | {ratio} |")
    return "\n".join(lines)


def write_block(path: Path, saved: dict[str, Any]) -> None:
    """Rewrite ``path``'s block from a results.json's contents (its command, machine and rows)."""
    text = path.read_text()
    if not BLOCK.search(text):
        raise SystemExit(f"time_to_accuracy: error: {path} has no <!-- time-to-accuracy --> block")
    results = saved["results"]
    epochs = ", ".join(sorted({str(r["epochs"]) for r in results}))
    block = (f"<!-- time-to-accuracy: written by benchmarks/time_to_accuracy.py from the run below; do not edit "
             f"by hand -->\n```bash\n{saved['command']}\n```\n\n{table(results)}\n\n({saved['machine']}; "
             f"{epochs} epochs, model {' '.join(f'{k}={v}' for k, v in MODEL.items())} at {SIZE} px, seed "
             f"{saved['seed']}; times include the evaluation after every epoch)\n<!-- /time-to-accuracy -->")
    path.write_text(BLOCK.sub(lambda _: block, text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="where the runs and results.json go (required unless --from-results)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of every run (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arm", action="append", default=[], metavar="NAME:opt=value,...",
                        help=f"a vitkit arm (repeatable; default: {' '.join(ARMS)})")
    parser.add_argument("--from-results", metavar="JSON", help="run nothing: print (and --write) a results.json")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--write", metavar="FILE", help="rewrite FILE's <!-- time-to-accuracy --> block")
    args = parser.parse_args(argv)
    if args.from_results:
        saved = json.loads(Path(args.from_results).read_text())
        print(table(saved["results"]))
        if args.write:
            write_block(Path(args.write), saved)
        return 0
    if not args.out:
        parser.error("--out is required (or --from-results)")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.datasets.split(",") if n]
    unknown = [n for n in names if n not in DATASETS]
    if unknown or args.epochs < 1:
        print(f"time_to_accuracy: error: unknown data set {unknown} or epochs < 1", file=sys.stderr)
        return 2
    arms = [parse_arm(a) for a in args.arm or ARMS]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    results = [run_dataset(n, arms, args.epochs, args.seed, Path(tempfile.mkdtemp(dir=out, prefix=f"{n}-")), report)
               for n in names]
    from vitkit.cpuinfo import cpu_name

    machine = f"{cpu_name()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
    command = " ".join(["python benchmarks/time_to_accuracy.py", *(argv if argv is not None else sys.argv[1:])])
    saved = {"command": command, "machine": machine, "seed": args.seed, "results": results}
    (out / "results.json").write_text(json.dumps(saved, indent=1))
    print(table(results))
    if args.write:
        write_block(Path(args.write), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
