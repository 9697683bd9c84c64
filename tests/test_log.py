"""resin._log.observe: a GUI follows the library's progress bars and can stop the work."""

from __future__ import annotations

import threading

import pytest

from resin import _log


def _work(steps: int) -> int:
    with _log.progress(steps, "work", unit="steps") as bar:
        for _ in range(steps):
            bar.advance(1)
    return steps


def test_observer_sees_every_step_of_bars_started_in_its_thread():
    seen: list[tuple[float, float, str]] = []
    with _log.observe(lambda bar: seen.append((bar.done, bar.total, bar.unit))):
        _work(3)
    assert seen == [(0, 3, "steps"), (1, 3, "steps"), (2, 3, "steps"), (3, 3, "steps")]
    _work(2)  # outside the block: not observed
    assert len(seen) == 4


def test_other_threads_are_not_observed():
    seen: list[float] = []
    with _log.observe(lambda bar: seen.append(bar.done)):
        t = threading.Thread(target=_work, args=(5,))
        t.start()
        t.join()
    assert seen == []


def test_an_exception_from_the_observer_stops_the_work():
    class Stop(Exception):
        pass

    def stop_at_two(bar: _log.Progress) -> None:
        if bar.done >= 2:
            raise Stop

    with _log.observe(stop_at_two), pytest.raises(Stop):
        _work(10)
    assert _work(1) == 1  # the observer is gone after the block
