"""The DINOv2 family (config, model, record), registered here."""

from vitkit.models.dinov2.family import FAMILY
from vitkit.models.registry import register_family

register_family(FAMILY)
