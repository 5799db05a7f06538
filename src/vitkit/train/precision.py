"""``--precision``: the dtype autocast trains in, and a warning where bf16 would be emulated.

``auto`` is bf16 autocast on a GPU and fp32 on a CPU; ``bf16`` asks for it anywhere. A CPU computes bf16
matrix products natively only with the AVX-512 BF16 or AMX instructions: there, bf16 autocast made an epoch
of ViT-S/16 1.34x cheaper (docs/training.md); on a CPU without them (AVX2 only) PyTorch emulates it, and a
6-block width-128 ViT's training step measured 9x slower than in fp32 on this project's 2-core AVX2 machine
(a 1024 x 1024 matrix product 140x). So ``--precision bf16`` on such a CPU prints one warning line.
"""

from __future__ import annotations

import torch

#: /proc/cpuinfo flags of the instructions that compute bf16 products in hardware
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--precision`` on ``device`` (None: fp32)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def emulated_bf16_warning(precision: str, device: torch.device, flags: set[str] | None) -> str | None:
    """The warning line for bf16 autocast on a CPU whose ``flags`` lack every :data:`BF16_FLAGS` (None: no
    warning, also where the flags are unknown)."""
    if amp_dtype(precision, device) is None or device.type != "cpu" or flags is None:
        return None
    if any(flag in flags for flag in BF16_FLAGS):
        return None
    return ("warning: --precision bf16 on a CPU without avx512_bf16 or amx_bf16: PyTorch emulates bf16 here, "
            "several times slower than fp32 (measured 9x on a training step); --precision fp32 is faster")
