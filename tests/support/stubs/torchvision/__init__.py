"""Test-only stand-in for torchvision, which has no CPU wheel on this project's machines.

timm's model code imports a handful of torchvision names at import time (transforms, the
FrozenBatchNorm2d class, dataset classes) without using them for the ViT and Swin models the
tests build, so every submodule here answers any attribute with an inert placeholder class.
Only tests put this folder on ``sys.path`` (see ``tests/support/timm_reference.py``); vitkit never
imports torchvision or timm.
"""

import enum
import sys
import types


class _Placeholder:
    """Stands for any torchvision class or function timm names but these tests never call."""

    def __init__(self, *args, **kwargs) -> None:
        raise RuntimeError("torchvision is stubbed out in vitkit's tests")


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so that deeper imports resolve through sys.modules
    module.InterpolationMode = InterpolationMode
    module.__getattr__ = lambda attr: _Placeholder if not attr.startswith("__") else (_ for _ in ()).throw(
        AttributeError(attr))
    sys.modules[name] = module
    return module


for _name in ("ops", "ops.misc", "transforms", "transforms.functional", "transforms.v2", "datasets", "models",
              "models.feature_extraction", "utils", "io"):
    _parent, _, _child = f"torchvision.{_name}".rpartition(".")
    setattr(sys.modules[_parent] if _parent in sys.modules else sys.modules[__name__], _child,
            _module(f"torchvision.{_name}"))

__version__ = "0.0.0+stub"
