"""vitkit: the Vision Transformer of "An Image is Worth 16x16 Words" (Dosovitskiy et al., 2021),
and the Swin Transformer (Liu et al., 2021) beside it.

    >>> import vitkit
    >>> model = vitkit.create_model("ViT-B/16", num_classes=10, image_size=384)
    >>> vitkit.list_models("R50")
    ['R50+ViT-B/16', 'R50+ViT-L/32', 'BiT-R50x1', 'BiT-R50x2', 'BiT-R50x3']

(This example runs in the test suite: tests/test_docs_examples.py.)
"""

from vitkit.checkpoints.convert import convert, save_model
from vitkit.checkpoints.detect import detect_format, load_model
from vitkit.checkpoints.native import save_native
from vitkit.data.preprocessing import Preprocessing
from vitkit.errors import VitkitError
from vitkit.models import (
    FeatureExtractor,
    SwinConfig,
    SwinTransformer,
    VisionTransformer,
    create_model,
    list_models,
    resample_patch_posemb,
)
from vitkit.models.flops import count_flops, count_macs
from vitkit.models.registry import get_config
from vitkit.models.vit.config import ViTConfig
from vitkit.version import __version__  # noqa: F401 (vitkit.__version__)

__all__ = [
    "FeatureExtractor",
    "Preprocessing",
    "SwinConfig",
    "SwinTransformer",
    "ViTConfig",
    "VisionTransformer",
    "VitkitError",
    "convert",
    "count_flops",
    "count_macs",
    "create_model",
    "detect_format",
    "get_config",
    "list_models",
    "load_model",
    "resample_patch_posemb",
    "save_model",
    "save_native",
]
