"""Every time point and/or channel of a file in one job (``resin-run --time all``,
``--channel all``, ``Enhancer.run_series``), the engine loaded once.

Two layouts:

- **One output** (the default, or ``-o out.ome.zarr``): a Zarr store with the input's
  time and channel axes in front of z, y, x (TZYX, CZYX or TCZYX), as the input has them.
  Each time point / channel is run into its own 3-D store under ``OUT.partial/parts/``
  with everything a single run does (blocks, done markers, resume); when all are
  complete their chunk files are renamed into the one store (no data is copied), which
  is then renamed to ``OUT``. An existing ``OUT`` is replaced only then (``overwrite``).
- **One output each**: ``-o`` holds ``{t}`` (``{c}``) where the time point (channel)
  goes; TIFF outputs this way only.

Everything is checked before the first output is created: names, that none exists unless
``resume`` / ``overwrite`` says what to do with it, and that ``--mip`` files do not
collide. With ``resume`` an interrupted job continues where it stopped: complete parts
that this model wrote from the same time point and channel are kept, the unfinished one
resumes block by block, the rest run. All parts use the tile and block of the first one
finished, so they share one chunk layout.

**One model per channel**: a list of enhancers, one per channel in channel order, with
``channel="all"``. They must scale the volume alike; in one store their tiles also get one
halo (the largest of theirs), so that every part has the same chunks.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
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
from resin.runtime.runstate import SERIES_RECORD, OutputLock, record_dir, staging_path

from resin import _log
from resin._atomic import atomic_write, replace_dir
from resin._cli import CHANNEL_FIELD, TIME_FIELD
from resin.errors import OutputExistsError, ResumeError, UsageError

if TYPE_CHECKING:
    from resin.runtime.enhancer import Enhancer

#: inside ``OUT.partial`` of a one-output job (beside ``SERIES_RECORD``): its parts
PARTS_DIR = "parts"

Choice = int | str | None


@dataclass(frozen=True)
class SeriesItem:
    """One time point's (channel's) run: ``time`` / ``channel`` None where the file has no
    such choice (or it is fixed by the caller and not an axis of the output)."""

    time: int | None
    output: str
    #: "run" (start it), "resume" (its unfinished output continues), "done" (kept) or
    #: "redo" (an unfinished part without its run record: started over)
    action: str
    channel: int | None = None
    #: position along the one output's leading axes (empty with one output each)
    index: tuple[int, ...] = ()
    #: what ``--report`` names this item's report after (``output`` with one output each)
    name: str = ""

    @property
    def label(self) -> str:
        parts = [f"time point {self.time}" if self.time is not None else "",
                 f"channel {self.channel}" if self.channel is not None else ""]
        return ", ".join(p for p in parts if p) or "the only volume"


@dataclass(frozen=True)
class SeriesPlan:
    """What a job will do: its items and, for one output, that output and its leading
    axes ((name, OME axis type, length), e.g. ``("t", "time", 40)``)."""

    items: list[SeriesItem]
    output: str | None = None
    axes: tuple[tuple[str, str, int], ...] = ()

    @property
    def combined(self) -> bool:
        return self.output is not None


def model_for(models: Sequence[Enhancer], channel: int | None) -> Enhancer:
    """The model that runs ``channel``: the only one, or the channel's (channel order)."""
    return models[0] if len(models) == 1 else models[channel or 0]


@dataclass(frozen=True)
class _ByChannel:
    """Which model runs which channel."""

    models: tuple[Enhancer, ...]

    @classmethod
    def given(cls, enhancer: Enhancer | Sequence[Enhancer]) -> _ByChannel:
        return cls(tuple(enhancer) if isinstance(enhancer, Sequence) else (enhancer,))

    def of(self, channel: int | None) -> Enhancer:
        return model_for(self.models, channel)

    @property
    def sha256(self) -> str | list[str]:
        """What the job's record holds (one model: its hash, as before)."""
        shas = [m.metadata.weights_sha256 for m in self.models]
        return shas[0] if len(shas) == 1 else shas


