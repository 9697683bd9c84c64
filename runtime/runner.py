"""Whole runs: an in-memory array, or a volume file streamed to an output file.

Everything about the input, the model and the output is checked before the output is
created, so a bad input or model leaves any existing output untouched.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from resin.runtime.backends._base import Backend
from resin.runtime.journal import Journal
from resin.runtime.normalize import Levels, sample_levels
from resin.runtime.pipeline import (
    ArraySink,
    Mips,
    OutOfMemory,
    SlabBlender,
    describe,
    shrink_tile,
)
from resin.runtime.planner import TilePlan, plan_tiles

from resin import _log
from resin.errors import OutputExistsError, ResumeError, UsageError, VolumeError

BLEND_MODES = ("gaussian", "cosine", "constant")
OUTPUT_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


@dataclass(frozen=True)
class TileSettings:
    """How a volume is tiled and blended (``None``: the model's/planner's default)."""

    tile: tuple[int, int, int] | None = None
    overlap: int | None = None
    blend: str = "gaussian"
    sigma_scale: float = 0.125

    def check(self) -> None:
        if self.blend not in BLEND_MODES:
            raise UsageError(f"unknown blend mode {self.blend!r}; use {', '.join(BLEND_MODES)}")
        if self.overlap is not None and self.overlap < 0:
            raise UsageError(f"--overlap must be >= 0, got {self.overlap}")
        if self.tile is not None and (len(self.tile) != 3 or min(self.tile) <= 0):
            raise UsageError(f"--tile needs three positive integers Z Y X, got {self.tile}")


@dataclass
class RunReport:
    """What a run did (returned by ``Enhancer.run`` and printed by ``resin-run``)."""

    input: str
    output: str
    shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    tile: tuple[int, int, int]
    tiles: int
    levels: Levels
    seconds: float
    resumed_from_z: int = 0
    mips: list[str] = field(default_factory=list)

    @property
    def voxels_per_second(self) -> float:
        n = self.out_shape[0] * self.out_shape[1] * self.out_shape[2]
        return n / self.seconds if self.seconds > 0 else float("inf")


def make_plan(engine: Backend, shape: tuple[int, int, int], settings: TileSettings,
              tile: tuple[int, int, int] | None = None) -> TilePlan:
    meta = engine.metadata
    scale = tuple(int(round(s)) for s in meta.scale)
    if any(abs(s - round(s)) > 1e-6 or s < 1 for s in meta.scale):
        raise UsageError(f"the model's scale {meta.scale} is not a whole number per axis; "
                         "this runtime supports integer upsampling only")
    bounds = meta.tile_range()
    requested = tile or settings.tile or (bounds[1] if bounds else None)
    plan = plan_tiles(shape, requested, meta.halo, meta.size_multiple,
                      settings.overlap or 0, scale)  # type: ignore[arg-type]
    if bounds is not None:
        lo, _, hi = bounds
        if any(not lo[i] <= plan.tile[i] <= hi[i] for i in range(3)):
            what = (f"only tiles of {_zyx(lo)}" if lo == hi else
                    f"tiles from {_zyx(lo)} to {_zyx(hi)}")
            raise UsageError(f"tile {_zyx(plan.tile)} does not fit this model, which takes {what}; "
                             "pass --tile within that range (or re-export with other tiles)")
    return plan


def _zyx(t: tuple[int, ...]) -> str:
    return "x".join(str(int(v)) for v in t)


def output_dtype(input_dtype: np.dtype) -> np.dtype:
    dt = np.dtype(input_dtype)
    return dt if dt in OUTPUT_DTYPES else np.dtype(np.float32)


def check_volume_array(volume: Any, source: str = "volume") -> np.ndarray:
    arr = np.asarray(volume)
    if arr.ndim != 3:
        raise VolumeError(f"{source}: expected a 3D ZYX volume, got shape {arr.shape}")
    if arr.size == 0:
        raise VolumeError(f"{source}: the volume is empty (shape {arr.shape})")
    if arr.dtype.kind not in "uif":
        raise VolumeError(f"{source}: unsupported dtype {arr.dtype}; use uint8, uint16 or float32")
    return arr


def levels_for(engine: Backend, read, shape: tuple[int, int, int], source: str) -> Levels:
    norm = engine.metadata.normalization
    return sample_levels(read, shape, norm.low_percentile, norm.high_percentile, source=source)


def _run_with_fallback(engine: Backend, plan: TilePlan, settings: TileSettings, make_blender,
                       read, skip_below: int = 0, read_ahead: bool = True) -> TilePlan:
    """Blend every row from ``skip_below`` on; on out-of-memory, retry with smaller tiles."""
    while True:
        blender: SlabBlender = make_blender(plan, skip_below)
        try:
            blender.run_rows(read, range(plan.first_row_reaching(skip_below),
                                         len(plan.axes[0].starts)), read_ahead=read_ahead)
            blender.close()
            return plan
        except OutOfMemory as oom:
            blender.abort()
            smaller = shrink_tile(plan, engine.metadata.size_multiple)
            if smaller is None:
                raise MemoryError(f"out of memory even with tile {describe(plan.tile)}") from oom
            _log.log(f"out of memory with tile {describe(plan.tile)}; retrying from output "
                     f"z={oom.flushed_z} with tile {describe(smaller)}")
            plan = make_plan(engine, plan.shape, settings, smaller)
            skip_below = oom.flushed_z
        except BaseException:
            blender.abort()
            raise


def enhance_array(engine: Backend, volume: np.ndarray, settings: TileSettings,
                  levels: Levels | None = None) -> np.ndarray:
    """Enhance an in-memory ZYX array; same tiling, blending and result as a file run."""
    settings.check()
    vol = check_volume_array(volume)
    shape = (int(vol.shape[0]), int(vol.shape[1]), int(vol.shape[2]))

    def read(region):
        return vol[region]

    if levels is None:
        levels = levels_for(engine, read, shape, "volume")
    plan = make_plan(engine, shape, settings)
    out = np.empty(plan.out_shape, output_dtype(vol.dtype))
    sink = ArraySink(out)
    chunk_z = plan.out_core[0]

    def make_blender(p: TilePlan, skip: int) -> SlabBlender:
        return SlabBlender(engine, p, levels, out.dtype, sink, chunk_z, settings.blend,
                           settings.sigma_scale, skip_below=skip)

    _run_with_fallback(engine, plan, settings, make_blender, read)
    return out


def default_output(input_path: str | os.PathLike) -> str:
    """``<stem>_resin.ome.zarr`` beside the input (the input's own suffix removed)."""
    p = Path(os.fspath(input_path).rstrip("/"))
    name = p.name
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return str(p.with_name(f"{name}_resin.ome.zarr"))


def _output_exists(output: str) -> bool:
    return Path(output).exists() or Path(output + ".partial").exists()


def output_chunks(fmt: str, out_shape: tuple[int, int, int],
                  plan: TilePlan) -> tuple[int, int, int]:
    if fmt == "tiff":
        return (1, out_shape[1], out_shape[2])
    cz = max(1, min(out_shape[0], 32, plan.out_core[0]))
    return (cz, min(out_shape[1], 256), min(out_shape[2], 256))


def check_output(input_path: str | os.PathLike, output_path: str | os.PathLike | None,
                 resume: bool = False, overwrite: bool = False) -> str:
    """The output path (default beside the input); refuses to replace one without a flag.

    Cheap, so ``resin-run`` calls it before loading the model.
    """
    from resin.io import volume_format

    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pass one")
    input_path = os.fspath(input_path)
    output = os.fspath(output_path) if output_path is not None else default_output(input_path)
    volume_format(output)
    volume_format(input_path)
    if Path(output).resolve() == Path(input_path).resolve():
        raise UsageError(f"{output}: the output must not be the input")
    journal_exists = Path(output).with_name(Path(output).name + ".resin-journal.json").exists()
    if _output_exists(output) and not overwrite and not resume:
        hint = "--resume to continue it or " if journal_exists else ""
        raise OutputExistsError(f"{output} exists; pass {hint}--overwrite to replace it")
    return output


def enhance_file(engine: Backend, model_path: str, input_path: str | os.PathLike,
                 output_path: str | os.PathLike | None, settings: TileSettings,
                 mip_dir: str | os.PathLike | None = None, resume: bool = False,
                 overwrite: bool = False, announce: str | None = None) -> RunReport:
    """Stream ``input_path`` through ``engine`` into ``output_path`` (see module docstring).

    ``announce`` (the backend choice) is logged once the inputs are checked.
    """
    from resin.io import create_volume, open_volume, volume_format

    settings.check()
    input_path = os.fspath(input_path)
    output = check_output(input_path, output_path, resume, overwrite)
    fmt = volume_format(output)

    t0 = time.perf_counter()
    reader = open_volume(input_path)
    try:
        shape = tuple(int(s) for s in reader.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise VolumeError(f"{input_path}: expected a non-empty 3D ZYX volume, got {shape}")
        shape3 = (shape[0], shape[1], shape[2])
        meta = engine.metadata
        levels = levels_for(engine, reader.read, shape3, input_path)
        plan = make_plan(engine, shape3, settings)
        out_dtype = output_dtype(reader.dtype)
        out_shape = plan.out_shape
        chunks = output_chunks(fmt, out_shape, plan)
        voxel_size = None
        if reader.voxel_size is not None:
            voxel_size = tuple(float(v) / s for v, s in zip(reader.voxel_size, plan.scale,
                                                            strict=True))
        identity = {
            "input": str(Path(input_path).resolve()),
            "input_shape": shape3, "input_dtype": str(np.dtype(reader.dtype)),
            "model_sha256": meta.weights_sha256, "halo": plan.halo,
            "tile": settings.tile, "overlap": settings.overlap or 0, "blend": settings.blend,
            "levels": [levels.low, levels.high], "out_dtype": str(out_dtype),
            "chunks": chunks, "mip": mip_dir is not None,
        }
        journal = Journal(output, identity)
        skip_below = 0
        if resume:
            if journal.exists():
                skip_below = journal.load()
                _log.log(f"resuming {output} from output z={skip_below} of {out_shape[0]}")
            elif _output_exists(output):
                raise ResumeError(f"{output} has no resume journal (it finished, or was not "
                                  "written by resin-run); use --overwrite to write it again")
        attrs = {
            "model_sha256": meta.weights_sha256,
            "model": Path(model_path).name,
            "resin_version": meta.resin_version,
            "normalization": levels.as_attrs(),
            "scale": list(meta.scale),
            "axial_angle_deg": meta.axial_angle_deg,
            "tile": list(plan.tile), "halo": list(plan.halo),
            "overlap": settings.overlap or 0, "blend": settings.blend,
            "input": Path(input_path).name,
        }
        if announce:
            _log.log(announce)
        writer = create_volume(output, out_shape, out_dtype, voxel_size=voxel_size,
                               chunks=chunks, overwrite=overwrite, attrs=attrs,
                               resume=resume)
        if not resume or skip_below == 0:
            journal.record(0)
        mips = raw_mips = None
        if mip_dir is not None:
            mips = Mips.empty(out_shape, out_dtype)
            raw_mips = Mips.empty(shape3, np.dtype(reader.dtype))
            saved = journal.load_mips() if skip_below > 0 else None
            if saved is not None:
                for m, prefix in ((mips, "out"), (raw_mips, "raw")):
                    m.along_z[...] = saved[f"{prefix}_z"]
                    m.along_y[...] = saved[f"{prefix}_y"]
                    m.along_x[...] = saved[f"{prefix}_x"]

        def on_flush(z: int) -> None:
            state = None
            if mips is not None and raw_mips is not None:
                state = {"out_z": mips.along_z, "out_y": mips.along_y, "out_x": mips.along_x,
                         "raw_z": raw_mips.along_z, "raw_y": raw_mips.along_y,
                         "raw_x": raw_mips.along_x}
            journal.record(z, state)

        fresh = skip_below == 0
        try:
            rows_total = plan.n_tiles
            with _log.progress(float(np.prod(out_shape)), f"enhancing {Path(input_path).name}",
                               "voxels") as bar:
                per_tile = float(np.prod(out_shape)) / rows_total

                def make_blender(p: TilePlan, skip: int) -> SlabBlender:
                    return SlabBlender(engine, p, levels, out_dtype, writer, chunks[0],
                                       settings.blend, settings.sigma_scale, skip_below=skip,
                                       mips=mips, on_flush=on_flush,
                                       on_tile=lambda: bar.advance(per_tile), raw_mips=raw_mips)

                if skip_below > 0:
                    bar.advance(per_tile * plan.first_row_reaching(skip_below)
                                * len(plan.axes[1].starts) * len(plan.axes[2].starts))
                plan = _run_with_fallback(engine, plan, settings, make_blender, reader.read,
                                          skip_below)
        except VolumeError:
            _abandon(writer)
            if fresh:  # the input is bad: a partial output is of no use to --resume
                _remove_output(output)
                journal.remove()
            raise
        except BaseException:
            _abandon(writer)
            raise
        writer.close()
        journal.remove()
        written: list[str] = []
        if mip_dir is not None and mips is not None:
            from resin.runtime.mips import write_mips

            stem = Path(output.rstrip("/")).name.split(".")[0]
            written = [str(p) for p in write_mips(mip_dir, stem, raw_mips, mips,
                                                  reader.voxel_size)]
    finally:
        reader.close()
    seconds = time.perf_counter() - t0
    report = RunReport(input=input_path, output=output, shape=shape3, out_shape=out_shape,
                       tile=plan.tile, tiles=plan.n_tiles, levels=levels, seconds=seconds,
                       resumed_from_z=skip_below, mips=written)
    return report


def _abandon(writer: Any) -> None:
    abandon = getattr(writer, "abandon", None)
    try:
        if callable(abandon):
            abandon()
    except Exception as exc:  # noqa: BLE001 - the original error is the one to report
        _log.debug(f"could not keep the partial output: {exc}")


def _remove_output(output: str) -> None:
    import shutil

    for p in (Path(output + ".partial"), Path(output)):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
