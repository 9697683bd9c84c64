"""Logging and progress for the library and its CLIs.

Library code calls :func:`log`, :func:`debug` and :func:`progress` and never prints: lines
go to the standard ``logging`` logger ``"resin"`` (an application embedding resin sets its
level and handlers the usual way), and progress reaches a callback (:func:`observe`, or the
``progress=`` argument of ``Enhancer.run``). The CLIs call :func:`configure` once, which
attaches a stderr handler and turns on the bars: a rich bar on a TTY, a plain line every
~10 s otherwise, nothing with ``--quiet``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_state = {"quiet": False, "debug": False, "console": False}
_observers = threading.local()
logger = logging.getLogger("resin")


class _ConsoleHandler(logging.StreamHandler):
    """The CLIs' handler: the message alone on stderr (``[debug]`` before debug lines)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # follow a redirected stderr (tests, GUIs)
        super().emit(record)

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"[debug] {text}" if record.levelno < logging.INFO else text


def configure(quiet: bool = False, debug: bool = False) -> None:
    """For command-line programs: log lines and progress bars on stderr."""
    _state.update(quiet=quiet, debug=debug, console=True)
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
    logger.propagate = False
    logger.setLevel(logging.DEBUG if debug else logging.ERROR if quiet else logging.INFO)


def is_quiet() -> bool:
    return bool(_state["quiet"])


def is_debug() -> bool:
    return bool(_state["debug"])


def shows_info() -> bool:
    """Whether a :func:`log` line reaches anyone (False under ``--quiet``, or where the
    embedding application leaves the ``resin`` logger above INFO): work done only to
    compose such a line can be skipped."""
    return logger.isEnabledFor(logging.INFO)


def log(message: str) -> None:
    """One informational line (INFO on the ``resin`` logger)."""
    logger.info(message)


def warn(message: str) -> None:
    """A line the user should see even when embedding resin (WARNING on ``resin``)."""
    logger.warning(message)


def debug(message: str) -> None:
    logger.debug(message)


@dataclass
class Progress:
    """Handle returned by :func:`progress`; call :meth:`advance` with units done."""

    total: float
    unit: str
    description: str
    done: float = 0.0
    _advance: object = None
    _retotal: object = None
    _observer: Callable[[Progress], None] | None = None
    _start: float = field(default_factory=time.perf_counter)

    def set_total(self, total: float) -> None:
        """Change the amount of work (e.g. once a run has fitted its steps to a time cap)."""
        self.total = total
        if callable(self._retotal):
            self._retotal(total)
        if self._observer is not None:
            self._observer(self)

    def advance(self, n: float = 1.0) -> None:
        self.done += n
        if callable(self._advance):
            self._advance(n)
        if self._observer is not None:
            self._observer(self)

    @property
    def seconds(self) -> float:
        """Time since the bar started."""
        return time.perf_counter() - self._start

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0


@contextmanager
def observe(callback: Callable[[Progress], None]) -> Iterator[None]:
    """Call ``callback(bar)`` when a bar that this thread starts inside the block starts or moves.

    For a GUI that runs the work in a thread and shows its own bar. The callback runs in the
    working thread; an exception it raises stops the work where the bar moved, as Ctrl-C
    would (a file run keeps its partial output for resuming).
    """
    previous = getattr(_observers, "callback", None)
    _observers.callback = callback
    try:
        yield
    finally:
        _observers.callback = previous


@contextmanager
def progress(total: float, description: str, unit: str = "voxels") -> Iterator[Progress]:
    """A progress bar (rate + ETA) on a TTY; plain lines every ~10 s otherwise; quiet: nothing."""
    handle = Progress(total=total, unit=unit, description=description,
                      _observer=getattr(_observers, "callback", None))
    if handle._observer is not None:
        handle._observer(handle)
    if _state["quiet"] or not _state["console"]:
        yield handle
        return
    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with RichProgress(*columns, transient=False) as bar:
            task = bar.add_task(description, total=total, rate="")

            def _advance(n: float) -> None:
                bar.update(task, advance=n, rate=f"{_si(handle.rate)} {unit}/s")

            handle._advance = _advance
            handle._retotal = lambda t: bar.update(task, total=t)
            yield handle
        return

    last = [time.perf_counter()]

    def _plain(n: float) -> None:
        now = time.perf_counter()
        if now - last[0] >= 10.0 or handle.done >= handle.total:
            last[0] = now
            pct = 100.0 * handle.done / handle.total if handle.total else 100.0
            rate = handle.rate
            eta = (handle.total - handle.done) / rate if rate > 0 else float("nan")
            log(f"{description}: {pct:5.1f}%  {_si(rate)} {unit}/s  ETA {eta:6.0f} s")

    handle._advance = _plain
    log(f"{description}: started ({_si(total)} {unit})")
    yield handle
    log(f"{description}: done in {time.perf_counter() - handle._start:.1f} s ({_si(handle.rate)} {unit}/s)")


def count(n: int, noun: str) -> str:
    """``'1 block'``, ``'6 blocks'`` (English plurals by an added s)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def duration(seconds: float) -> str:
    """``'12 s'``, ``'7 min'``, ``'1.5 h'``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.1f}"