def _by_channel(enhancer: Enhancer | Sequence[Enhancer], channel: Choice, n_channels: int,
                input_path: str) -> _ByChannel:
    """One model, or one per channel: those checked against the file (one per channel, all
    of one scale)."""
    by = _ByChannel.given(enhancer)
    models = by.models
    if not models:
        raise UsageError("no model given")
    if len(models) == 1:
        return by
    if channel != "all":
        raise UsageError(f"{len(models)} models (one per channel) need --channel all; "
                         "give one model to enhance one channel")
    if len(models) != n_channels:
        has = _log.count(n_channels, "channel")
        raise UsageError(f"{input_path}: has {has} but {len(models)} models were given; give "
                         "one --engine per channel, in channel order")
    first = models[0].metadata
    for m in models[1:]:
        if tuple(m.metadata.scale) != tuple(first.scale):
            raise UsageError(f"{m.model_path}: scales the volume by {tuple(m.metadata.scale)}, "
                             f"{models[0].model_path} by {tuple(first.scale)}; the channels "
                             "of one job need models of one scale (one --z-step)")
    return by


def _check_multiples(models: _ByChannel) -> None:
    """The parts of one store need one tiling: models whose tiles are multiples of one size,
    that take the same tiles (a TensorRT plan or static export takes a fixed range) and
    that were given the same tiling and output settings."""
    if len(models.models) == 1:
        return
    each = f"write one output per channel (-o with {CHANNEL_FIELD} in its name)"
    multiples = {m.metadata.size_multiple for m in models.models}
    if len(multiples) > 1:
        raise UsageError(f"the models take tiles of different multiples "
                         f"({', '.join(map(str, sorted(multiples)))}), so their parts cannot "
                         f"share one store's chunks; {each}")
    first = models.models[0]
    for m in models.models[1:]:
        if m.metadata.tile_range() != first.metadata.tile_range():
            raise UsageError(f"{m.model_path} takes other tiles than {first.model_path} (a "
                             "TensorRT plan or a static export takes a fixed range), so their "
                             f"parts cannot share one store's tiles; {each}")
        differ = [f.name for f in fields(first.settings)
                  if getattr(m.settings, f.name) != getattr(first.settings, f.name)]
        if differ:
            raise UsageError(f"{m.model_path} was given another {', '.join(differ)} than "
                             f"{first.model_path}; the parts of one store need the same")


def _share_halo(models: _ByChannel) -> None:
    """Models writing the parts of one store tile with one halo, the largest of theirs (more
    context than a model needs changes its output by less than its own halo's tolerance),
    so that all parts get the same tiles and chunks. Undone by :func:`_run_items`."""
    if len(models.models) == 1:
        return
    halos = [m.metadata.tiling_halo(m.settings.exact_halo) for m in models.models]
    floor = (max(h[0] for h in halos), max(h[1] for h in halos), max(h[2] for h in halos))
    for m in models.models:
        m.settings = replace(m.settings, halo_floor=floor)


def choice_counts(input_path: str | os.PathLike, channel: Choice = None,
                  time: Choice = None) -> tuple[int, int]:
    """(time points, channels) of the file; a fixed ``channel`` / ``time`` is checked."""
    from resin.io import open_volume

    with open_volume(input_path, 0 if channel == "all" else channel,  # type: ignore[arg-type]
                     0 if time == "all" else time) as reader:  # type: ignore[arg-type]
        return int(reader.time_points), int(reader.channels)


def _values(choice: Choice, count: int) -> list[int | None]:
    if choice == "all":
        return list(range(count)) if count > 1 else [None]
    return [choice if count > 1 else None]  # type: ignore[list-item]


def _check_choice(choice: Choice, flag: str) -> None:
    if not (choice is None or choice == "all" or (isinstance(choice, int) and choice >= 0)):
        raise UsageError(f"{flag} must be a non-negative index or 'all', got {choice!r}")


def _fill(output: str, time: int | None, channel: int | None) -> str:
    return output.replace(TIME_FIELD, str(time or 0)).replace(CHANNEL_FIELD, str(channel or 0))


