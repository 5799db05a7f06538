"""Masked patch prediction, the paper's self-supervision (Dosovitskiy et al. 2021, §4.6, App. B.1.2).

"We employ the masked patch prediction objective for preliminary self-supervision experiments. To do
so we corrupt 50% of patch embeddings by either replacing their embeddings with a learnable [mask]
embedding (80%), a random other patch embedding (10%) or just keeping them as is (10%). [...] we
predict the 3-bit, mean color (i.e., 512 colors in total) of every corrupted patch using their
respective patch representations."

Here, per image, exactly ``round(N * corrupt_ratio)`` patches are corrupted (chosen by sorting
uniform noise, as MAE chooses its masks); each corrupted patch independently becomes the [mask]
embedding with probability 0.8, another patch's embedding with probability 0.1 (drawn uniformly
from every other patch of the batch, as BERT draws a random token) and stays itself otherwise.
Corruption acts on the patch embeddings x_p^i E, before the position embeddings are added. The
output tokens of the corrupted patches go through one linear layer to the targets B.1.2 compares:

* ``mean_color`` (the paper's choice): each channel's mean in [0, 1] quantised to ``color_bits``
  bits, class = r * 2^(2b) + g * 2^b + b (512 classes at 3 bits), cross-entropy;
* ``downsampled``: the patch averaged down to 4x4 cells, each cell's colour a 3-bit class (16
  predictions of 512), cross-entropy averaged over the cells;
* ``pixels``: L2 regression of the full patch as the model sees it (normalised pixels, MAE's
  patch layout), mean squared error.

Colours are read off the images the model sees, mapped back to [0, 1] with the checkpoint's
normalisation. The loss of an image is the mean over its corrupted patches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError
from vitkit.models.vit.config import ViTConfig
from vitkit.models.vit.model import VisionTransformer
from vitkit.objectives.base import Objective, eval_batches, patchify, pixels_01, shuffle_order
from vitkit.options import Option, check_fields, option_field

MPP_TARGETS = ("mean_color", "downsampled", "pixels")

#: Codes of :meth:`MPP.corrupt`'s ``kind`` output.
INTACT, MASKED, REPLACED, KEPT = 0, 1, 2, 3


@dataclass
class MPPOptions(DictConfig):
    """B.1.2's corruption (50%: 80% [mask], 10% random other patch, 10% kept) and its targets."""

    _keys_are: ClassVar[str] = "masked patch prediction options"

    target: str = option_field("mean_color", Option("choice", "mpp: 3-bit mean colour (the paper's), a 4x4 "
                                                              "downsized patch in 3-bit colour, or the pixels (L2)",
                                                      choices=MPP_TARGETS, flag="--mpp-target"))
    corrupt_ratio: float = option_field(0.5, Option("float", "mpp: share of patches corrupted (the paper also "
                                                             "tried 0.15)", low=0, high=1, low_open=True,
                                                    high_open=True))
    mask_prob: float = option_field(0.8, Option("float", "mpp: share of the corrupted replaced by [mask]", low=0,
                                                high=1))
    random_prob: float = option_field(0.1, Option("float", "mpp: share of the corrupted replaced by another "
                                                           "patch", low=0, high=1))
    color_bits: int = option_field(3, Option("int", "mpp: bits per colour channel of the targets", low=1, high=8))
    #: cells per side of the ``downsampled`` target (4: a 4x4 downsized patch)
    downsample: int = option_field(4, Option("int", "mpp: cells per side of the downsized target", low=1,
                                             high=64))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self)
        if self.mask_prob + self.random_prob > 1.0:
            raise VitkitError(f"mask_prob {self.mask_prob} + random_prob {self.random_prob}: the shares of the "
                              f"corrupted patches sum to at most 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def num_corrupted(num_patches: int, ratio: float) -> int:
    """Patches corrupted per image: ``round(N * ratio)``, at least one."""
    return min(max(int(round(num_patches * ratio)), 1), num_patches)


def color_classes(pixels: torch.Tensor, bits: int = 3) -> torch.Tensor:
    """(..., 3) colours in [0, 1] -> (...,) class ids: each channel quantised to ``bits`` bits
    (level = floor(value * 2^bits), the top value folded into the last level), red most significant."""
    levels = 2 ** bits
    q = (pixels * levels).floor().clamp(0, levels - 1).long()
    return (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]


class MPPOutput(NamedTuple):
    """``loss`` (B,); ``prediction`` the head's output for every patch; ``target`` of every patch;
    ``corrupted`` (B, N) bool; ``kind`` (B, N): INTACT, MASKED, REPLACED or KEPT."""

    loss: torch.Tensor
    prediction: torch.Tensor
    target: torch.Tensor
    corrupted: torch.Tensor
    kind: torch.Tensor


class MPP(Objective):
    """Masked patch prediction (see the module notes)."""

    name = "mpp"
    #: App. B.1.2: "Adam, with a base learning rate of 2e-4, warmup of 10k steps and cosine learning rate
    #: decay" (the warm-up is the pre-training default: 10k steps, at most a tenth of the run).
    recipe = {"lr": 2e-4, "decay": "cosine"}

    def __init__(self, model_config: ViTConfig, options: MPPOptions | None = None) -> None:
        super().__init__()
        self.options = opts = options or MPPOptions()
        self.stride = model_config.stride
        self.in_channels = model_config.in_channels
        if opts.target != "pixels" and model_config.in_channels != 3:
            raise VitkitError(f"colour targets need RGB images, the model takes {model_config.in_channels} channels")
        if opts.target == "downsampled" and self.stride % opts.downsample:
            raise VitkitError(f"a {self.stride}-pixel patch cannot be downsized to {opts.downsample}x"
                              f"{opts.downsample} cells (the patch size must be divisible by {opts.downsample})")
        classes = 2 ** (3 * opts.color_bits)
        outputs = {"mean_color": classes, "downsampled": opts.downsample ** 2 * classes,
                   "pixels": self.stride ** 2 * model_config.in_channels}[opts.target]
        dim = model_config.hidden_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.head = nn.Linear(dim, outputs)  # zero-initialised: uniform colour predictions at the start
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    # ------------------------------------------------------------------ corruption
    def corrupt(self, tokens: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(corrupted patch embeddings, corrupted (B, N) bool, kind (B, N)) of patch embeddings (B, N, D)."""
        opts = self.options
        batch, length, dim = tokens.shape
        device = tokens.device
        draw = generator.device if generator is not None else device
        ids_shuffle, _ = shuffle_order(batch, length, device, generator)
        corrupted = torch.zeros(batch, length, dtype=torch.bool, device=device)
        corrupted.scatter_(1, ids_shuffle[:, : num_corrupted(length, opts.corrupt_ratio)], True)
        u = torch.rand(batch, length, generator=generator, device=draw).to(device)
        masked = corrupted & (u < opts.mask_prob)
        replaced = corrupted & (u >= opts.mask_prob) & (u < opts.mask_prob + opts.random_prob)
        kind = torch.full_like(u, INTACT, dtype=torch.long)
        kind[corrupted] = KEPT
        kind[masked] = MASKED
        kind[replaced] = REPLACED
        out = torch.where(masked.unsqueeze(-1), self.mask_token.to(tokens.dtype).expand(batch, length, dim), tokens)
        total = batch * length
        if total >= 2:  # another patch of the batch, uniformly: draw from N-1 and skip over oneself
            own = torch.arange(total, device=device).view(batch, length)
            other = torch.randint(0, total - 1, (batch, length), generator=generator, device=draw).to(device)
            other = other + (other >= own).long()
            donors = tokens.reshape(total, dim)[other]
            out = torch.where(replaced.unsqueeze(-1), donors, out)
        return out, corrupted, kind

    # ------------------------------------------------------------------ targets
    def targets(self, model: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
        """Every patch's target: class ids (B, N) (``mean_color``), (B, N, cells) (``downsampled``) or
        pixel values (B, N, P*P*C) (``pixels``)."""
        opts = self.options
        if opts.target == "pixels":
            return patchify(images.float(), self.stride)
        rgb = pixels_01(model, images.float())
        if opts.target == "mean_color":
            means = F.avg_pool2d(rgb, self.stride)  # (B, 3, rows, cols)
            return color_classes(means.flatten(2).transpose(1, 2), opts.color_bits)
        cells = F.avg_pool2d(rgb, self.stride // opts.downsample)  # (B, 3, rows * d, cols * d)
        per_patch = patchify(cells, opts.downsample)  # (B, N, d * d * 3), channel innermost
        return color_classes(per_patch.reshape(*per_patch.shape[:2], -1, 3), opts.color_bits)

    def _patch_losses(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, N) loss of every patch."""
        if self.options.target == "pixels":
            return ((prediction.float() - target) ** 2).mean(dim=-1)
        if self.options.target == "downsampled":
            cells = target.shape[-1]
            prediction = prediction.reshape(*prediction.shape[:2], cells, -1)
            return F.cross_entropy(prediction.float().flatten(0, 2), target.flatten(), reduction="none") \
                .view(target.shape).mean(dim=-1)
        return F.cross_entropy(prediction.float().flatten(0, 1), target.flatten(), reduction="none").view(target.shape)

    # ------------------------------------------------------------------ the objective
    def run(self, model: VisionTransformer, images: torch.Tensor, *,
            generator: torch.Generator | None = None) -> MPPOutput:
        tokens, grid = model.embed_patches(images)
        corrupted_tokens, corrupted, kind = self.corrupt(tokens, generator)
        out = model.encode_tokens(corrupted_tokens, grid).tokens[:, model.num_prefix_tokens:]
        prediction = self.head(out)
        target = self.targets(model, images)
        weights = corrupted.float()
        loss = (self._patch_losses(prediction, target) * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return MPPOutput(loss, prediction, target, corrupted, kind)

    def forward(self, model: VisionTransformer, images: torch.Tensor, labels: torch.Tensor, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return self.run(model, images, generator=generator).loss

    def predicted_classes(self, prediction: torch.Tensor) -> torch.Tensor:
        """The most likely colour class of every patch (``mean_color``) or cell (``downsampled``)."""
        if self.options.target == "downsampled":
            prediction = prediction.reshape(*prediction.shape[:2], self.options.downsample ** 2, -1)
        return prediction.argmax(dim=-1)

    @torch.no_grad()
    def evaluate(self, model: VisionTransformer, dataset, *, batch_size: int, device: torch.device,
                 num_workers: int = 0, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
        """Loss over the corrupted test patches (seeded corruption, the same at every evaluation)
        and, for the colour targets, the share of corrupted patches (cells) whose colour is right."""
        was_training = model.training, self.training
        model.eval()
        self.eval()
        generator = torch.Generator().manual_seed(0)
        loss_sum, images_seen, right, scored = 0.0, 0, 0.0, 0
        for images, _ in eval_batches(model, dataset, batch_size=batch_size, device=device, num_workers=num_workers):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp_dtype is not None):
                out = self.run(model, images, generator=generator)
            loss_sum += float(out.loss.float().sum())
            images_seen += out.loss.shape[0]
            if self.options.target != "pixels":
                hits = (self.predicted_classes(out.prediction) == out.target).float()
                if hits.ndim == 3:
                    hits = hits.mean(dim=-1)
                right += float(hits[out.corrupted].sum())
                scored += int(out.corrupted.sum())
        model.train(was_training[0])
        self.train(was_training[1])
        if not images_seen:
            raise VitkitError("no test image could be read")
        metrics = {"loss": loss_sum / images_seen}
        if scored:
            metrics["color_accuracy"] = right / scored
        return metrics

    def describe(self, metrics: dict[str, float]) -> str:
        text = f"test loss {metrics['loss']:.4f} on corrupted patches"
        if "color_accuracy" in metrics:
            text += f", colour accuracy {100 * metrics['color_accuracy']:.2f}%"
        return text
