"""Token merging: "Token Merging: Your ViT but Faster" (Bolya et al., ICLR 2023), for inference.

ToMe shortens the sequence inside every encoder layer instead of pruning it: between the
attention and the MLP of each block (§3, Fig. 1) it merges the ``r`` most similar pairs of
tokens, so an L-layer model ends with ``rL`` fewer tokens and every later layer is cheaper.

* Bipartite soft matching (§3, "Token Merging"): the tokens are split alternately into two
  sets A and B; each A token's most similar B token is found by cosine similarity of the
  attention keys averaged over heads (the paper's "key" metric, Table 1a); the ``r`` A tokens
  with the best matches are merged into their B partners, the rest are kept.
* Merging averages the tokens weighted by their size (how many patches each stands for), and
  the sizes add up, so the sizes of the output always sum to the original token count.
* Proportional attention (eq. 1): softmax(QK^T / sqrt(d) + log s) -- a merged token is
  attended to as often as the patches it stands for. ``log s`` is an additive bias, which
  :meth:`vitkit.models.layers.Attention.attend` takes as it is.
* The prefix tokens are never merged: they take no part in the matching. How many there are is the
  model's ``num_prefix_tokens`` -- ViT's [class] token, DeiT's [class] and distillation tokens,
  DINOv2's [class] token and registers -- and they stay in front, in order, so each family's own
  head reads them as it does without merging (DeiT averages its two heads).

:class:`TokenMerging` wraps a :class:`~vitkit.models.vit.model.VisionTransformer` or a family built on
it (DeiT, DINOv2) and shares its weights; its blocks' own residual sums (DINOv2's LayerScale included)
are used. With ``r = 0`` it runs exactly the plain model's operations (same logits, bit for bit).
Written here rather than taken from the authors' package (facebookresearch/ToMe, which patches
timm's classes) because it has to work on vitkit's own blocks and is a few dozen lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from vitkit.errors import VitkitError
from vitkit.models.vit.model import Block, VisionTransformer


class Matching(NamedTuple):
    """One layer's merge decision over the non-prefix tokens (B, T): indices into set A (even
    positions) and set B (odd positions)."""

    kept: torch.Tensor  # (B, Ta - r): A tokens that stay, in their original order
    merged: torch.Tensor  # (B, r): A tokens merged away
    into: torch.Tensor  # (B, r): the B token each of them is merged into


def bipartite_soft_matching(metric: torch.Tensor, r: int) -> Matching:
    """ToMe's matching on ``metric`` (B, T, C): the ``r`` A tokens most similar to some B token."""
    metric = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    a, b = metric[:, ::2], metric[:, 1::2]
    best, partner = (a @ b.transpose(-1, -2)).max(dim=-1)  # (B, Ta): each A token's best B token
    order = best.argsort(dim=-1, descending=True)
    merged = order[:, :r]
    kept = order[:, r:].sort(dim=-1).values
    return Matching(kept, merged, partner.gather(1, merged))


def merge_tokens(x: torch.Tensor, match: Matching) -> torch.Tensor:
    """Apply a :class:`Matching` to ``x`` (B, T, C) with a sum: (B, T - r, C), kept A tokens then B."""
    channels = x.shape[-1]
    a, b = x[:, ::2], x[:, 1::2]

    def take(index: torch.Tensor) -> torch.Tensor:
        return a.gather(1, index.unsqueeze(-1).expand(-1, -1, channels))

    b = b.scatter_add(1, match.into.unsqueeze(-1).expand(-1, -1, channels), take(match.merged))
    return torch.cat([take(match.kept), b], dim=1)


def merge_weighted(x: torch.Tensor, size: torch.Tensor, match: Matching) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average of the merged tokens; sizes add. ``size`` is (B, T, 1)."""
    total = merge_tokens(size, match)
    return merge_tokens(x * size, match) / total, total


def proportional_bias(size: torch.Tensor) -> torch.Tensor:
    """Proportional attention (ToMe eq. 1): log(size) added to every query's logits, (B, T, 1) -> (B, 1, 1, T)."""
    return size.log().transpose(1, 2).unsqueeze(1)


def max_merge(num_tokens: int) -> int:
    """At most every A token can be merged: ceil(T / 2) of T mergeable tokens."""
    return (num_tokens + 1) // 2 if num_tokens > 1 else 0


