"""What Linux says about the CPU (``/proc/cpuinfo``): its model name and its feature flags.

Read in one place for the records that name the machine a number was measured on (the benchmarks, the
accuracy ledger, the demo: two machines of one kind give the same floating-point sums, hence the same trained
weights, only on the same CPU) and for ``--precision``'s bf16 check (:mod:`vitkit.train.precision`). Elsewhere
(macOS, Windows) the file is not there: :func:`cpu_model` and :func:`cpu_flags` return None, and
:func:`cpu_name` falls back to what :mod:`platform` knows.
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def _field(name: str, cpuinfo: str | Path) -> str | None:
    """The value of the first ``name : value`` line of ``cpuinfo`` (the first CPU's), None if none or no file."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() == name:
            return value.strip()
    return None


def cpu_model(cpuinfo: str | Path = CPUINFO) -> str | None:
    """The CPU's model name (e.g. ``AMD EPYC``), None where Linux does not say."""
    return _field("model name", cpuinfo)


def cpu_name() -> str:
    """:func:`cpu_model`, else what :mod:`platform` knows (a name for a table's caption, never empty)."""
    return cpu_model() or platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str | Path = CPUINFO) -> set[str] | None:
    """The CPU's feature flags (``avx2``, ``avx512_bf16``, ...), None where Linux does not list them."""
    flags = _field("flags", cpuinfo)
    return None if flags is None else set(flags.split())