def plan_series(enhancer: Enhancer | Sequence[Enhancer], input_path: str | os.PathLike,
                output: str | os.PathLike | None = None, *, resume: bool = False,
                overwrite: bool = False, mip: str | os.PathLike | None = None,
                channel: Choice = None, time: Choice = "all") -> SeriesPlan:
    """Check a whole job before anything is written (see the module docstring).
    ``enhancer``: one model, or one per channel in channel order (``channel="all"``)."""
    input_path = os.fspath(input_path)
    out = None if output is None else os.fspath(output)
    _check_choice(channel, "--channel")
    _check_choice(time, "--time")
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pass one")
    fields = [f for f, c in ((TIME_FIELD, time), (CHANNEL_FIELD, channel)) if c == "all"]
    # one output each: -o with the fields in its name
    pattern = out if out is not None and (TIME_FIELD in out or CHANNEL_FIELD in out) else None
    if pattern is not None:
        stray = [f for f in (TIME_FIELD, CHANNEL_FIELD) if f in pattern and f not in fields]
        if stray:
            flag = "--time" if stray[0] == TIME_FIELD else "--channel"
            raise UsageError(f"-o {pattern}: holds {stray[0]} but that choice is not 'all'; "
                             f"remove it or pass {flag} all")
        missing = [f for f in fields if f not in pattern]
        if missing:
            raise UsageError(f"-o {pattern}: one output each needs {' and '.join(fields)} in "
                             f"its name (missing {missing[0]}), or leave them all out for one "
                             "output holding every one")
    n_times, n_channels = choice_counts(input_path, channel, time)
    times, channels = _values(time, n_times), _values(channel, n_channels)
    models = _by_channel(enhancer, channel, n_channels, input_path)
    if pattern is not None:
        return _plan_each(models, input_path, pattern, resume, overwrite, mip, times, channels)
    axes = tuple(a for a, on in ((("t", "time", n_times), len(times) > 1),
                                 (("c", "channel", n_channels), len(channels) > 1)) if on)
    fixed_t = time if isinstance(time, int) else None
    fixed_c = channel if isinstance(channel, int) else None
    final = out if out is not None else default_output(
        input_path, fixed_c if n_channels > 1 else None, fixed_t if n_times > 1 else None)
    if not axes:  # one volume: a single run into the output itself
        action = "resume" if resume else "run"
        check_output(input_path, final, resume, overwrite)
        if mip is not None:
            check_mip_dir(mip, final, overwrite or resume, _angle(models, channels[0]))
        return SeriesPlan([SeriesItem(times[0], final, action, channels[0], (), final)])
    _check_multiples(models)
    return _plan_one(models, input_path, final, resume, overwrite, mip, times, channels, axes)


def _plan_each(models: _ByChannel, input_path: str, output: str, resume: bool,
               overwrite: bool, mip: str | os.PathLike | None, times: list[int | None],
               channels: list[int | None]) -> SeriesPlan:
    pairs = [(t, c) for t in times for c in channels]
    outputs = [_fill(output, t, c) for t, c in pairs]
    if not (resume or overwrite):
        for (t, c), o in zip(pairs, outputs, strict=True):
            if Path(staging_path(o)).exists():
                what = SeriesItem(t, o, "run", c).label
                raise OutputExistsError(f"{staging_path(o)}: an earlier run stopped at {what}; "
                                        "pass --resume to continue there or --overwrite to "
                                        "start over")
    items = []
    for (t, c), out in zip(pairs, outputs, strict=True):
        action = "run"
        if resume:
            if Path(staging_path(out)).exists():
                action = "resume"
            elif Path(out).exists():
                _check_complete(models.of(c), input_path, out, t, c)
                action = "done"
        if action != "done":  # a single run's checks (input vs output, one in the way)
            check_output(input_path, out, action == "resume", overwrite, c, t)
        items.append(SeriesItem(t, out, action, c, (), out))
    _check_mips(mip, items, overwrite, models)
    return SeriesPlan(items)


def _angle(models: _ByChannel, channel: int | None) -> float:
    """The PSF axis of the model that runs ``channel`` (its ``--mip`` files depend on it)."""
    return models.of(channel).metadata.axial_angle_deg


def _check_mips(mip: str | os.PathLike | None, items: list[SeriesItem],
                overwrite: bool, models: _ByChannel) -> None:
    if mip is None:
        return
    seen: dict[Path, str] = {}
    for item in items:
        angle = _angle(models, item.channel)
        for path in mip_paths(mip, item.name, angle):
            if path in seen:
                raise UsageError(f"--mip {mip}: the outputs {seen[path]} and {item.name} "
                                 f"would both write {path.name}; give the time point "
                                 f"(channel) in the output's file name")
            seen[path] = item.name
        if item.action != "done":
            check_mip_dir(mip, item.name, overwrite or item.action == "resume", angle)


