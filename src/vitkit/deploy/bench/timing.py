"""Clocks, interleaved repeats and peak memory: the measuring half of ``vitkit bench``.

Interleaving is what makes a comparison fair on a machine that is doing other things: every
round runs each contender once, in turn, so a burst of outside load slows all of them alike,
and the median over rounds is compared. On a GPU the time of one call comes from CUDA events
around it (after a synchronisation), on a CPU from ``time.perf_counter``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

Thunk = Callable[[], object]


class Clock:
    """Seconds taken by one call of a thunk on ``device`` (CUDA events on a GPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def time(self, fn: Thunk) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.sync()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def interleaved(contenders: dict[str, Thunk], clock: Clock, *, repeats: int, warmup: int = 1,
                progress: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Seconds per call of every contender over ``repeats`` rounds, each round running all of them in turn."""
    for name, fn in contenders.items():
        for _ in range(warmup):
            if progress:
                progress(f"warm-up: {name}")
            fn()
        clock.sync()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(repeats):
        if progress:
            progress(f"round {i + 1}/{repeats}")
        for name, fn in contenders.items():
            times[name].append(clock.time(fn))
    return times


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between the order statistics."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(seconds: list[float]) -> dict[str, float]:
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "n": len(seconds)}


# ------------------------------------------------------------------------------- memory
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current one."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def _return_freed_memory() -> None:
    """glibc keeps freed memory and raises its mmap threshold as large blocks come and go, so a
    repeated call would find its memory already resident and show no growth. Fix the threshold
    (blocks over 256 KiB are mapped and unmapped, i.e. given back on free) and trim the heap.
    Once set, the threshold stays fixed for the process: measure memory after the timings."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: measure as it is
        pass


def peak_memory_mib(fn: Thunk, device: torch.device) -> float | None:
    """Memory one call of ``fn`` needs beyond what was already held, in MiB (None if unmeasurable).

    GPU: the peak of allocated memory during the call minus the allocation before it. CPU (Linux):
    the peak resident set size during the call minus the resident size before it, read from
    ``/proc/self/status`` after resetting the peak with ``/proc/self/clear_refs`` (and after
    :func:`_return_freed_memory`, so that memory freed by earlier calls does not hide the growth).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    _return_freed_memory()
    if os.name != "posix" or not _reset_peak_rss():
        return None
    before = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(peak - before, 0) / 1024
