"""The machine's own matrix-multiplication peak: the yardstick for "achieved GFLOP/s".

A ViT spends nearly all its FLOPs in matrix multiplications (the linear layers and the two
attention products; see :mod:`vitkit.models.flops`), so the fair ceiling is what this machine's
BLAS (MKL / oneDNN on a CPU, cuBLAS on a GPU) reaches on one large square product in the
precision the model runs in, with the same thread count. ``vitkit bench`` runs this product as
one more contender in its interleaved rounds, so that peak and model are measured under the
same outside load.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def default_matmul_size(device: torch.device) -> int:
    """Large enough to run near peak, small enough to take well under a second: 2048 on a CPU, 8192 on a GPU."""
    return 8192 if torch.device(device).type == "cuda" else 2048


def matmul_contender(device: torch.device, dtype: torch.dtype = torch.float32,
                     size: int | None = None) -> tuple[Callable[[], object], float]:
    """(a thunk computing one ``size`` x ``size`` product, its FLOPs: 2 n^3)."""
    device = torch.device(device)
    n = size or default_matmul_size(device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    def product() -> torch.Tensor:
        return torch.mm(a, b, out=out)

    return product, 2.0 * n**3


def matmul_peak(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *, size: int | None = None,
                repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` products on its own (outside any interleaving)."""
    from vitkit.deploy.bench.timing import Clock

    product, flops = matmul_contender(torch.device(device), dtype, size)
    clock = Clock(torch.device(device))
    product()
    clock.sync()
    best = min(clock.time(product) for _ in range(repeats))
    return flops / best / 1e9
