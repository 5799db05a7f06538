"""Stop signals: a run ends cleanly on SIGINT, SIGTERM and SIGHUP (issue 29, item 1; docs/reliability.md).

Ctrl-C sends SIGINT; a scheduler, ``timeout``, systemd or a cluster's preemption sends SIGTERM;
closing the terminal sends SIGHUP. Python reacts to the first only (``KeyboardInterrupt``), and
not at all when the process inherited SIGINT as ignored (a job started in the background of a
script). While :class:`StopSignals` is installed, vitkit's own handlers take all three, so a
command behaves the same whatever dispositions it inherited:

- ``StopSignals()`` (the CLI, around every command) raises :class:`Interrupted` where the program
  is, as Python raises ``KeyboardInterrupt`` on Ctrl-C; files are written atomically, so none is
  left half-written.
- ``StopSignals(defer=True)`` (the training loop) only records the first signal: the loop reads
  it with :meth:`StopSignals.take` between two steps, writes a checkpoint at that step and stops.
  A second signal raises at once, for a user who will not wait for the step to end.

The previous handlers are restored on leaving; a recorded signal nobody took (it came after the
last step) is then raised again, so the disposition the caller had decides what it does. One
exception to "whatever was inherited": a SIGHUP ignored on entry stays ignored, because that is
what ``nohup`` asks for (keep running when the terminal goes away).

The exit status of a command stopped by signal N is the shell's 128 + N: 130 (SIGINT), 143
(SIGTERM), 129 (SIGHUP) (:func:`exit_status`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

#: the signals that stop a run, and the word a message uses for each
STOP_SIGNALS: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
if hasattr(signal, "SIGHUP"):  # POSIX only
    STOP_SIGNALS[signal.SIGHUP] = "hung up"


def signal_name(signum: int) -> str:
    """``15`` -> ``"SIGTERM"``."""
    return signal.Signals(signum).name


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived (a ``KeyboardInterrupt``, so code that handles Ctrl-C handles it too).

    ``signum`` is the signal; None when it is not known (a plain Ctrl-C becomes SIGINT).
    """

    def __init__(self, message: str = "", signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum


def stop_signal_of(exc: BaseException) -> int:
    """The signal behind an interruption: its own, else that of the interruption it was raised while
    handling (``raise Interrupted(...) from None`` keeps it as ``__context__``), else SIGINT."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Interrupted) and seen.signum is not None:
            return seen.signum
        seen = seen.__context__
    return int(signal.SIGINT)


def exit_status(exc: BaseException) -> int:
    """The exit status of a command stopped by ``exc``: 128 + the signal number, as a shell reports it."""
    return 128 + stop_signal_of(exc)


class StopSignals:
    """vitkit's handlers for :data:`STOP_SIGNALS` while installed (``with StopSignals(...) as signals:``).

    Installed only in the main thread (the only one Python delivers signals to); elsewhere it is inert.
    """

    def __init__(self, *, defer: bool = False) -> None:
        self.defer = defer
        #: the first signal received while deferring, until :meth:`take` hands it over
        self.received: int | None = None
        self._taken = False
        self._previous: dict[int, Any] = {}
        #: a signal that arrived while a checkpoint was being written (see :meth:`holding`)
        self._held: int | None = None
        self._holding = 0

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in STOP_SIGNALS:
            if signum == getattr(signal, "SIGHUP", None) and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # nohup: a hangup was meant not to stop this process
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        pending = self.received if not self._taken else None
        self.received, self._taken = None, False
        if pending is not None and kind is None:
            signal.raise_signal(pending)  # not swallowed: what the caller's disposition says happens now

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.defer and self.received is None:
            self.received = signum
            return
        if self._holding:
            self._held = self._held or signum
            return
        raise Interrupted(signum=signum)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """While a checkpoint's files are written (model, weight average, state): a signal that would
        stop at once is kept and takes effect as soon as they are all on disk, so the checkpoint, its
        ``state.pt`` and ``summary.json`` always describe one step."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if not self._holding and self._held is not None:
            signum, self._held = self._held, None
            raise Interrupted(signum=signum)

    def take(self) -> int | None:
        """The signal received since installing (None: none yet); from now on the caller acts on it."""
        if self.received is not None:
            self._taken = True
        return self.received
