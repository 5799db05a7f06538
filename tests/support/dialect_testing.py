"""What the registry-generated checkpoint tests share: a small model of every family, and every writing
dialect paired with each family it holds (tests/checkpoints/test_dialects.py, test_overwrite_dialects.py)."""

from __future__ import annotations

import pytest
from formats_testing import randomised, tiny

from vitkit import VitkitError, create_model
from vitkit.checkpoints.dialect import registered
from vitkit.models.registry import FAMILIES

#: family -> a small randomised model of it (``num_classes``: 0 for an encoder without a head); a new
#: family adds one line here and every dialect that holds it is round-tripped
TINY = {
    "vit": lambda num_classes: tiny("ViT-Ti/16", depth=1, hidden_size=32, num_heads=2, mlp_dim=64,
                                    num_classes=num_classes),
    "deit": lambda num_classes: tiny("DeiT-Ti/16-distilled", depth=1, hidden_size=32, num_heads=2, mlp_dim=64,
                                     num_classes=num_classes),
    "swin": lambda num_classes: randomised(create_model("Swin-T", image_size=32, embed_dim=16, depths=(2, 2),
                                                        num_heads=(2, 4), window_size=4, num_classes=num_classes)),
    "bit": lambda num_classes: randomised(create_model("BiT-R26x1", image_size=16, layers=(1, 1), base_width=8,
                                                       num_groups=4, num_classes=num_classes)),
    "dinov2": lambda num_classes: randomised(create_model("DINOv2-S/14-reg", image_size=28, depth=1, hidden_size=32,
                                                          num_heads=2, mlp_dim=64, num_classes=num_classes)),
}


def model_for(dialect, family: str):
    """The first small model of ``family`` (with a head, else without) that ``dialect`` can hold."""
    for num_classes in (3, 0):
        model = TINY[family](num_classes)
        try:
            if dialect.check_exportable is not None:
                dialect.check_exportable(model.config)
        except VitkitError:
            continue
        return model
    raise AssertionError(f"no small {family} model fits the {dialect.name} dialect")


#: (record, family) for every writing record and every family it holds; a self-checking export (ONNX,
#: seconds per model) beyond the first family runs with the slow tests
WRITERS = [pytest.param(d, family, id=f"{d.name}-{family}",
                        marks=[pytest.mark.slow] if d.self_checked and i else [])
           for d in registered() if d.save is not None
           for i, family in enumerate([d.family] if d.family else FAMILIES)]