class MergedOutput(NamedTuple):
    """``tokens``: LN(z_L) over the merged sequence (B, T', D); ``sizes``: patches per token (B, T');
    ``merged``: whether any layer merged (else the sizes are all one)."""

    tokens: torch.Tensor
    sizes: torch.Tensor
    merged: bool


class TokenMerging(nn.Module):
    """A ViT that merges ``r`` tokens in every layer (a list gives one ``r`` per layer).

    Shares the wrapped model's parameters; exposes its ``config``, ``preprocessing`` and
    ``label_names`` so that evaluation and prediction take it in place of the model.
    """

    def __init__(self, model: VisionTransformer, r: int | Sequence[int]) -> None:
        super().__init__()
        if model.config.posemb == "relative":
            raise VitkitError("token merging needs absolute position embeddings: the relative bias (App. D.4) is "
                              "defined between the original patch positions, which merged tokens no longer have")
        schedule = [int(r)] * model.config.depth if isinstance(r, int) else [int(v) for v in r]
        if len(schedule) != model.config.depth or any(v < 0 for v in schedule):
            raise VitkitError(f"--merge needs one non-negative r, or one per layer ({model.config.depth}), got {r!r}")
        self.model = model
        self.schedule = schedule

    @property
    def config(self):
        return self.model.config

    @property
    def preprocessing(self):
        return self.model.preprocessing

    @property
    def label_names(self):
        return self.model.label_names

    def _block(self, block: Block, z: torch.Tensor, size: torch.Tensor | None,
               r: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eq. 2 with proportional attention, the merge, then eq. 3 (ToMe's place: between the two)."""
        attn = block.attn
        q, k, v = attn.project_qkv(block.norm1(z))
        bias = None if size is None else proportional_bias(size)
        out, _ = attn.attend(q, k, v, bias)
        z = block.attention_residual(z, attn.proj_drop(attn.proj(out)))
        prefix = self.model.num_prefix_tokens
        r = min(r, max_merge(z.shape[1] - prefix))
        if r > 0:
            if size is None:
                size = z.new_ones(z.shape[0], z.shape[1], 1)
            match = bipartite_soft_matching(k.mean(dim=1)[:, prefix:], r)
            rest, rest_size = merge_weighted(z[:, prefix:], size[:, prefix:], match)
            z = torch.cat([z[:, :prefix], rest], dim=1)
            size = torch.cat([size[:, :prefix], rest_size], dim=1)
        return block.mlp_residual(z), size

    def encode(self, x: torch.Tensor) -> MergedOutput:
        """Eqs. 1-3 with merging, and the final LayerNorm; z_0 is the model's own (its prefix tokens, its
        position embeddings at the input's grid)."""
        model = self.model
        z = model.pos_drop(model._prepend_and_embed(*model.embed_patches(x)))
        size = None  # all ones until the first merge: the plain model's path exactly
        for block, r in zip(model.blocks, self.schedule, strict=True):
            z, size = self._block(block, z, size, r)
        merged = size is not None
        if size is None:
            size = z.new_ones(z.shape[0], z.shape[1], 1)
        return MergedOutput(model.norm(z), size.squeeze(-1), merged)

    def pool(self, out: MergedOutput) -> torch.Tensor:
        """The model's own pooling of its prefix tokens (the [class] token; DeiT's mean of its two), or for
        GAP the size-weighted mean of the patch tokens (= the plain mean)."""
        model = self.model
        if model.config.classifier == "token":
            return model.pool(out.tokens)
        if not out.merged:
            return model.pool(out.tokens)
        prefix = model.num_prefix_tokens
        tokens, sizes = out.tokens[:, prefix:], out.sizes[:, prefix:]
        mean = (tokens * sizes.unsqueeze(-1)).sum(dim=1) / sizes.sum(dim=1, keepdim=True)
        return model.fc_norm(mean)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits over the merged sequence: its own heads on its prefix tokens, or (GAP) its head
        on the size-weighted mean."""
        out = self.encode(x)
        if self.model.config.classifier == "token":
            return self.model.logits_from_tokens(out.tokens)
        return self.model.forward_head(self.pool(out))


def merge_schedule_tokens(num_tokens: int, prefix: int, schedule: Sequence[int]) -> list[int]:
    """Sequence length entering each layer (and after the last) for a merge schedule."""
    lengths = [num_tokens]
    for r in schedule:
        lengths.append(lengths[-1] - min(r, max_merge(lengths[-1] - prefix)))
    return lengths
