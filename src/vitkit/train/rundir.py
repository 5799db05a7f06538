"""A run directory: the resolved configuration, metrics (CSV and TensorBoard), checkpoints.

    RUN_DIR/
      config.yaml      every option of the run; ``--config RUN_DIR/config.yaml`` repeats it
      metrics.csv      one row per logged value: step, epoch, metric, value, seconds since start
      events/          TensorBoard event files (``tensorboard --logdir RUN_DIR``)
      model/           the latest weights as a native checkpoint (``vitkit eval RUN_DIR/model``)
      model_ema/       the weight average (fine-tuning with EMA on)
      state.pt         the resumable training state (``--resume RUN_DIR``)
      summary.json     the closing summary (final metrics, timings, skipped images); a run that did not
                       finish says so (finished: false, the step of its checkpoint, the reason)
      .vitkit.lock     present while a run writes the directory (see :class:`RunLock`)

Runs never clobber each other (:func:`claim_run_directory`, called before any data is read): a
run directory is locked while a run writes it, so a second ``train``/``finetune`` into it fails at
once naming the process that holds it (a lock left by a killed process is taken over); a fresh
run refuses a directory that holds a run with a checkpoint (continue it with ``--resume``) or
that is not a run directory at all; a run that stopped before its first checkpoint is cleared
rather than appended to; and temporary files a killed process left behind are swept.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

try:  # POSIX advisory locks; elsewhere (Windows) run directories are not locked
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None

import yaml

from vitkit.atomic import atomic_path, write_text_atomic
from vitkit.checkpoints.runs import CONFIG_FILE, EMA_DIR, MODEL_DIR
from vitkit.errors import VitkitError
from vitkit.files import require_regular_file
from vitkit.train.recipes import TrainConfig

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
EVENTS_DIR = "events"
METRIC_FIELDS = ("step", "epoch", "metric", "value", "time_s")
LOCK_FILE = ".vitkit.lock"
#: what a run writes into its directory, besides the lock and the state file
RUN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, EVENTS_DIR, MODEL_DIR, EMA_DIR)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The option mapping of a YAML file written by :meth:`RunDir.write_config` (or by hand)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    require_regular_file(path, "config file")
    try:
        data = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise VitkitError(f"{path}: not a text file of YAML options") from None
    except yaml.YAMLError as exc:
        raise VitkitError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise VitkitError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    return data


class RunDir:
    """Writes a run's files. ``resume_step`` drops metrics logged after that step by an earlier,
    interrupted attempt, so that a resumed run's logs read as one uninterrupted run, and removes the
    earlier attempt's ``summary.json`` (it describes a step the run is now moving past; the loop writes
    a new one however this attempt ends, and a killed attempt leaves none rather than a stale one)."""

    def __init__(self, path: str | os.PathLike, *, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.start = time.perf_counter()
        self.time_offset = 0.0
        if resume_step is not None:
            self.time_offset = self._truncate_metrics(resume_step)
            (self.path / SUMMARY_FILE).unlink(missing_ok=True)
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._writer = SummaryWriter(str(self.path / EVENTS_DIR), purge_step=purge)

    # ------------------------------------------------------------------ paths
    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def ema_dir(self) -> Path:
        return self.path / EMA_DIR

    @property
    def state_path(self) -> Path:
        from vitkit.train.checkpoint import STATE_FILE

        return self.path / STATE_FILE

    # --------------------------------------------------------------- writing
    def write_config(self, config: TrainConfig) -> Path:
        text = yaml.safe_dump(config.to_dict(), sort_keys=False)
        write_text_atomic(self.path / CONFIG_FILE, text)
        return self.path / CONFIG_FILE

    def log(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        """Append ``metrics`` at ``step`` to the CSV and the TensorBoard events."""
        elapsed = round(self.time_offset + time.perf_counter() - self.start, 3)
        path = self.path / METRICS_FILE
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(METRIC_FIELDS)
            for name, value in metrics.items():
                writer.writerow([step, round(epoch, 4), name, f"{float(value):.6g}", elapsed])
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(name, float(value), step)

    def write_summary(self, summary: dict[str, Any]) -> Path:
        write_text_atomic(self.path / SUMMARY_FILE, json.dumps(summary, indent=2, default=str) + "\n")
        return self.path / SUMMARY_FILE

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # --------------------------------------------------------------- resume
    def _truncate_metrics(self, step: int) -> float:
        """Drop CSV rows after ``step``; return the elapsed time of the last row kept."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return 0.0
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        kept = [r for r in rows if int(r["step"]) <= step]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
        return float(kept[-1]["time_s"]) if kept else 0.0


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed (``path``: the run or the file)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    with open(path, newline="") as handle:
        return [{"step": int(r["step"]), "epoch": float(r["epoch"]), "metric": r["metric"],
                 "value": float(r["value"]), "time_s": float(r["time_s"])} for r in csv.DictReader(handle)]


