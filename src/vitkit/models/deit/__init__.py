"""The DeiT family (Touvron et al. 2021): ViT with the distillation token, registered here."""

from vitkit.models.deit.family import FAMILY
from vitkit.models.registry import register_family

register_family(FAMILY)
