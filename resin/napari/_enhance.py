"""What the Enhance widget runs, without Qt: all of it through :class:`resin.runtime.Enhancer`.

- An in-memory run feeds :meth:`Enhancer.stream` the layer's planes, so each tile row runs
  as soon as its planes are in: the widget sees progress row by row and Stop takes effect
  between rows. With the whole volume's normalization levels the result is
  :meth:`Enhancer.enhance`'s, byte for byte.
- A file run is :meth:`Enhancer.run`, followed tile by tile through its ``progress``
  callback, which is also where Stop takes effect: the finished blocks stay, and a run
  with resume continues from them.
- A preview enhances the region in view plus the model's halo of context around it, with
  the whole volume's levels, so it shows what the full run gives there.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resin import _log
from resin.errors import UsageError
from resin.io import format_bytes
from resin.napari._jobs import Job
from resin.napari._layers import close_volume, time_point
from resin.runtime import Enhancer, Levels, RunReport
from resin.runtime.blocks import make_block_plan
from resin.runtime.normalize import sample_levels
from resin.runtime.pipeline import describe
from resin.runtime.planner import TilePlan, face_indices
from resin.runtime.runner import (
    RunProgress,
    faces_hint,
    make_plan,
    output_attrs,
    output_dtype,
)

Region = tuple[slice, slice, slice]

#: planes on each side of the slider that a preview enhances
PREVIEW_PLANES = 4
BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ModelSettings:
    """The model and how to run it; ``model=None`` is the bundled model."""

    model: Path | None = None
    backend: str = "auto"
    device: str = "auto"
    tile: tuple[int, int, int] | None = None
    #: the volume's faces (:data:`resin.runtime.planner.FACES`, ``resin-run --faces``)
    faces: str = "repeat"

    def open(self) -> Enhancer:
        return Enhancer(self.model, backend=self.backend, device=self.device, tile=self.tile,
                        faces=self.faces)


def parse_tile(text: str) -> tuple[int, int, int] | None:
    """``'auto'`` or empty: the planner's tile; else three integers ``Z Y X``."""
    words = text.replace(",", " ").replace("x", " ").split()
    if not words or words == ["auto"]:
        return None
    try:
        values = tuple(int(w) for w in words)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise UsageError(f"tile {text!r}: give three positive integers Z Y X, or auto")
    return (values[0], values[1], values[2])


def volume_levels(enh: Enhancer, volume: Any) -> Levels:
    """The model's normalization levels for the whole volume (read plane by plane)."""
    norm = enh.metadata.normalization
    shape = (int(volume.shape[0]), int(volume.shape[1]), int(volume.shape[2]))
    return sample_levels(lambda r: np.asarray(volume[r]), shape, norm.low_percentile,
                         norm.high_percentile)


def enhance_in_memory(enh: Enhancer, volume: Any, levels: Levels, job: Job,
                      part: tuple[int, int] = (0, 1)) -> np.ndarray:
    """The enhanced volume; progress in tiles, row by row; Stop between rows. ``part``:
    this volume is the i-th of n run one after the other (progress counts all n)."""
    n = int(volume.shape[0])
    index, count = part
    with enh.stream(tuple(volume.shape), volume.dtype, levels=levels) as stream:
        plan = stream.plan
        per_row = plan.n_tiles // len(plan.axes[0].starts)
        # input planes that complete each row (the padding repeats the face planes)
        needs = [int(face_indices(s, plan.tile[0], n).max()) + 1 for s in plan.axes[0].starts]
        before, total = index * plan.n_tiles, count * plan.n_tiles
        job.report(before, total, "tiles")
        pushed = 0
        for need in sorted(set(needs)):
            job.check()
            stream.push(np.asarray(volume[pushed:need]))
            pushed = need
            job.report(before + per_row * sum(1 for v in needs if v <= pushed), total, "tiles")
        if pushed < n:
            stream.push(np.asarray(volume[pushed:n]))
    assert stream.result is not None
    return stream.result


