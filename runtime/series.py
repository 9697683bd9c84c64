"""Every time point of a time series in one job (``resin-run --time all``,
``Enhancer.run_series``): one output per time point, the engine loaded once.

Everything is checked before the first output is created: each output's name (``{t}`` in
an ``-o`` pattern, or the default ``INPUT_tT_resin.ome.zarr``), that none exists unless
``resume`` / ``overwrite`` says what to do with it, and that ``--mip`` files do not
collide. With ``resume`` an interrupted series continues where it stopped: complete
outputs that this model wrote from the same time point are kept, the unfinished one
resumes block by block, the rest run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resin.runtime.runner import (
    RunProgress,
    RunReport,
    check_mip_dir,
    check_output,
    default_output,
    mip_paths,
)
from resin.runtime.runstate import staging_path

from resin import _log
from resin.errors import OutputExistsError, ResumeError, UsageError

if TYPE_CHECKING:
    from resin.runtime.enhancer import Enhancer

#: what ``-o`` must contain for a series: replaced by each time point (0-based)
TIME_FIELD = "{t}"


@dataclass(frozen=True)
class SeriesItem:
    """One time point's run: ``time`` None for a file that is no time series."""

    time: int | None
    output: str
    #: "run" (start it), "resume" (its unfinished output continues) or "done" (kept)
    action: str


def time_point_count(input_path: str | os.PathLike, channel: int | None = None) -> int:
    """How many time points the file has (1 for a plain volume)."""
    from resin.io import open_volume

    with open_volume(input_path, channel, 0) as reader:
        return int(reader.time_points)


def series_output(input_path: str, output: str | os.PathLike | None, time: int | None,
                  channel: int | None) -> str:
    """Time point ``time``'s output: ``output`` with ``{t}`` replaced, or the default."""
    if output is None:
        return default_output(input_path, channel, time)
    return os.fspath(output).replace(TIME_FIELD, str(0 if time is None else time))


def plan_series(enhancer: Enhancer, input_path: str | os.PathLike,
                output: str | os.PathLike | None = None, *, resume: bool = False,
                overwrite: bool = False, mip: str | os.PathLike | None = None,
                channel: int | None = None) -> list[SeriesItem]:
    """Check a whole series before anything is written (see the module docstring)."""
    input_path = os.fspath(input_path)
    if output is not None and TIME_FIELD not in os.fspath(output):
        raise UsageError(f"-o {output}: a run over every time point writes one output each; "
                         f"put {TIME_FIELD} where the time point goes (e.g. -o "
                         f"out_t{TIME_FIELD}.ome.zarr) or leave -o out for "
                         "INPUT_tT_resin.ome.zarr")
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pass one")
    count = time_point_count(input_path, channel)
    times: list[int | None] = list(range(count)) if count > 1 else [None]
    outputs = [series_output(input_path, output, t, channel) for t in times]
    if not (resume or overwrite):
        stopped = [(t, o) for t, o in zip(times, outputs, strict=True)
                   if Path(staging_path(o)).exists()]
        if stopped:
            t, o = stopped[0]
            raise OutputExistsError(f"{staging_path(o)}: an earlier run stopped at time point "
                                    f"{t}; pass --resume to continue the series there or "
                                    "--overwrite to start over")
    items = []
    for t, out in zip(times, outputs, strict=True):
        action = "run"
        if resume:
            if Path(staging_path(out)).exists():
                action = "resume"
            elif Path(out).exists():
                _check_complete(enhancer, input_path, out, t, channel)
                action = "done"
        if action != "done":  # a single run's checks (input vs output, one in the way)
            check_output(input_path, out, action == "resume", overwrite, channel, t)
        items.append(SeriesItem(t, out, action))
    if mip is not None:
        seen: dict[Path, str] = {}
        for item in items:
            for path in mip_paths(mip, item.output):
                if path in seen:
                    raise UsageError(f"--mip {mip}: the outputs {seen[path]} and {item.output} "
                                     f"would both write {path.name}; give the time point "
                                     f"in the output's file name")
                seen[path] = item.output
            if item.action != "done":
                check_mip_dir(mip, item.output, overwrite or item.action == "resume")
    return items


def _check_complete(enhancer: Enhancer, input_path: str, output: str, time: int | None,
                    channel: int | None) -> None:
    """A complete output is kept on resume only if this model wrote it from this time
    point (and channel) of this input."""
    from resin.io import open_volume

    try:
        with open_volume(output) as reader:
            attrs = dict(reader.attrs)
    except Exception as exc:  # noqa: BLE001 - any unreadable output is not ours to keep
        raise ResumeError(f"{output} exists but cannot be read ({exc}); pass --overwrite to "
                          "write it again") from exc
    expect = {"model_sha256": enhancer.metadata.weights_sha256,
              "input": Path(input_path.rstrip("/")).name,
              "input_time": time, "input_channel": channel}
    wrong = [k for k, v in expect.items() if attrs.get(k) != v]
    if wrong:
        raise ResumeError(f"{output} is complete but was not written by this run "
                          f"({', '.join(wrong)} differ); pass --overwrite to write it again")


def run_series(enhancer: Enhancer, input_path: str | os.PathLike,
               output: str | os.PathLike | None = None, *,
               mip: str | os.PathLike | None = None, resume: bool = False,
               overwrite: bool = False,
               progress: Callable[[RunProgress], None] | None = None,
               client: Any = None, channel: int | None = None,
               on_output: Callable[[SeriesItem, RunReport | None], None] | None = None,
               items: Sequence[SeriesItem] | None = None) -> list[RunReport]:
    """Enhance every time point of ``input_path`` into its own output; returns the reports
    of the time points run now (those kept by ``resume`` have none). ``on_output(item,
    report)`` is called after each time point (``report`` None for a kept one). ``items``:
    :func:`plan_series`' plan for these same arguments, when the caller has made it to
    check more before the run (planned here otherwise)."""
    if items is None:
        items = plan_series(enhancer, input_path, output, resume=resume, overwrite=overwrite,
                            mip=mip, channel=channel)
    n = len(items)
    reports = []
    for i, item in enumerate(items):
        label = f"time point {item.time} ({i + 1} of {n})" if item.time is not None else \
            "the only time point"
        if item.action == "done":
            _log.log(f"{label}: {item.output} is complete; kept")
            if on_output is not None:
                on_output(item, None)
            continue
        _log.log(f"{label} -> {item.output}")
        report = enhancer.run(input_path, item.output, mip=mip,
                              resume=item.action == "resume", overwrite=overwrite,
                              progress=progress, client=client, channel=channel,
                              time=item.time)
        reports.append(report)
        if on_output is not None:
            on_output(item, report)
        left = sum(1 for later in items[i + 1:] if later.action != "done")
        if left:
            per = sum(r.seconds for r in reports) / len(reports)
            _log.log(f"{len(reports)} time points enhanced, {left} to go: about "
                     f"{_log.duration(per * left)} more at {per:.1f} s each")
    return reports