def _series_identity(models: _ByChannel, input_path: str,
                     axes: tuple[tuple[str, str, int], ...], times: list[int | None],
                     channels: list[int | None]) -> dict[str, Any]:
    st = models.models[0].settings
    return {"model_sha256": models.sha256,
            "input": Path(input_path.rstrip("/")).name,
            "axes": [list(a) for a in axes], "times": times, "channels": channels,
            # what changes the parts' bytes or layout (tile and block: the first part's)
            "overlap": st.overlap, "blend": st.blend, "sigma_scale": st.sigma_scale,
            "faces": st.faces, "exact_halo": st.exact_halo, "pyramid": st.pyramid,
            "shards": None if st.shards is None else list(st.shards)}


def _plan_one(models: _ByChannel, input_path: str, final: str, resume: bool,
              overwrite: bool, mip: str | os.PathLike | None, times: list[int | None],
              channels: list[int | None], axes: tuple[tuple[str, str, int], ...]
              ) -> SeriesPlan:
    from resin.io import output_format
    from resin.io._zarr import _is_store as is_zarr_store

    if output_format(final) != "zarr":
        raise UsageError(f"{final}: one output holding every time point or channel is a "
                         "Zarr store (TCZYX); name it .ome.zarr or .zarr, or put "
                         f"{TIME_FIELD} / {CHANNEL_FIELD} in -o for one file each")
    check_output(input_path, final, resume, overwrite, series=True)
    target = Path(final.rstrip("/"))
    if (target.exists() or target.is_symlink()) and not is_zarr_store(target):
        raise OutputExistsError(f"{final} exists and is not a Zarr store; refusing to "
                                "replace it")
    staging = Path(staging_path(final))
    identity = _series_identity(models, input_path, axes, times, channels)
    recorded: dict[str, Any] = {}
    if resume:
        try:
            recorded = json.loads((staging / SERIES_RECORD).read_text())
        except (OSError, ValueError):
            raise ResumeError(f"{staging}: is not what an interrupted run over every time "
                              "point / channel leaves (no readable "
                              f"{SERIES_RECORD}); pass --overwrite to start over") from None
        wrong = [k for k, v in identity.items() if recorded.get(k) != v]
        if wrong:
            raise ResumeError(f"{staging}: was started with another {', '.join(wrong)}; "
                              "resume with the same settings, or pass --overwrite to start "
                              "over")
    whole = Path(final.rstrip("/")).name
    stem = whole.split(".")[0]  # the suffix goes where --mip files take their name from
    items = []
    for ti, t in enumerate(times):
        for ci, c in enumerate(channels):
            suffix = (f"_t{t}" if len(times) > 1 else "") + \
                (f"_c{c}" if len(channels) > 1 else "")
            name = f"{stem}{suffix}{whole[len(stem):]}"
            part = str(staging / PARTS_DIR / name)
            index = tuple(i for i, n in ((ti, len(times)), (ci, len(channels))) if n > 1)
            action = "run"
            if recorded.get("assembled"):
                action = "done"
            elif resume and Path(staging_path(part)).exists():
                # stopped between creating its store and its record (or removing the
                # record and closing): nothing in it can be trusted, so run it again
                has_record = (record_dir(part, "zarr") / "plan.json").exists()
                action = "resume" if has_record else "redo"
            elif resume and Path(part).exists():
                _check_complete(models.of(c), input_path, part, t, c)
                action = "done"
            items.append(SeriesItem(t, part, action, c, index,
                                    str(Path(final.rstrip("/")).with_name(name))))
    _check_mips(mip, items, overwrite, models)
    return SeriesPlan(items, final, axes)


def _check_complete(enhancer: Enhancer, input_path: str, output: str, time: int | None,
                    channel: int | None) -> None:
    """A complete output is kept on resume only if this model wrote it from this time
    point (and channel) of this input."""
    attrs = _attrs_of(output)
    expect = {"model_sha256": enhancer.metadata.weights_sha256,
              "input": Path(input_path.rstrip("/")).name,
              "input_time": time, "input_channel": channel}
    wrong = [k for k, v in expect.items() if attrs.get(k) != v]
    if wrong:
        raise ResumeError(f"{output} is complete but was not written by this run "
                          f"({', '.join(wrong)} differ); pass --overwrite to write it again")


