"""What ``--recipe small-data`` picks for the model at hand: training from scratch on a few thousand
small images (up to ~64 px), where the paper's ImageNet set-up leaves a ViT below a pixel MLP.

The preset has a fixed part (:data:`FIXED`: crops of 80-100% of the area, label smoothing 0.1, no
RandAugment or Mixup, batch 64, weight decay 0.05, 50 epochs, each measured by ``vitkit reproduce
--only small-data``; and the classifier head started from a normal of std 0.02, DeiT's start, instead of
vit_jax's zeros) and a part that follows the model.

**The head** (``--head-init normal``). With the zero head, ViT-Ti/16 at 32 px (12 blocks) sat at the loss
of chance for 200-400 steps on the letters and ended 10 epochs at 90.0%, 38.9% and 65.8% test top-1 (seeds
0, 1, 2); with the normal head the loss leaves ln 10 within 90 steps and the same runs end at 86.1%, 83.9%
and 86.3% (``vitkit train --data LETTERS --model ViT-Ti/16 --image-size 32 --recipe small-data --no-flip
--epochs 10 --seed S --head-init zeros|normal``, one torch thread, the letters as
``benchmarks/small_data_variants.py`` draws them). The cause: while a zero head is forming, the gradient
the blocks get passes through it and is about a hundredth of what a normal head passes (6e-3 against 0.5
at step 10), but Adam divides each gradient by its own running scale, so the blocks still move by about
half the learning rate per step, in directions set by a head that has learned nothing yet
(``benchmarks/head_init_start.py`` prints both starts). The paper's zero head is for fine-tuning (§3.2),
where the blocks are already trained; fine-tuning keeps it.

The part that follows the model:

* **the token grid**, for images up to :data:`SMALL_IMAGE_LIMIT` px a side (larger ones keep the variant's
  patches) -- the family record's ``small_images`` (ViT: 4x4 patches of the image, counted
  after a hybrid's stem; Swin: an 8x8 first stage with 4x4 windows), so that a stock variant named at
  32 px gets a grid it can train on instead of 2x2 or 1x1 tokens;
* **the learning rate** -- AdamW's peak rate shrinks with the number of residual blocks L:
  ``lr = 2e-3 * min(1, 4 / L)``. 2e-3 was measured on 4-block models; at 12 blocks (ViT-Ti/16) it
  never left the loss of chance (ln C) with the zero head, and with the normal head its loss is still
  1.96 and 1.95 after 250 steps on the letters where a third of it has reached 1.23 and 1.35 (seeds 0,
  1) -- the
  updates of twelve blocks add up in the residual stream, and the 1 / L scale keeps the stream's change
  per step what it is at four blocks;
* stochastic depth stays 0.1 at every depth (measured at 4 blocks by the reproduce study; DeiT trains
  ViT-Ti and ViT-S at 12 blocks with the same rate), and the warm-up the recipe's (a tenth of the run).

Options given explicitly (or in ``--config``) override every pick; ``vitkit train`` prints the picks at
the start of a run and ``--json`` records them in the run's configuration.
"""

from __future__ import annotations

from typing import Any

from vitkit.errors import VitkitError

#: The fixed part of the preset, for pre-training and for fine-tuning.
FIXED: dict[str, dict[str, Any]] = {
    "pretrain": dict(crop_scale=(0.8, 1.0), label_smoothing=0.1, randaugment=False, mixup=0.0, cutmix=0.0,
                     epochs=50, batch_size=64, weight_decay=0.05, head_init="normal"),
    "finetune": dict(crop_scale=(0.8, 1.0), label_smoothing=0.1, batch_size=64),
}
#: The largest image side (px) the preset picks a token grid for: larger images keep the variant's own patches.
SMALL_IMAGE_LIMIT = 64
#: The learning rate of a model of :data:`REFERENCE_BLOCKS` blocks, and the stochastic depth of every model.
LR, REFERENCE_BLOCKS, DROP_PATH = 2e-3, 4, 0.1
#: How ``--help`` states the part that follows the model.
RULE = ("the token grid by model family for images up to 64 px (ViT: 4x4 patches, counted after a hybrid's "
        "stem; Swin: an 8x8 first stage, 4x4 windows), lr = 2e-3 x min(1, 4 / L) for a model of L blocks, and "
        "drop-path 0.1")


def model_picks(model: str, image_size: tuple[int, int] | None, model_options: dict[str, Any]) -> dict[str, Any]:
    """The options the preset picks for ``model`` with the ``model_options`` given at ``image_size``
    (None: the variant's own): ``lr`` and ``model_options`` (grid and ``drop_path``), each one the
    given ``model_options`` do not already set."""
    from vitkit.models.registry import family_of

    config = _described(model, image_size, model_options)
    if config is None:
        return {}  # an unknown name or options that make no model: left to the checks where the model is built
    family = family_of(config)
    size = tuple(image_size or config.image_size)
    grid = family.small_images(config, size) if min(size) <= SMALL_IMAGE_LIMIT else {}
    arch = {k: v for k, v in grid.items() if k not in model_options}
    blocks = count_blocks(model, size, {**model_options, **arch})
    if blocks is None:
        return {}
    if "drop_path" in family.architecture_options and "drop_path" not in model_options:
        arch["drop_path"] = DROP_PATH
    return {"lr": LR * min(1.0, REFERENCE_BLOCKS / blocks), "model_options": arch}


def _described(model: str, image_size: tuple[int, int] | None, options: dict[str, Any]) -> Any:
    """A configuration of ``model`` to read its family and layout from: with the ``options`` given at
    ``image_size`` where they make one, else the variant at that size, else with the options at the
    variant's own size, else the variant as it is (a stock variant is often invalid at a small size until
    the picks fix its grid -- Swin-T's 7x7 windows at 16 px -- and a user's options may be what makes it
    valid: the preset must pick for such models too, not fall back silently to the recipe's defaults).
    None for a name no family knows."""
    from vitkit.models.registry import get_config

    sized = {"image_size": image_size} if image_size else {}
    for attempt in ({**options, **sized}, sized, options, {}):
        try:
            return get_config(model, **attempt)
        except (VitkitError, ValueError, TypeError):
            continue
    return None


def count_blocks(model: str, image_size: tuple[int, ...], options: dict[str, Any]) -> int | None:
    """L, the residual blocks of ``model`` with ``options`` (built without weights); None when those
    options do not make a model (the error comes later, where the model is built)."""
    import torch

    from vitkit.models.registry import build_model, family_of, get_config

    try:
        config = get_config(model, image_size=image_size, **options)
        with torch.device("meta"):
            built = build_model(config)
    except (VitkitError, ValueError, TypeError):
        return None
    return family_of(config).num_layers(built)


#: the architecture options :func:`model_picks` may set (the families' ``small_images`` and drop path)
PICKED_MODEL_OPTIONS = ("patch_size", "window_size", "drop_path")


def run_picks(config: Any) -> dict[str, Any]:
    """What a run's configuration holds for the options the preset picks (its picks, or what overrode them)."""
    return {"lr": config.lr, "model_options": {k: v for k, v in config.model_options.items()
                                               if k in PICKED_MODEL_OPTIONS}}


def picks_text(picks: dict[str, Any]) -> str:
    """``lr=... patch-size=... drop-path=...`` for the start-of-run line and the help's examples."""
    values = {"lr": picks.get("lr"), **picks.get("model_options", {})}
    return " ".join(f"{k.replace('_', '-')}={v:.3g}" if isinstance(v, float) else f"{k.replace('_', '-')}={v}"
                    for k, v in values.items() if v is not None)
