"""Training runs of ``vitkit reproduce`` several at a time, each in a process of its own.

Why: the miniatures are too small to use two CPU threads well. Measured on this project's 2-core AVX2
machine, 300 steps of the 7x7-grid ViT (ViT(32, 3, 2), batch 64) took 19.9 s in one process with two torch
threads, 17.3 s with one thread, and 18.1 s and 18.6 s as two one-thread processes side by side: two runs at
once in about the time of one. So the lab trains the independent runs of a claim (its seeds, its arms) in a
pool of ``jobs`` worker processes with ``threads // jobs`` torch threads each, and lays out the work from
threads of the main process, each of which waits on its run's process (:meth:`RunPool.map`).

A run in a worker is the same :func:`vitkit.train.train` call the main process would make (the same
:class:`~vitkit.train.TrainConfig`, its seed and its run folder), so a run is reused across ``--jobs``
settings; only the floating-point sums of one torch thread against two differ. Torch's global random state
and the training loop's signal handlers are per process, which is why the workers are processes: two runs in
threads of one process would draw from one generator. The pool is ``concurrent.futures``' (spawned, so a
worker starts clean of the parent's threads); its workers may start data-loading processes of their own.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def default_jobs(device: torch.device) -> int:
    """One job per CPU torch uses (its threads, at most the cores this process may use) when training on the CPU;
    one on an accelerator."""
    if device.type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, torch.get_num_threads()))


def _start_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    # A stop reaches a worker from the parent (RunPool.stop: SIGTERM, which a training run turns into a saved
    # state); Ctrl-C at a terminal signals the whole process group, and an idle worker should not die of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_cpu_seconds() -> float:
    """CPU time of this process and its finished children (data-loading workers), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _train_in_worker(config: Any, resume: bool) -> float:
    """Train in a worker; returns the CPU seconds it took there (the parent's clock does not see a live worker)."""
    from vitkit.train import train

    began = process_cpu_seconds()
    train(config, resume=resume, progress=False)
    return process_cpu_seconds() - began


class RunPool:
    """``jobs`` training runs at a time (see the module notes); ``jobs == 1`` trains in this process."""

    def __init__(self, jobs: int, threads: int) -> None:
        self.jobs = jobs
        #: CPU seconds of the runs trained in workers (see :func:`process_cpu_seconds`)
        self.worker_cpu_seconds = 0.0
        self._lock = threading.Lock()
        self._stopped = False
        self._processes: ProcessPoolExecutor | None = None
        if jobs > 1:
            self._processes = ProcessPoolExecutor(
                max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                initargs=(max(1, threads // jobs),))

    def train(self, config: Any, *, resume: bool, progress: bool) -> None:
        """Run :func:`vitkit.train.train` on ``config``, in a worker when there are several."""
        if self._stopped:
            raise RuntimeError("the lab is stopping: no new run starts")
        if self._processes is None:
            from vitkit.train import train

            train(config, resume=resume, progress=progress)
        else:
            seconds = self._processes.submit(_train_in_worker, config, resume).result()
            with self._lock:
                self.worker_cpu_seconds += seconds

    def map(self, work: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[work(item) for item in items]``, up to ``jobs`` items at a time (in threads of this process, whose
        training runs go to the workers); the results in the items' order. The first failure (or a stop signal
        here) stops every run in the workers (:meth:`stop`) and is raised at once."""
        items = list(items)
        if self._processes is None or len(items) < 2:
            return [work(item) for item in items]
        threads = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            futures = [threads.submit(work, item) for item in items]
            for future in as_completed(futures):
                future.result()
            return [future.result() for future in futures]
        except BaseException:
            self.stop()
            raise
        finally:
            threads.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        """Start no more runs and stop the running ones: SIGTERM to each worker, which a training run answers by
        saving its state (so the same ``--out`` resumes it) and an idle worker by exiting."""
        self._stopped = True
        if self._processes is not None:
            # concurrent.futures gives no public handle on its processes; the pool's own map of them is read
            for process in list(getattr(self._processes, "_processes", {}).values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
            self._processes.shutdown(wait=False, cancel_futures=True)
            self._processes = None

    def close(self) -> None:
        if self._processes is not None:
            self._processes.shutdown(wait=True, cancel_futures=True)
            self._processes = None
