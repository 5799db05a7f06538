"""The BiT ResNet-v2 family (the ViT paper's CNN baselines), registered here."""

from vitkit.models.bit.family import FAMILY
from vitkit.models.registry import register_family

register_family(FAMILY)