# ------------------------------------------------------------------------ claiming a directory
class RunDirectoryBusy(VitkitError):
    """Another live process is writing this run directory."""


def _is_temporary(name: str) -> bool:
    """What :func:`vitkit.atomic.atomic_path` (a file) and :func:`vitkit.atomic.atomic_directory` (a
    checkpoint folder) write before renaming into place: ``.<name>.<random>.tmp``."""
    return name.startswith(".") and name.endswith(".tmp")


class RunLock:
    """An exclusive claim on a run directory: ``fcntl.flock`` on ``RUN/.vitkit.lock``.

    The kernel drops the lock when its process ends, however it ends, so a lock left behind by a
    killed run is simply taken over (:attr:`stale` then describes the process that left it); the
    file itself records who holds it, for the message a second run gets. The file is removed on
    :meth:`release` (after checking it is still the locked one, so a run that opened the file just
    before it was removed cannot believe it holds a lock).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.file = self.path / LOCK_FILE
        self.stale: str | None = None
        self._fd: int | None = None
        self._created = False

    def acquire(self, command: str) -> RunLock:
        if self.path.exists() and not self.path.is_dir():
            raise VitkitError(f"{self.path}: is a file, not a run directory; choose another --out")
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        while True:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe_holder(os.read(fd, 4096))
                os.close(fd)
                raise RunDirectoryBusy(f"{self.path} is in use by {holder}; wait for that run to end or choose "
                                       f"another --out") from None
            try:  # the holder may have removed the file between our open() and our flock()
                current = os.stat(self.file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        left = os.read(fd, 4096)
        self.stale = _describe_holder(left) if left.strip() else None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock and its file; remove the directory again if this claim created it and
        nothing was written there."""
        if self._fd is not None:
            try:
                self.file.unlink(missing_ok=True)
            finally:
                os.close(self._fd)
                self._fd = None
        if self._created:
            with contextlib.suppress(OSError):  # not empty: something was written, keep it
                self.path.rmdir()
            self._created = False


def _describe_holder(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode())
        return (f"process {info['pid']} on {info['host']} (vitkit {info['command']}, started {info['started']})")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "another process"


def sweep_temporary_files(path: str | os.PathLike) -> list[Path]:
    """Remove what an interrupted atomic write (a killed process) left in a run directory and its
    model directories; only call this while holding the directory's :class:`RunLock`."""
    path = Path(path)
    removed = []
    for folder in (path, path / MODEL_DIR, path / EMA_DIR):
        if folder.is_dir():
            for item in folder.iterdir():
                if not _is_temporary(item.name) or item.is_symlink():
                    continue
                if item.is_file():
                    item.unlink(missing_ok=True)
                elif item.is_dir():  # a checkpoint folder a killed save left half-written beside the real one
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    continue
                removed.append(item)
    return removed


def claim_run_directory(path: str | os.PathLike, *, resume: bool, command: str) -> tuple[RunLock, list[str]]:
    """Lock ``path`` for a run of the command ``command`` (train, finetune) and check that the run may write there.

    Returns the held lock and lines worth telling the user (a stale lock taken over, an aborted
    run cleared, temporary files swept). Refuses, releasing the lock: a file; with ``resume``, a
    directory without a checkpoint; without it, a run that has a checkpoint (``--resume`` it) and
    a non-empty directory that is not a run directory.
    """
    from vitkit.train.checkpoint import STATE_FILE

    lock = RunLock(path).acquire(command)
    notes = [f"{path}: took over the lock left by {lock.stale}, which is no longer running"] if lock.stale else []
    try:
        path = Path(path)
        entries = [p.name for p in path.iterdir() if p.name != LOCK_FILE and not _is_temporary(p.name)]
        if resume:
            if STATE_FILE not in entries:
                raise VitkitError(f"{path}: no checkpoint to resume from (the run saved none); start it again "
                                  f"without --resume")
        elif STATE_FILE in entries:
            raise VitkitError(f"{path} already holds a run; continue it with `vitkit {command} --resume {path}` "
                              f"or choose another --out")
        elif CONFIG_FILE in entries:  # a run stopped before its first checkpoint: start it over, do not append
            for name in RUN_FILES:
                target = path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
            notes.append(f"{path}: cleared an earlier run that stopped before its first checkpoint")
        elif entries:
            shown = ", ".join(sorted(entries)[:3]) + (" ..." if len(entries) > 3 else "")
            raise VitkitError(f"{path}: not empty ({shown}) and not a vitkit run directory; choose a new or empty "
                              f"--out")
        swept = sweep_temporary_files(path)
        if swept:
            notes.append(f"{path}: removed {len(swept)} temporary file(s) left by an interrupted write")
    except BaseException:
        lock.release()
        raise
    return lock, notes
