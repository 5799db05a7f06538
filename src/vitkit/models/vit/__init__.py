"""The Vision Transformer family (config, model, hybrid stem, MAE decoder), registered here."""

from vitkit.models.registry import register_family
from vitkit.models.vit.family import FAMILY

register_family(FAMILY)
