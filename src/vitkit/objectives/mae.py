"""MAE: masked autoencoder pre-training (He et al. 2021, "Masked Autoencoders Are Scalable Vision
Learners", §3).

Per image, a random subset of the patches is masked (75% by default) by sorting i.i.d. uniform
noise: the first ``int(N * (1 - mask_ratio))`` patches of that order stay visible, so every image
keeps exactly the same number. The encoder (a plain ViT) sees the [class] token and the visible
patches only; the light decoder (:class:`~vitkit.models.vit.mae.MAEDecoder`) fills the masked positions
with a shared mask token and predicts every patch's pixels. The loss is the mean squared error over
the masked patches only, against the pixels as the model sees them, each patch normalised by its
own mean and (unbiased) variance when ``norm_pix_loss`` is on (MAE's default for its results):

    target = (x_p - mean(x_p)) / sqrt(var(x_p) + 1e-6)
    loss   = sum_p mask_p * mean((pred_p - target_p)^2) / sum_p mask_p        (per image)

The encoder's learned 1-D position embeddings are set to MAE's fixed 2-D sine-cosine values and
frozen for pre-training (MAE's encoder uses fixed embeddings too); fine-tuning trains them. An encoder
built from scratch for MAE takes MAE's initialisation (``models_mae.initialize_weights``), and its
weight decay spares only 1-D parameters and biases (MAE's ``add_weight_decay``): the [class] and mask
tokens are decayed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch

from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError
from vitkit.models.posemb import mae_sincos_table
from vitkit.models.vit.config import ViTConfig
from vitkit.models.vit.mae import MAEDecoder, MAEDecoderConfig, check_maskable, mae_init_encoder_
from vitkit.models.vit.model import VisionTransformer
from vitkit.objectives.base import Objective, eval_batches, patchify, shuffle_order, unpatchify
from vitkit.options import Option, check_fields, option_field

NORM_PIX_EPS = 1e-6


@dataclass
class MAEOptions(DictConfig):
    """MAE's knobs: the mask ratio, the normalised-pixel loss, and the decoder's size."""

    _keys_are: ClassVar[str] = "MAE options"

    mask_ratio: float = option_field(0.75, Option("float", "mae: share of patches masked", low=0, high=1,
                                                  low_open=True, high_open=True))
    norm_pix_loss: bool = option_field(True, Option("bool", "mae: reconstruct per-patch normalised pixels (off: raw "
                                                            "pixels)", flag="--no-norm-pix-loss",
                                                   off_help="mae: reconstruct raw pixels, not per-patch normalised "
                                                            "ones"))
    decoder_hidden_size: int = option_field(512, Option("int", "mae: decoder width", low=4, high=65536))
    decoder_depth: int = option_field(8, Option("int", "mae: decoder blocks", low=1, high=1000))
    decoder_num_heads: int = option_field(16, Option("int", "mae: decoder heads", low=1, high=4096))
    decoder_mlp_dim: int = option_field(2048, Option("int", "mae: decoder MLP size", low=1, high=1 << 20))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self)
        self.decoder_config()

    def decoder_config(self) -> MAEDecoderConfig:
        return MAEDecoderConfig(hidden_size=self.decoder_hidden_size, depth=self.decoder_depth,
                                num_heads=self.decoder_num_heads, mlp_dim=self.decoder_mlp_dim)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """Patches each image keeps: ``int(N * (1 - mask_ratio))``, MAE's (and transformers') rule."""
    keep = int(num_patches * (1 - mask_ratio))
    if keep < 1:
        raise VitkitError(f"mask ratio {mask_ratio} leaves no visible patch of {num_patches}")
    return keep


def normalise_patches(patches: torch.Tensor) -> torch.Tensor:
    """Each patch (last axis) minus its mean, over sqrt(its unbiased variance + 1e-6) (``norm_pix_loss``)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + NORM_PIX_EPS) ** 0.5


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image (B,): the mean over masked patches (``mask`` 1) of each patch's mean squared error."""
    per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)
    return (per_patch * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MAEOutput(NamedTuple):
    """``loss`` (B,): per image, over its masked patches; ``pred``/``target`` (B, N, P*P*C);
    ``mask`` (B, N): 1 for masked, 0 for visible; ``ids_restore`` (B, N); ``latent``: the encoder's
    output (B, prefix + K, D)."""

    loss: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    ids_restore: torch.Tensor
    latent: torch.Tensor


class MAE(Objective):
    """Masked autoencoder pre-training of a plain ViT encoder (see the module notes)."""

    name = "mae"
    #: MAE's pre-training settings (its Table 8): AdamW beta (0.9, 0.95), weight decay 0.05, base learning
    #: rate 1.5e-4 scaled by batch / 256, cosine decay after the warm-up, no gradient clipping.
    recipe = {"lr": 1.5e-4, "lr_base_batch": 256, "betas": (0.9, 0.95), "weight_decay": 0.05, "decay": "cosine",
              "grad_clip": None}
    #: MAE's ``main_pretrain.py`` groups with timm's ``add_weight_decay`` and no skip list: only 1-D
    #: parameters and biases are exempt, so the [class] and mask tokens (1, 1, D) are decayed; its
    #: position embeddings are frozen, so in no group.
    weight_decay_exempt = ()

    def __init__(self, model_config: ViTConfig, options: MAEOptions | None = None) -> None:
        super().__init__()
        self.options = options or MAEOptions()
        check_maskable(model_config)
        gh, gw = model_config.grid_size
        num_visible(gh * gw, self.options.mask_ratio)
        self.patch_size = model_config.patch_size
        self.decoder = MAEDecoder(model_config, self.options.decoder_config())

    def initialise(self, model: VisionTransformer) -> None:
        """MAE's own initialisation of an encoder built for it (:func:`~vitkit.models.vit.mae.mae_init_encoder_`)."""
        mae_init_encoder_(model)

    def prepare(self, model: VisionTransformer) -> None:
        """MAE's encoder has fixed sine-cosine position embeddings: learned 1-D tables get those values, frozen."""
        table = getattr(model.pos_embed, "table", None)
        if model.config.posemb == "learned_1d" and table is not None:
            with torch.no_grad():
                table.copy_(mae_sincos_table(model.config.grid_size, model.config.hidden_size,
                                             model.num_prefix_tokens).to(table))
            table.requires_grad_(False)

    def target(self, images: torch.Tensor) -> torch.Tensor:
        patches = patchify(images.float(), self.patch_size)
        return normalise_patches(patches) if self.options.norm_pix_loss else patches

    def run(self, model: VisionTransformer, images: torch.Tensor, *, noise: torch.Tensor | None = None,
            generator: torch.Generator | None = None) -> MAEOutput:
        """Mask, encode the visible patches, decode, score. ``noise`` (B, N) fixes the masks (the
        smallest ``K`` values of each row stay visible), as transformers' ``noise=`` argument does."""
        tokens, grid = model.embed_patches(images)
        batch, num_patches = tokens.shape[:2]
        keep = num_visible(num_patches, self.options.mask_ratio)
        ids_shuffle, ids_restore = shuffle_order(batch, num_patches, tokens.device, generator, noise)
        mask = torch.ones(batch, num_patches, device=tokens.device)
        mask[:, :keep] = 0.0
        mask = torch.gather(mask, 1, ids_restore)
        latent = model.encode_tokens(tokens, grid, keep=ids_shuffle[:, :keep]).tokens
        pred = self.decoder(latent, ids_restore, grid)
        target = self.target(images)
        return MAEOutput(masked_patch_loss(pred, target, mask), pred, target, mask, ids_restore, latent)

    def forward(self, model: VisionTransformer, images: torch.Tensor, labels: torch.Tensor, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return self.run(model, images, generator=generator).loss

    @torch.no_grad()
    def evaluate(self, model: VisionTransformer, dataset, *, batch_size: int, device: torch.device,
                 num_workers: int = 0, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
        """Mean reconstruction loss over the masked patches of the test images, with the same
        (seeded) masks at every evaluation so that the numbers compare across a run."""
        was_training = model.training, self.training
        model.eval()
        self.eval()
        generator = torch.Generator().manual_seed(0)
        total, count = 0.0, 0
        for images, _ in eval_batches(model, dataset, batch_size=batch_size, device=device, num_workers=num_workers):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp_dtype is not None):
                loss = self.run(model, images, generator=generator).loss
            total += float(loss.float().sum())
            count += loss.shape[0]
        model.train(was_training[0])
        self.train(was_training[1])
        if not count:
            raise VitkitError("no test image could be read")
        return {"loss": total / count}

    def describe(self, metrics: dict[str, float]) -> str:
        pixels = "normalised pixels" if self.options.norm_pix_loss else "pixels"
        return f"test reconstruction loss {metrics['loss']:.4f} (masked patches, {pixels})"

    @torch.no_grad()
    def reconstruct(self, model: VisionTransformer, images: torch.Tensor, *,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstructed images in the model's input space (B, C, H, W), mask (B, N), loss (B,)). With
        ``norm_pix_loss`` the predictions are per-patch normalised: they are shown with each patch's
        true mean and standard deviation put back, as MAE's visualisations of such models do."""
        out = self.run(model, images, generator=generator)
        pred = out.pred.float()
        if self.options.norm_pix_loss:
            patches = patchify(images.float(), self.patch_size)
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + NORM_PIX_EPS) ** 0.5
            pred = pred * std + mean
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        return unpatchify(pred, self.patch_size, grid, images.shape[1]), out.mask, out.loss

