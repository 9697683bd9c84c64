"""Long work off the GUI thread: a :class:`Job` runs one function in a thread of its own.

The widgets poll a job with a timer (progress, then the result or a one-line message), so
the work never touches Qt and the viewer stays responsive. Stop sets a flag that the work
checks where it can stop cleanly: between tile rows of an in-memory run, at every tile of
a file run (its ``progress`` callback), at every training step (:func:`resin._log.observe`).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resin import _log
from resin.errors import ResinError


class Stopped(Exception):  # noqa: N818 - raised where the user's Stop takes effect
    """The user pressed Stop; raised inside the work where it can stop."""


@dataclass(frozen=True)
class Snapshot:
    """How far a job is: ``done`` of ``total`` units after ``seconds``."""

    done: float
    total: float
    unit: str
    seconds: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before anything is done)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def text(self) -> str:
        """``'42%  0.21 Mvoxel/s  ETA 12 s'``."""
        parts = [f"{100 * self.fraction:.0f}%"]
        if self.rate > 0:
            parts.append(f"{_log._si(self.rate)} {self.unit}/s")
        eta = self.eta
        if eta is not None and self.done < self.total:
            parts.append(f"ETA {_log.duration(eta)}")
        return "  ".join(parts)


class Job:
    """``work(job)`` in a daemon thread; poll :attr:`done`, :attr:`result`, :attr:`error`."""

    def __init__(self, work: Callable[[Job], Any], name: str = "resin") -> None:
        self._work = work
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._t0 = time.perf_counter()
        self.result: Any = None
        #: one line for the widget when the work failed (not when it was stopped)
        self.error: str | None = None
        self.stopped = False
        self._thread = threading.Thread(target=self._main, name=f"{name}-job", daemon=True)

    def start(self) -> Job:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Ask the work to stop at its next check."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Called by the work where it can stop: raises :class:`Stopped` after :meth:`stop`."""
        if self._stop.is_set():
            raise Stopped

    def report(self, done: float, total: float, unit: str) -> None:
        """Progress from the work (any thread); also a place where Stop takes effect."""
        with self._lock:
            self._snapshot = Snapshot(done, total, unit, time.perf_counter() - self._t0)
        self.check()

    def follow(self, bar: _log.Progress) -> None:
        """A :func:`resin._log.observe` callback: the library's own progress bars."""
        with self._lock:
            self._snapshot = Snapshot(bar.done, bar.total, bar.unit, bar.seconds)
        self.check()

    @property
    def snapshot(self) -> Snapshot | None:
        with self._lock:
            return self._snapshot

    def _main(self) -> None:
        try:
            self.result = self._work(self)
        except Stopped:
            self.stopped = True
        except ResinError as exc:
            self.error = str(exc)
        except MemoryError as exc:
            self.error = f"out of memory ({exc}); choose a smaller tile"
        except Exception as exc:  # noqa: BLE001 - shown in the widget, not in a dialog
            traceback.print_exc()
            self.error = f"internal error: {type(exc).__name__}: {exc}"
