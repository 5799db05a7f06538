"""Position-embedding similarity (Fig. 7 centre, Fig. 10 / App. D.4 of the paper).

For every patch, the cosine similarity between its position embedding and those of all other
patches, laid out on the patch grid: a (rows, cols, rows, cols) array whose [i, j] slice is
the map of patch (i, j). The [class] token's embedding is left out.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics.pairwise import cosine_similarity

from vitkit.errors import VitkitError
from vitkit.inspect.capture import require_attention_kind
from vitkit.models.posemb import sincos_2d
from vitkit.models.vit.model import VisionTransformer

#: Kinds whose tokens get no absolute position embedding: nothing to compare.
WITHOUT_ABSOLUTE = {"none": "the model has no position embedding (posemb='none')",
                    "relative": "the model uses relative position biases in attention (posemb='relative'), "
                                "no absolute position embedding"}


def has_absolute_position_embedding(model: VisionTransformer) -> bool:
    return model.config.posemb not in WITHOUT_ABSOLUTE


@torch.no_grad()
def patch_position_embeddings(model: VisionTransformer, grid: tuple[int, int] | None = None) -> np.ndarray:
    """The position embedding added to each patch, (rows, cols, D), for the model's own grid or
    ``grid`` (learned embeddings are then resampled as the model would at that resolution).

    Raises :class:`~vitkit.errors.VitkitError` for kinds without an absolute embedding.
    """
    require_attention_kind(model, "global", "Position-embedding similarity")
    kind = model.config.posemb
    if kind in WITHOUT_ABSOLUTE:
        raise VitkitError(WITHOUT_ABSOLUTE[kind])
    grid = tuple(grid or model.pos_embed.grid)
    if kind == "sincos_2d":
        patches = sincos_2d(grid, model.config.hidden_size)
    else:  # learned_1d, learned_2d: (1, prefix + rows * cols, D)
        patches = model.pos_embed.embedding(grid)[0, model.num_prefix_tokens:]
    return patches.float().cpu().numpy().reshape(grid[0], grid[1], -1)


def position_similarity(model: VisionTransformer, grid: tuple[int, int] | None = None) -> np.ndarray:
    """Cosine similarity of every patch's position embedding with every other's,
    (rows, cols, rows, cols): ``out[i, j]`` is the map of patch (i, j) (Fig. 7 centre)."""
    embeddings = patch_position_embeddings(model, grid)
    rows, cols, dim = embeddings.shape
    flat = embeddings.reshape(rows * cols, dim)
    return cosine_similarity(flat).reshape(rows, cols, rows, cols)
