"""The Swin Transformer family, registered here."""

from vitkit.models.registry import register_family
from vitkit.models.swin.family import FAMILY

register_family(FAMILY)