def _attrs_of(output: str) -> dict[str, Any]:
    from resin.io import open_volume

    try:
        with open_volume(output) as reader:
            return dict(reader.attrs)
    except Exception as exc:  # noqa: BLE001 - any unreadable output is not ours to keep
        raise ResumeError(f"{output} exists but cannot be read ({exc}); pass --overwrite to "
                          "write it again") from exc


def run_series(enhancer: Enhancer | Sequence[Enhancer], input_path: str | os.PathLike,
               output: str | os.PathLike | None = None, *,
               mip: str | os.PathLike | None = None, resume: bool = False,
               overwrite: bool = False,
               progress: Callable[[RunProgress], None] | None = None,
               client: Any = None, channel: Choice = None, time: Choice = "all",
               on_output: Callable[[SeriesItem, RunReport | None], None] | None = None,
               plan: SeriesPlan | None = None) -> list[RunReport]:
    """Enhance every time point (channel) of ``input_path`` with ``enhancer`` (or with one
    per channel, in channel order, with ``channel="all"``); returns the reports of those
    run now (those kept by ``resume`` have none; with one output each report names it).
    ``on_output(item, report)`` is called after each (``report`` None for a kept one),
    while its part still exists. ``plan``: :func:`plan_series`' plan for these same
    arguments, when the caller has made it to check more before the run."""
    if plan is None:
        plan = plan_series(enhancer, input_path, output, resume=resume, overwrite=overwrite,
                           mip=mip, channel=channel, time=time)
    input_path = os.fspath(input_path)
    models = _ByChannel.given(enhancer)
    if not plan.combined:
        return _run_items(models, input_path, plan, mip, overwrite, progress, client,
                          on_output)
    final = plan.output
    assert final is not None
    staging = Path(staging_path(final))
    lock = OutputLock(final)
    lock.acquire()
    try:
        if resume and not staging.is_dir():
            raise ResumeError(f"{staging} is gone: another run finished or removed it "
                              "while this one started")
        if not resume:
            _fresh_staging(staging, overwrite)
            times = list(dict.fromkeys(i.time for i in plan.items))
            channels = list(dict.fromkeys(i.channel for i in plan.items))
            staging.mkdir(parents=True)  # the record first: a stop leaves a staging
            _write_record(staging, _series_identity(models, input_path, plan.axes, times,
                                                    channels))  # that says what it is
            (staging / PARTS_DIR).mkdir()
        reports = _run_items(models, input_path, plan, mip, overwrite, progress, client,
                             on_output)
        _finish(staging, final, plan)
    finally:
        lock.release()
    letters = "".join(a.upper() for a, _, _ in plan.axes)
    counts = " x ".join(_log.count(n, "time point" if kind == "time" else "channel")
                        for _, kind, n in plan.axes)
    _log.log(f"wrote {final} ({letters}ZYX: {counts})")
    return [replace(r, output=final) for r in reports]


def _fresh_staging(staging: Path, overwrite: bool) -> None:
    if not (staging.exists() or staging.is_symlink()):
        return
    names = {p.name for p in staging.iterdir()} if staging.is_dir() else {"?"}
    # a record, a store, or what a stop while it was being created or removed leaves
    ours = bool(names & {SERIES_RECORD, "zarr.json"}) or names <= {PARTS_DIR}
    if not overwrite or staging.is_symlink() or not ours:
        raise OutputExistsError(f"{staging} exists and is not an unfinished output of "
                                "resin-run; move it away")
    shutil.rmtree(staging)


def _write_record(staging: Path, record: dict[str, Any]) -> None:
    atomic_write(staging / SERIES_RECORD, json.dumps(record, indent=1))