def enhance_series_in_memory(enh: Enhancer, series: Any, job: Job
                             ) -> tuple[np.ndarray, list[Levels]]:
    """Each volume of a (T, Z, Y, X) layer, one after the other, with its own
    normalization levels (as ``resin-run --time all`` runs each time point): the (T, Z',
    Y, X) result and the levels used for each."""
    count = int(series.shape[0])
    out: np.ndarray | None = None
    used: list[Levels] = []
    for t in range(count):
        job.check()
        volume = time_point(series, t)
        try:
            levels = volume_levels(enh, volume)
            result = enhance_in_memory(enh, volume, levels, job, part=(t, count))
        finally:
            close_volume(volume)
        if out is None:
            out = np.empty((count, *result.shape), result.dtype)
        out[t] = result
        used.append(levels)
    assert out is not None
    return out, used


def series_record(enh: Enhancer, levels: list[Levels], plan: TilePlan,
                  source: str) -> dict[str, Any]:
    """A series result's metadata: :func:`run_record` with each time point's own
    normalization under ``parts``, as a ``resin-run --time all`` store records it."""
    record = run_record(enh, levels[0], plan, source)
    record.pop("normalization")
    record["parts"] = [{"time": t, "channel": None, "normalization": lv.as_attrs()}
                       for t, lv in enumerate(levels)]
    return record


def enhance_to_file(enh: Enhancer, input_path: str, output: str, job: Job,
                    resume: bool = False, overwrite: bool = False) -> RunReport:
    """:meth:`Enhancer.run`, reporting every tile; Stop keeps the finished blocks, which
    ``resume=True`` continues from."""
    def progress(p: RunProgress) -> None:
        job.report(p.tiles_done, p.tiles_total, "tiles")

    return enh.run(input_path, output, resume=resume, overwrite=overwrite, progress=progress)


@dataclass(frozen=True)
class SeriesRun:
    """What a time-series run to a file did."""

    output: str
    #: time points run now (a resume skips those finished before)
    parts: int
    voxels: int
    seconds: float


def enhance_series_to_file(enh: Enhancer, input_path: str, output: str, job: Job,
                           time_points: int, tiles: int, resume: bool = False,
                           overwrite: bool = False) -> SeriesRun:
    """Every time point of a file into one store (:func:`resin.runtime.series.run_series`,
    ``resin-run --time all``); progress in tiles of all ``time_points`` of ``tiles`` each,
    those a resume keeps counted as done. Stop keeps the finished time points and blocks,
    which ``resume=True`` continues from."""
    from resin.runtime.series import run_series

    finished = [0]  # time points kept or run to the end

    def progress(p: RunProgress) -> None:
        # a resumed time point's run counts only the tiles it has left
        within = p.tiles_done / p.tiles_total if p.tiles_total else 1.0
        job.report((finished[0] + within) * tiles, time_points * tiles, "tiles")

    def done(item: Any, report: RunReport | None) -> None:
        finished[0] += 1
        job.report(finished[0] * tiles, time_points * tiles, "tiles")

    t0 = time.perf_counter()
    reports = run_series(enh, input_path, output, resume=resume, overwrite=overwrite,
                         progress=progress, time="all", on_output=done)
    voxels = sum(int(np.prod(r.out_shape)) for r in reports)
    return SeriesRun(output, len(reports), voxels, time.perf_counter() - t0)


def preview_region(shape: tuple[int, ...], displayed: tuple[int, ...], corners: Any,
                   point: Any, planes: int = PREVIEW_PLANES) -> Region:
    """The displayed axes' visible range (``corners``: first and last visible voxel) and
    ``planes`` on each side of the slider (``point``) along the other axis."""
    region = []
    for axis in range(3):
        n = int(shape[axis])
        if axis in displayed:
            a, b = sorted((int(corners[0][axis]), int(corners[1][axis])))
            lo = min(max(a, 0), n - 1)
            hi = min(max(b + 1, lo + 1), n)
        else:
            c = min(max(int(round(float(point[axis]))), 0), n - 1)
            lo, hi = max(0, c - planes), min(n, c + planes + 1)
        region.append(slice(lo, hi))
    return (region[0], region[1], region[2])


