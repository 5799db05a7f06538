"""Checkpoint dialects: one module per format, each mapping its names onto vitkit's model, and one
record per dialect (:mod:`vitkit.checkpoints.dialect`) registered by its family's folder."""

# ruff: noqa: I001 -- registration order is the order formats are listed in: vitkit's own first, then each family's
from vitkit.checkpoints import native  # noqa: F401
from vitkit.checkpoints import vit  # noqa: F401
from vitkit.checkpoints import deit  # noqa: F401
from vitkit.checkpoints import swin  # noqa: F401
from vitkit.checkpoints import dinov2  # noqa: F401