def _run_items(models: _ByChannel, input_path: str, plan: SeriesPlan,
               mip: str | os.PathLike | None, overwrite: bool,
               progress: Callable[[RunProgress], None] | None, client: Any,
               on_output: Callable[[SeriesItem, RunReport | None], None] | None
               ) -> list[RunReport]:
    items = plan.items
    n = len(items)
    reports: list[RunReport] = []
    saved = [m.settings for m in models.models]
    shared = False  # whether the parts' tile and block are fixed yet
    announced: set[int] = set()  # the models whose backend and tile lines were said
    try:
        if plan.combined:
            _share_halo(models)
        for i, item in enumerate(items):
            label = f"{item.label} ({i + 1} of {n})"
            if item.action == "done":
                _log.log(f"{label}: {item.name} is complete; kept")
                if on_output is not None:
                    on_output(item, None)
                continue
            if plan.combined:
                shared = shared or _share_layout(models, items)
                _log.log(f"{label} -> {plan.output}")
            else:
                _log.log(f"{label} -> {item.output}")
            enhancer = models.of(item.channel)
            report = enhancer._run_file(input_path, item.output, mip=mip,
                                        resume=item.action == "resume",
                                        overwrite=overwrite or item.action == "redo",
                                        progress=progress, client=client,
                                        channel=item.channel, time=item.time,
                                        brief=id(enhancer) in announced)
            announced.add(id(enhancer))
            reports.append(report)
            if on_output is not None:
                on_output(item, report)
            left = sum(1 for later in items[i + 1:] if later.action != "done")
            if left:
                per = sum(r.seconds for r in reports) / len(reports)
                _log.log(f"{len(reports)} done, {left} to go: about "
                         f"{_log.duration(per * left)} more at {per:.1f} s each")
    finally:
        for m, settings in zip(models.models, saved, strict=True):
            m.settings = settings
    return reports


def _share_layout(models: _ByChannel, items: Sequence[SeriesItem]) -> bool:
    """Run the next parts with the tile and block of a finished one: parts of one output
    must share their chunks (the memory budget could choose another tile later on).
    False while no part is finished (nothing to share yet)."""
    for item in items:
        if Path(item.output).exists():
            attrs = _attrs_of(item.output)
            tile, block = attrs.get("tile"), attrs.get("block")
            if isinstance(tile, list) and len(tile) == 3:
                for m in models.models:
                    m.settings = replace(
                        m.settings, tile=tuple(int(v) for v in tile),
                        block=tuple(int(v) for v in block) if isinstance(block, list) else
                        m.settings.block)
            return True
    return False


def _finish(staging: Path, final: str, plan: SeriesPlan) -> None:
    """Every part is complete: move their chunks into the one store, drop the parts and
    put the store in place (each step safe to repeat after a stop)."""
    from resin.io._zarr import assemble_parts

    try:
        record = json.loads((staging / SERIES_RECORD).read_text())
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{staging / SERIES_RECORD}: cannot be read ({exc}); another run "
                          "may have finished this output; pass --overwrite to start over"
                          ) from None
    if not record.get("assembled"):
        parts = [(item.index, item.output) for item in plan.items]
        attrs = _combined_attrs(plan)
        t0 = time.perf_counter()
        moved = assemble_parts(str(staging), parts, list(plan.axes), attrs,
                               image_name=Path(final.rstrip("/")).name.split(".")[0])
        _log.log(f"moved the {len(parts)} parts' {moved} chunk files into one store in "
                 f"{time.perf_counter() - t0:.2f} s (renamed, not copied)")
        record["assembled"] = True
        _write_record(staging, record)
    if (staging / PARTS_DIR).exists():  # only metadata is left in them
        shutil.rmtree(staging / PARTS_DIR)
    _mark_complete(staging)
    replace_dir(staging, final.rstrip("/"))
    # last: until the store is in place its record says a resume may finish the job
    (Path(final.rstrip("/")) / SERIES_RECORD).unlink(missing_ok=True)


def _combined_attrs(plan: SeriesPlan) -> dict[str, Any]:
    """The one store's provenance: what its parts share, and per part what differs."""
    per = [(item, _attrs_of(item.output)) for item in plan.items]
    common = {k: v for k, v in per[0][1].items() if all(a.get(k) == v for _, a in per)}
    for axis, key in (("t", "input_time"), ("c", "input_channel")):
        if any(name == axis for name, _, _ in plan.axes):
            common.pop(key, None)
    common["parts"] = [{"time": item.time, "channel": item.channel,
                        **{k: v for k, v in attrs.items() if k not in common}}
                       for item, attrs in per]
    common["complete"] = False
    return common


def _mark_complete(store: Path) -> None:
    import zarr

    node = zarr.open(str(store), mode="r+")
    found = node.attrs.get("resin")
    attrs: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
    attrs["complete"] = True
    node.attrs["resin"] = attrs