def enhance_region(enh: Enhancer, volume: Any, region: Region, levels: Levels) -> np.ndarray:
    """The enhanced ``region``: enhanced with the model's halo of real context around it."""
    shape = volume.shape
    halo = enh.metadata.halo
    context = tuple(slice(max(0, r.start - h), min(int(n), r.stop + h))
                    for r, h, n in zip(region, halo, shape, strict=True))
    out = enh.enhance(np.asarray(volume[context]), levels)
    scale = [int(round(s)) for s in enh.metadata.scale]
    keep = tuple(slice((r.start - c.start) * s, (r.stop - c.start) * s)
                 for r, c, s in zip(region, context, scale, strict=True))
    return out[keep]


def plan_for(enh: Enhancer, shape: tuple[int, int, int], dtype: Any) -> TilePlan:
    """The planner's tiles for this volume (shape and dtype) and model (what a run will
    use)."""
    return make_plan(enh.engine, shape, enh.settings, out_dtype=output_dtype(np.dtype(dtype)))


def plan_text(enh: Enhancer, plan: TilePlan, dtype: Any, to_file: bool,
              time_points: int | None = None) -> str:
    """The planner's tiles and the run's working memory, in two lines.

    Memory: :meth:`BlockPlan.working_bytes` (the block being filled, queued blocks, tiles in
    flight), plus the result for an in-memory run (every time point's, for a series).
    """
    rows = len(plan.axes[0].starts)
    inside = (f"core {describe(plan.core)}" if plan.faces == "repeat" else
              "faces zero-padded")
    tiles = (f"tile {describe(plan.tile)} (halo {describe(plan.halo)}, {inside}): "
             f"{_log.count(plan.n_tiles, 'tile')} in {_log.count(rows, 'row')}")
    if time_points is not None:
        tiles += f" per time point, {_log.count(time_points, 'time point')}"
    oz, oy, ox = plan.out_shape
    bplan = make_block_plan(plan, enh.settings.block)
    out_dtype = output_dtype(np.dtype(dtype))
    held = bplan.working_bytes(out_dtype)
    if to_file:
        where = f"blocks of {describe(bplan.block)}"
    else:
        held += (time_points or 1) * oz * oy * ox * out_dtype.itemsize  # the result
        where = "in memory"
    text = f"{tiles}\n{where}: about {format_bytes(held)} plus the network's own"
    hint = faces_hint(plan, enh.settings)
    return text if hint is None else f"{text}\n{hint}"


def run_record(enh: Enhancer, levels: Levels, plan: TilePlan, source: str) -> dict[str, Any]:
    """A result layer's metadata: the provenance every resin output records (model, its
    hash, the normalization levels, tiles), plus the model's path and where it ran."""
    return {**output_attrs(enh.engine, str(enh.model_path), levels, plan, enh.settings, source),
            "model_path": str(enh.model_path), "backend": enh.engine.name,
            "device": enh.engine.device}


def command_line(settings: ModelSettings, input_path: str, output: str | None,
                 resume: bool = False, series: bool = False) -> str:
    """The ``resin-run`` command that does the same run, for a terminal or a cluster job
    (``series``: every time point, ``--time all``)."""
    args = ["resin-run"]
    if settings.model is not None:
        args += ["--engine", str(settings.model)]
    args.append(input_path)
    if series:
        args += ["--time", "all"]
    if output:
        args += ["-o", output]
    if settings.tile is not None:
        args += ["--tile", *(str(v) for v in settings.tile)]
    if settings.faces != "repeat":
        args += ["--faces", settings.faces]
    if settings.backend != "auto":
        args += ["--backend", settings.backend]
    if settings.device != "auto":
        args += ["--device", settings.device]
    if resume:
        args.append("--resume")
    return shlex.join(args)

