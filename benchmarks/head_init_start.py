"""Why ``--recipe small-data`` starts the classifier head from a normal, not from zero (issue 21): the first
steps of a 12-block model (ViT-Ti/16 at 32 px, the preset's picks) on the letters, once per head.

Per step it prints the training loss, the norm of the gradient reaching the blocks' weight matrices, and the
RMS of their Adam update in units of the learning rate. With a zero head, the gradient the blocks get passes
through a head that has not learned anything yet; Adam divides each gradient by its own running scale, so the
blocks still move by a good part of the learning rate each step, in directions that head sets.

    .venv/bin/python benchmarks/head_init_start.py --steps 120 --every 10
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch


def first_steps(data: str, head_init: str, steps: int, seed: int, out: Path) -> list[tuple[int, float, float, float]]:
    """(step, loss, blocks' gradient norm, RMS of the blocks' update / lr) for the first ``steps`` steps."""
    from vitkit.train.loop import Trainer
    from vitkit.train.settings import resolve_training_config

    options = dict(data=data, model="ViT-Ti/16", image_size=32, epochs=10, flip=False, eval_every=1000, seed=seed,
                   out=str(out), head_init=head_init)
    trainer = Trainer(resolve_training_config("pretrain", options, preset="small-data"), progress=False)

    def batches():
        epoch = 0
        while True:
            yield from trainer._loader(epoch, 0)
            epoch += 1

    body = [p for n, p in trainer.model.named_parameters() if n.startswith("blocks.") and p.ndim == 2]
    stream, rows = batches(), []
    for step in range(1, steps + 1):
        before = [p.detach().clone() for p in body]
        result = trainer._train_step([next(stream)])
        grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in body]).norm()
        update = torch.cat([((p.detach() - b) / result["lr"]).flatten() for p, b in zip(body, before, strict=True)])
        rows.append((step, result["loss"], float(grad), float(update.pow(2).mean().sqrt())))
    trainer.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--every", type=int, default=10, help="print every N-th step")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from vitkit.data.letters import write_letters

    work = Path(tempfile.mkdtemp(prefix="head-init-"))
    try:
        write_letters(work / "letters")
        for head_init in ("zeros", "normal"):
            print(f"--head-init {head_init}")
            for step, loss, grad, update in first_steps(str(work / "letters"), head_init, args.steps, args.seed,
                                                        work / head_init):
                if step == 1 or step % args.every == 0:
                    print(f"  step {step:4d}  loss {loss:.3f}  blocks' gradient {grad:.2e}  update {update:.2f} x lr")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
