"""Whole runs: an in-memory array, or a volume file streamed to an output file, block by
block (:mod:`resin.runtime.blocks`), resumable and safe (:mod:`resin.runtime.runstate`).

Everything about the input, the model and the output is checked before the output is
created, so a bad input or model leaves any existing output untouched.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from resin.runtime.backends._base import Backend, device_resident
from resin.runtime.blocks import (
    DEFAULT_CHUNK,
    Block,
    BlockPlan,
    BlockRunner,
    align_chunks,
    blend_path,
    make_block_plan,
)
from resin.runtime.budget import (
    DEFAULT_DEVICE_SHARE,
    DEFAULT_SHARE,
    GiB,
    TileChoice,
    available_memory,
    choose_tile,
    default_budget,
    default_device_budget,
    engine_bytes_per_voxel,
    free_device_memory,
)
from resin.runtime.normalize import Levels, sample_levels
from resin.runtime.pipeline import (
    ArraySink,
    Mips,
    OutOfMemory,
    describe,
    shrink_tile,
)
from resin.runtime.planner import OVERLAP_NEEDS_REPEAT, TilePlan, check_faces, plan_tiles
from resin.runtime.runstate import (
    SERIES_RECORD,
    record_dir,
    recorded_block,
    recorded_tile,
    staging_path,
)

from resin import _log
from resin.errors import OutputExistsError, ResumeError, UsageError, VolumeError
from resin.io._common import check_folder
from resin.metadata import ModelMetadata

BLEND_MODES = ("gaussian", "cosine", "constant")
OUTPUT_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
Triple = tuple[int, int, int]


@dataclass(frozen=True)
class TileSettings:
    """How a volume is tiled and blended (``None``: the model's/planner's default)."""

    tile: tuple[int, int, int] | None = None
    overlap: int | None = None
    blend: str = "gaussian"
    sigma_scale: float = 0.125
    #: output block (the unit of work, memory and resume); None: about 96 x 768 x 768
    block: tuple[int, int, int] | None = None
    #: Zarr v3 shard shape (output voxels) or None for one file per chunk
    shards: tuple[int, int, int] | None = None
    #: resolution levels of an OME-Zarr output (1: full resolution only; 2: + 2x means ...)
    pyramid: int = 1
    #: tiles get the model's exact halo instead of its tolerant one
    exact_halo: bool = False
    #: memory budget (GiB) the tile is chosen from; None: a share of the available memory
    memory: float | None = None
    #: blend, finalize and project on the GPU when the engine's outputs can stay there
    #: (False: always on the CPU, ``resin-run --host-blend``)
    device_blend: bool = True
    #: the volume's faces: "repeat" (padded by the halo, each face plane repeated) or
    #: "zeros" (the network's own zero padding, nothing computed outside the volume)
    faces: str = "repeat"
    #: the tiles' halo is at least this per axis (None: the model's own); models that write
    #: the parts of one store (one model per channel) share one tiling, so one chunk layout
    halo_floor: tuple[int, int, int] | None = None

    def check(self) -> None:
        if self.blend not in BLEND_MODES:
            raise UsageError(f"unknown blend mode {self.blend!r}; use {', '.join(BLEND_MODES)}")
        if self.overlap is not None and self.overlap < 0:
            raise UsageError(f"--overlap must be >= 0, got {self.overlap}")
        if self.tile is not None and (len(self.tile) != 3 or min(self.tile) <= 0):
            raise UsageError(f"--tile needs three positive integers Z Y X, got {self.tile}")
        for name, value in (("--block", self.block), ("--shard", self.shards)):
            if value is not None and (len(value) != 3 or min(value) <= 0):
                raise UsageError(f"{name} needs three positive integers Z Y X, got {value}")
        if not 1 <= self.pyramid <= 10:
            raise UsageError(f"--levels must be from 1 to 10, got {self.pyramid}")
        if self.memory is not None and not 0 < self.memory < math.inf:
            raise UsageError(f"--memory must be a positive number of GiB, got {self.memory}")
        if self.tile is not None and self.memory is not None:
            raise UsageError("--tile sets the tile, --memory chooses one within a budget; "
                             "pass one")
        check_faces(self.faces)
        if self.faces != "repeat" and self.overlap:
            raise UsageError(OVERLAP_NEEDS_REPEAT)


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
    resumed_blocks: int = 0
    blocks: int = 1
    block: tuple[int, int, int] = (0, 0, 0)
    redundant_share: float = 0.0
    mips: list[str] = field(default_factory=list)

    @property
    def voxels_per_second(self) -> float:
        n = self.out_shape[0] * self.out_shape[1] * self.out_shape[2]
        return n / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class RunProgress:
    """Passed to a run's ``progress`` callback after every tile."""

    blocks_total: int
    blocks_done: int
    tiles_total: int
    tiles_done: int
    started: float
    #: the run's ``progress`` argument, called with this object after every :meth:`add`
    callback: Callable[[RunProgress], None] | None = field(default=None, repr=False,
                                                            compare=False)

    def add(self, tiles: int = 0, blocks: int = 0) -> None:
        """Count finished tiles or blocks and tell the callback."""
        self.tiles_done += tiles
        self.blocks_done += blocks
        if self.callback is not None:
            self.callback(self)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def eta_seconds(self) -> float | None:
        if self.tiles_done == 0:
            return None
        return self.seconds / self.tiles_done * (self.tiles_total - self.tiles_done)


def make_plan(engine: Backend, shape: tuple[int, int, int], settings: TileSettings,
              tile: tuple[int, int, int] | None = None,
              out_dtype: npt.DTypeLike | None = None) -> TilePlan:
    """The tiles of a run: ``tile``, ``settings.tile``, an engine's tuned tile, or the one
    the memory budget picks, counting blocks of ``out_dtype`` (None: float32, the
    widest)."""
    meta = engine.metadata
    scale = tuple(int(round(s)) for s in meta.scale)
    if any(abs(s - round(s)) > 1e-6 or s < 1 for s in meta.scale):
        raise UsageError(f"the model's scale {meta.scale} is not a whole number per axis; "
                         "this runtime supports integer upsampling only")
    bounds = meta.tile_range()
    halo = meta.tiling_halo(settings.exact_halo)
    if settings.halo_floor is not None:
        halo = tuple(max(int(h), int(f))  # type: ignore[assignment]
                     for h, f in zip(halo, settings.halo_floor, strict=True))
    overlap = settings.overlap or 0
    requested = tile or settings.tile
    note = ""
    block: Triple | None = None  # the budget's block, when it chose one
    if requested is None and bounds is not None and settings.memory is None:
        requested = bounds[1]  # the tile the engine was built and tuned for
    elif requested is None and budget_chooses(meta, settings):
        # each figure read once: the log names the ones the tile was chosen with
        free, available = free_device_memory(engine), available_memory() or 0
        budgets = run_budgets(settings, free, available)
        choice = budget_tile(meta, shape, halo, scale, settings, budgets,  # type: ignore[arg-type]
                             bounds, settings.device_blend and device_resident(engine),
                             4 if out_dtype is None else np.dtype(out_dtype).itemsize)
        requested, block = choice.tile, choice.block
        note = budget_note(settings, budgets, free, available)
    plan = replace(plan_tiles(shape, requested, halo, meta.size_multiple,  # type: ignore[arg-type]
                              overlap, scale, settings.faces), budget=note, block=block)
    for i, axis in enumerate(plan.axes):
        if overlap > axis.core // 2 and len(axis.starts) > 1:
            raise UsageError(f"--overlap {overlap} is more than half of the tile's core "
                             f"({axis.core} voxels along {'zyx'[i]}): every voxel would be "
                             f"computed many times over; use --overlap <= {axis.core // 2} "
                             "or a larger --tile")
    if bounds is not None:
        lo, _, hi = bounds
        if any(not lo[i] <= plan.tile[i] <= hi[i] for i in range(3)):
            what = (f"only tiles of {_zyx(lo)}" if lo == hi else
                    f"tiles from {_zyx(lo)} to {_zyx(hi)}")
            raise UsageError(f"tile {_zyx(plan.tile)} does not fit this model, which takes {what}; "
                             "pass --tile within that range (or re-export with other tiles)")
    return plan


def budget_tile(meta: ModelMetadata, shape: Triple, halo: Triple, scale: Triple,
                settings: TileSettings, budgets: tuple[int, int | None],
                bounds: tuple[Triple, Triple, Triple] | None = None,
                device_blend: bool = False, out_itemsize: int = 4) -> TileChoice:
    """The tile :func:`resin.runtime.budget.choose_tile` picks within ``budgets``, the
    (RAM, GPU) bytes of :func:`run_budgets` (GPU None: a CPU engine), for blocks of
    ``out_itemsize`` bytes per voxel."""
    budget, device_budget = budgets
    return choose_tile(shape, halo, meta.size_multiple, scale, budget,
                       engine_bytes_per_voxel(meta), settings.block, settings.shards,
                       None if bounds is None else (bounds[0], bounds[2]),
                       device_budget=device_budget, device_blend=device_blend,
                       faces=settings.faces, out_itemsize=out_itemsize)


def budget_chooses(meta: ModelMetadata, settings: TileSettings) -> bool:
    """Whether :func:`make_plan` takes the tile from the memory budget: no ``--tile``, no
    ``--overlap`` (whose default tile is a fixed core) and not a TensorRT plan run without
    ``--memory`` (which gets the tile it was tuned for)."""
    return (settings.tile is None and not settings.overlap
            and not (meta.tile_range() is not None and settings.memory is None))


def run_budgets(settings: TileSettings, device_free: int | None,
                available: int) -> tuple[int, int | None]:
    """(RAM budget, GPU budget) in bytes: ``--memory`` is GPU memory on a GPU engine
    (``device_free`` known), RAM otherwise; what it does not set takes its default, from
    ``available`` bytes of RAM (0: unknown) and ``device_free``."""
    given = None if settings.memory is None else int(settings.memory * GiB)
    if device_free is None:
        return given or default_budget(available), None
    return default_budget(available), given or default_device_budget(device_free)


def budget_note(settings: TileSettings, budgets: tuple[int, int | None],
                device_free: int | None, available: int) -> str:
    """The memory budget that chose a tile when :func:`budget_chooses`: ``budgets`` as
    :func:`run_budgets` gave them for ``device_free`` and ``available``, the GPU engine's
    free memory (None: a CPU engine) and the RAM available (0: unknown) as the planner read
    them."""
    budget, device_budget = budgets
    where = "RAM" if device_budget is None else "GPU memory"
    if settings.memory is not None:
        return f"within --memory {settings.memory:g} GiB of {where}"
    if device_budget is not None:
        return (f"within {device_budget / GiB:.1f} GiB ({DEFAULT_DEVICE_SHARE:.0%} of the "
                f"{(device_free or 0) / GiB:.1f} GiB free) of {where}")
    share = (f" ({DEFAULT_SHARE:.0%} of the {available / GiB:.1f} GiB available)"
             if available else "")
    return f"within {budget / GiB:.1f} GiB of {where}{share}"


def log_plan(engine: Backend, plan: TilePlan, settings: TileSettings) -> None:
    """Before a run: the tile, the share of computed voxels kept, the network calls and,
    with more than one call, a time estimate from one probe call of the engine (on a tile
    of half the side, scaled by voxels, unless the model takes only a range of tiles). The
    probe runs only when the line is shown: under ``--quiet`` it would be a network call
    (about 3 % of a 128x512x512 run on a CPU) that nobody reads."""
    computed = plan.n_tiles * math.prod(plan.tile)
    kept = math.prod(plan.shape) / computed
    meta = engine.metadata
    halo = "exact" if halo_kind(meta, settings) == "exact" else (
        f"tolerant, {meta.halo_tolerance:g} of the range")
    faces = {"repeat": "", "zeros": ", faces zero-padded"}.get(plan.faces, f", faces {plan.faces}")
    line = (f"tile {describe(plan.tile)} (halo {describe(plan.halo)}, {halo}{faces}"
            f"{', chosen ' + plan.budget if plan.budget else ''}): keeps "
            f"{100 * kept:.1f} % of the voxels it computes; "
            f"{_log.count(plan.n_tiles, 'network call')}")
    if plan.n_tiles > 1 and _log.shows_info():
        m = meta.size_multiple
        probe = plan.tile if meta.tile_range() is not None else tuple(
            max(m, -(-t // 2 // m) * m) for t in plan.tile)
        tile = np.zeros((1, 1, *probe), dtype=np.dtype(meta.input_dtype))
        t0 = time.perf_counter()
        engine.infer(tile)
        per_call = (time.perf_counter() - t0) * math.prod(plan.tile) / math.prod(probe)
        line += f", about {per_call * plan.n_tiles:.0f} s ({per_call:.2f} s per call)"
    _log.log(line)
    hint = faces_hint(plan, settings)
    if hint:
        _log.log(hint)


#: ``log_plan`` suggests fewer face voxels when the padding is at least this share of the
#: padded volume (a thin stack, a small volume) ...
FACES_HINT_SHARE = 0.45
#: ... padded by this many voxels instead (``--faces 8``: docs/benchmarks.md, "Volume faces")
FACES_HINT_PAD = 8


def faces_hint(plan: TilePlan, settings: TileSettings) -> str | None:
    """One line when the faces' padding by the halo is most of what the network computes
    (a thin stack: 20 planes padded by 29 on each side), naming ``--faces 8`` and how many
    fewer voxels it computes (padded volumes compared); None otherwise."""
    if plan.faces != "repeat" or settings.overlap:
        return None
    inside = math.prod(plan.shape)
    padded = math.prod(n + 2 * h for n, h in zip(plan.shape, plan.halo, strict=True))
    fewer = math.prod(n + 2 * min(h, FACES_HINT_PAD)
                      for n, h in zip(plan.shape, plan.halo, strict=True))
    share = 1 - inside / padded
    if share < FACES_HINT_SHARE or padded < 1.25 * fewer:
        return None
    return (f"the faces' padding (each face plane repeated over the halo) is {100 * share:.0f} % "
            f"of the volume the network computes: --faces {FACES_HINT_PAD} pads "
            f"{FACES_HINT_PAD} voxels and computes about {padded / fewer:.1f}x fewer, at a "
            "small cost near the faces (docs/runtime.md, Faces)")


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


def _run_blocks(engine: Backend, bplan: BlockPlan, settings: TileSettings, make_runner,
                read, blocks: list[Block], read_ahead: bool = True,
                out_dtype: npt.DTypeLike | None = None) -> BlockPlan:
    """Run ``blocks``; on out-of-memory, retry the blocks not yet written with smaller tiles
    (same blocks and chunks)."""
    while True:
        runner: BlockRunner = make_runner(bplan)
        try:
            runner.run(read, blocks, read_ahead=read_ahead)
            return bplan
        except OutOfMemory as oom:
            smaller = shrink_tile(bplan.tiles, engine.metadata.size_multiple)
            if smaller is None:
                raise MemoryError(f"out of memory even with tile {describe(bplan.tiles.tile)}"
                                  ) from oom
            blocks = [b for b in blocks if b.key not in runner.done]
            _log.log(f"out of memory with tile {describe(bplan.tiles.tile)}; retrying the "
                     f"{len(blocks)} unwritten blocks with tile {describe(smaller)}")
            plan = make_plan(engine, bplan.tiles.shape, settings, smaller, out_dtype)
            bplan = BlockPlan(tiles=plan, block=bplan.block, chunks=bplan.chunks)
            blocks = [bplan.block_at(b.index) for b in blocks]


def enhance_array(engine: Backend, volume: np.ndarray, settings: TileSettings,
                  levels: Levels | None = None,
                  progress: Callable[[RunProgress], None] | None = None) -> np.ndarray:
    """Enhance an in-memory ZYX array; same tiling, blending and bytes as a file run.

    ``progress(RunProgress)`` is called after every tile and block; raising from it stops.
    """
    settings.check()
    vol = check_volume_array(volume)
    shape = (int(vol.shape[0]), int(vol.shape[1]), int(vol.shape[2]))

    def read(region):
        return vol[region]

    if levels is None:
        levels = levels_for(engine, read, shape, "volume")
    plan = make_plan(engine, shape, settings, out_dtype=output_dtype(vol.dtype))
    bplan = make_block_plan(plan, settings.block)
    out = np.empty(plan.out_shape, output_dtype(vol.dtype))
    sink = ArraySink(out)
    blocks = list(bplan.blocks())
    state = RunProgress(blocks_total=len(blocks), blocks_done=0,
                        tiles_total=sum(b.n_tiles for b in blocks), tiles_done=0,
                        started=time.perf_counter(), callback=progress)

    def make_runner(bp: BlockPlan) -> BlockRunner:
        return BlockRunner(engine, bp, levels, out.dtype, sink, settings.blend,
                           settings.sigma_scale, on_written=lambda _b: state.add(blocks=1),
                           on_tile=lambda: state.add(tiles=1),
                           device_blend=settings.device_blend)

    _run_blocks(engine, bplan, settings, make_runner, read, blocks, out_dtype=out.dtype)
    return out


def default_output(input_path: str | os.PathLike, channel: int | None = None,
                   time_point: int | None = None) -> str:
    """``<stem>_resin.ome.zarr`` beside the input (the input's own suffix removed);
    ``<stem>_t<T>_c<N>_resin.ome.zarr`` for time point T, channel N of a file with several.
    A dataset inside an HDF5 file (``file.h5/a/b``) gives ``file_a_b_resin.ome.zarr``
    beside the file; TIFF planes (``planes/`` or ``planes/*.tif``) ``planes_resin.ome.zarr``
    beside their folder."""
    from resin.io._hdf5 import SUFFIXES, split_path
    from resin.io._tiffseq import is_pattern, pattern_folder

    file, inner = split_path(os.fspath(input_path))
    if is_pattern(file):  # planes/*.tif: named after the planes' folder
        file = os.path.abspath(pattern_folder(file))
    p = Path(file.rstrip("/"))
    name = p.name
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", *SUFFIXES):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    if inner:
        name += "_" + inner.strip("/").replace("/", "_")
    if time_point is not None:
        name += f"_t{time_point}"
    if channel is not None:
        name += f"_c{channel}"
    return str(p.with_name(f"{name}_resin.ome.zarr"))


def _output_exists(output: str) -> bool:
    return any(Path(p).exists() or Path(p).is_symlink()
               for p in (output, staging_path(output)))


def output_chunks(fmt: str, plan: TilePlan) -> Triple:
    """Chunks of a streamed output: TIFF planes, or Zarr chunks on the tile grid, one tile
    row deep so that planes reach the store as soon as their row is done."""
    if fmt == "tiff":
        return (1, plan.out_shape[1], plan.out_shape[2])
    return align_chunks(plan, target=(1, DEFAULT_CHUNK[1], DEFAULT_CHUNK[2]))


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def check_output(input_path: str | os.PathLike, output_path: str | os.PathLike | None,
                 resume: bool = False, overwrite: bool = False,
                 channel: int | None = None, time_point: int | None = None,
                 series: bool = False) -> str:
    """The output path (default beside the input); refuses to replace one without a flag,
    and any output that contains the input or lies inside it. ``series``: the output of a
    run over every time point / channel (:mod:`resin.runtime.series`), whose unfinished
    store only such a run may resume.

    Cheap, so ``resin-run`` calls it before loading the model.
    """
    from resin.io import output_format, volume_format
    from resin.io._tiffseq import pattern_folder

    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pass one")
    input_path = os.fspath(input_path)
    output = (os.fspath(output_path) if output_path is not None
              else default_output(input_path, channel, time_point))
    fmt = output_format(output)
    volume_format(input_path)
    if input_path.rstrip("/").endswith(".partial"):
        raise unfinished_input(input_path)
    if output.rstrip("/").endswith(".partial"):
        raise UsageError(f"{output}: names ending in .partial are resin-run's unfinished "
                         "outputs; choose another output name")
    check_folder(Path(output.rstrip("/")).parent)
    record = record_dir(output, fmt)
    if fmt == "tiff" and record.exists() and not record.is_dir():
        raise UsageError(f"{record} is a file where resin-run keeps its run record; move it "
                         "away and run again")
    src = Path(pattern_folder(input_path)).resolve()  # planes/*.tif: their folder
    for candidate in (output, staging_path(output)):
        dst = Path(candidate).resolve()
        if _inside(src, dst) or _inside(dst, src):
            what = "is the input" if src == dst else (
                "contains the input" if _inside(src, dst) else "lies inside the input")
            raise UsageError(f"{output}: the output {what} ({input_path}); write it elsewhere")
    if _output_exists(output) and not overwrite and not resume:
        partial = Path(staging_path(output)).exists()
        hint = "--resume to continue it or " if partial else ""
        raise OutputExistsError(f"{output if not partial else staging_path(output)} exists; "
                                f"pass {hint}--overwrite to replace it")
    if resume and not series and (Path(staging_path(output)) / SERIES_RECORD).exists():
        raise ResumeError(f"{staging_path(output)} is an unfinished run over every time point "
                          "or channel; resume it with the same --time all / --channel all")
    if resume and not Path(staging_path(output)).exists():
        if Path(output).exists():
            raise ResumeError(f"{output} is already complete (there is no "
                              f"{Path(staging_path(output)).name} to resume); use --overwrite "
                              "to write it again")
        raise ResumeError(f"cannot resume: {staging_path(output)} (the unfinished output) is "
                          "missing; it was deleted or moved. Run without --resume to start over")
    return output


#: the most F's gain can raise a voxel (exp of its bound, 4) with room to spare: a float
#: input whose bright level is this close to float32's limit would overflow it
GAIN_BOUND = 64.0


def check_float_range(levels: Levels, dtype: npt.DTypeLike, path: str) -> None:
    """Refuse, before any output exists, a float input so close to float32's limit that the
    enhanced values could overflow it (the writer checks every block as well)."""
    top = max(abs(levels.low), abs(levels.high))
    if np.dtype(dtype).kind == "f" and top * GAIN_BOUND > float(np.finfo(np.float32).max):
        raise VolumeError(f"{path}: values up to {top:.2e} are too close to float32's limit "
                          f"({float(np.finfo(np.float32).max):.2e}) for the enhanced volume; "
                          "scale the volume down and run again")


def unfinished_input(path: str) -> VolumeError:
    """The error for an input that an interrupted resin-run left unfinished."""
    return VolumeError(f"{path} is the unfinished output of an interrupted resin-run; finish "
                       "that run with --resume before enhancing it")


def mip_stem(output: str) -> str:
    """The name ``--mip DIR`` files of ``output`` start with."""
    return Path(output.rstrip("/")).name.split(".")[0]


def mip_paths(mip_dir: str | os.PathLike, output: str, angle_deg: float = 0.0) -> list[Path]:
    """The files ``--mip DIR`` writes for ``output`` (a model of an oblique PSF,
    ``angle_deg`` != 0, adds the MIP along its PSF axis, ``_mip_psf.tif``)."""
    stem = mip_stem(output)
    d = Path(mip_dir)
    psf = [psf_mip_path(mip_dir, output)] if angle_deg else []
    return [d / f"{stem}_mip_{a}.tif" for a in "zyx"] + psf + [d / f"{stem}_mip.png"]


def psf_mip_path(mip_dir: str | os.PathLike, output: str) -> Path:
    """Where ``--mip DIR`` puts the MIP along an oblique model's PSF axis."""
    return Path(mip_dir) / f"{mip_stem(output)}_mip_psf.tif"


def check_mip_dir(mip_dir: str | os.PathLike, output: str, replace: bool,
                  angle_deg: float = 0.0) -> None:
    """``--mip DIR`` is checked before the run, not after it."""
    check_folder(mip_dir)
    existing = [p for p in mip_paths(mip_dir, output, angle_deg)
                if p.exists() or p.is_symlink()]
    if existing and not replace:
        raise OutputExistsError(f"{existing[0]} exists; pass --overwrite to replace the MIPs")


def run_identity(engine: Backend, model_path: str, input_path: str, shape: Triple,
                 dtype: np.dtype, levels: Levels, bplan: BlockPlan, settings: TileSettings,
                 out_dtype: np.dtype, shards: Triple | None,
                 channel: int | None = None, time_point: int | None = None
                 ) -> dict[str, Any]:
    """Everything that determines the output bytes (the run record's plan); the channel
    and time point only for an input with several (a plain volume's record is as it was)."""
    from resin.runtime.runstate import input_fingerprint

    from resin._cache import file_sha256

    plan = bplan.tiles
    identity = {
        "input": input_fingerprint(input_path),
        "input_shape": list(shape), "input_dtype": str(np.dtype(dtype)),
        "levels": [levels.low, levels.high],
        "model_sha256": file_sha256(model_path),
        "backend": engine.name, "device": str(getattr(engine, "device", "")),
        "precision": str(getattr(engine, "precision", "") or engine.metadata.input_dtype),
        "tile": list(plan.tile), "halo": list(plan.halo), "overlap": settings.overlap or 0,
        "halo_kind": halo_kind(engine.metadata, settings),
        "blend": [settings.blend, settings.sigma_scale],
        "block": list(bplan.block), "chunks": list(bplan.chunks),
        "shards": None if shards is None else list(shards), "out_dtype": str(out_dtype),
        "pyramid": settings.pyramid, "faces": settings.faces,
    }
    if channel is not None:
        identity["channel"] = channel
    if time_point is not None:
        identity["time"] = time_point
    return identity


def halo_kind(meta: ModelMetadata, settings: TileSettings) -> str:
    """Which halo tiles get: ``exact``, or ``tolerant <fraction of the output range>``."""
    if settings.exact_halo or meta.halo_tolerant is None:
        return "exact"
    return f"tolerant {meta.halo_tolerance:g}"


def enhance_file(engine: Backend, model_path: str, input_path: str | os.PathLike,
                 output_path: str | os.PathLike | None, settings: TileSettings,
                 mip_dir: str | os.PathLike | None = None, resume: bool = False,
                 overwrite: bool = False, announce: str | None = None,
                 progress: Callable[[RunProgress], None] | None = None,
                 client: Any = None,
                 engine_request: tuple[str, str, bool] = ("auto", "auto", False),
                 channel: int | None = None, time_point: int | None = None,
                 brief: bool = False) -> RunReport:
    """Stream ``input_path`` through ``engine`` into ``output_path`` block by block.

    The output is built at ``OUTPUT.partial`` and renamed when complete (an old output is
    replaced only then). Each written and flushed block gets a done marker; a failed or
    killed run keeps them, and ``resume=True`` skips them. ``announce`` (the backend
    choice) is logged once the inputs are checked; ``progress`` is called after each tile
    and after each finished block (raise from it to stop: finished blocks are kept for
    ``resume``). With a Dask
    ``client`` the blocks run as tasks on its workers (:mod:`resin.runtime.distributed`),
    each loading the model as ``engine_request`` (backend, device) asks. ``channel``,
    ``time_point``: the channel / time point of an input with several to enhance (required for
    one; see ``open_volume``). ``brief``: the tile, blending and blocks lines only as debug
    lines (a series' later parts repeat the first's).
    """
    from resin.runtime.runstate import OutputLock, RunRecord

    from resin.io import open_volume, output_format, volume_label

    settings.check()
    input_path = os.fspath(input_path)
    output = check_output(input_path, output_path, resume, overwrite, channel, time_point)
    fmt = output_format(output)
    angle = engine.metadata.axial_angle_deg
    if mip_dir is not None:
        check_mip_dir(mip_dir, output, overwrite or resume, angle)
    if settings.shards is not None and fmt != "zarr":
        raise UsageError(f"{output}: --shard needs a .zarr/.ome.zarr output")
    if settings.pyramid > 1 and fmt != "zarr":
        raise UsageError(f"{output}: --levels needs a .zarr/.ome.zarr output (a TIFF holds "
                         "the full resolution only)")
    if client is not None and fmt != "zarr":
        raise UsageError(f"{output}: a distributed run writes .zarr/.ome.zarr; a TIFF is one "
                         "file that processes on several machines cannot safely write into")

    t0 = time.perf_counter()
    lock = OutputLock(output)
    lock.acquire()
    reader = None
    try:
        reader = open_volume(input_path, channel, time_point)
        if not getattr(reader, "complete", True):  # a store renamed from its .partial
            raise unfinished_input(input_path)
        shape = tuple(int(s) for s in reader.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise VolumeError(f"{input_path}: expected a non-empty 3D ZYX volume, got {shape}")
        shape3 = (shape[0], shape[1], shape[2])
        levels = levels_for(engine, reader.read, shape3, input_path)
        check_float_range(levels, reader.dtype, input_path)
        asked_block = settings.block
        if resume and settings.tile is None:
            # the tile (and block) the interrupted run chose from its memory budget, not
            # today's
            recorded = record_dir(output, fmt)
            settings = replace(settings, tile=recorded_tile(recorded),
                               block=settings.block or recorded_block(recorded))
        out_dtype = output_dtype(reader.dtype)
        plan = make_plan(engine, shape3, settings, out_dtype=out_dtype)
        bplan = make_block_plan(plan, settings.block, shards=settings.shards)
        if asked_block is not None and bplan.redundant_share > 9.0:
            raise UsageError(f"--block {describe(asked_block)}: blocks this small compute "
                             f"every tile {1 + bplan.redundant_share:.0f} times over; use "
                             f"blocks of at least the tile's core, {describe(plan.core)}")
        identity = run_identity(engine, model_path, input_path, shape3, reader.dtype, levels,
                                bplan, settings, out_dtype, settings.shards, reader.channel,
                                reader.time)
        record = RunRecord(record_dir(output, fmt), identity)
        done: set[str] = set()
        if resume:
            record.check()
            done = record.done()
        writer = _create_writer(engine, model_path, reader, output, bplan, levels, settings,
                                out_dtype, overwrite, resume)
        if not resume:
            record.create(bplan.n_blocks)
        if announce:
            _log.log(announce)
        if not brief:
            log_plan(engine, plan, settings)
            if client is None:  # a cluster's workers each use what their engine supports
                _log.log(blend_path(engine, settings.device_blend))
        all_blocks = list(bplan.blocks())
        todo = [b for b in all_blocks if b.key not in done]
        say = _log.debug if brief else _log.log
        say(f"{_log.count(len(all_blocks), 'block')} of {describe(bplan.block)} (tile "
            f"{describe(plan.tile)}, {_log.count(plan.n_tiles, 'tile')}, "
            f"{100 * bplan.redundant_share:.1f} % run twice at block edges)"
            + (f"; resuming: {len(done)} blocks already done" if done else ""))
        mips = raw_mips = None
        if mip_dir is not None:
            mips = Mips.empty(plan.out_shape, out_dtype)
            raw_mips = Mips.empty(shape3, np.dtype(reader.dtype))
            if done:
                _mips_of_done(writer, reader, [b for b in all_blocks if b.key in done],
                              plan.scale, mips, raw_mips)
        tiles_total = sum(b.n_tiles for b in todo)
        state = RunProgress(blocks_total=len(all_blocks), blocks_done=len(done),
                            tiles_total=tiles_total, tiles_done=0, started=t0,
                            callback=progress)

        def on_written(block: Block) -> None:
            record.mark_flushed(writer, block)
            state.add(blocks=1)

        try:
            with _log.progress(float(tiles_total), f"enhancing {volume_label(reader)}",
                               "tiles") as bar:
                def on_tile() -> None:
                    bar.advance(1)
                    state.add(tiles=1)

                def make_runner(bp: BlockPlan) -> BlockRunner:
                    return BlockRunner(engine, bp, levels, out_dtype, writer, settings.blend,
                                       settings.sigma_scale, mips=mips, raw_mips=raw_mips,
                                       on_written=on_written, on_tile=on_tile,
                                       device_blend=settings.device_blend)

                if client is None:
                    bplan = _run_blocks(engine, bplan, settings, make_runner, reader.read,
                                        todo, out_dtype=out_dtype)
                else:
                    _run_distributed(client, engine_request, model_path, input_path, output,
                                     settings, levels, bplan, out_dtype, record, todo, mips,
                                     raw_mips, state, bar, (reader.channel, reader.time))
        except BaseException:
            _abandon(writer)
            _log.log(f"stopped: {state.blocks_done} of {state.blocks_total} blocks are "
                     f"finished in {staging_path(output)}; run the same command with "
                     "--resume to continue")
            raise
        record.remove()
        writer.close()
        written: list[str] = []
        if mip_dir is not None and mips is not None:
            from resin.runtime.mips import write_mips

            written = [str(p) for p in write_mips(mip_dir, mip_stem(output), raw_mips, mips,
                                                  reader.voxel_size)]
            if angle:  # an oblique PSF: also the view along its axis, read from the output
                from resin.runtime.psf_frame import write_psf_mip

                path = write_psf_mip(output, angle, psf_mip_path(mip_dir, output))
                written.insert(3, str(path))
    finally:
        if reader is not None:
            reader.close()
        lock.release()
    seconds = time.perf_counter() - t0
    return RunReport(input=input_path, output=output, shape=shape3, out_shape=plan.out_shape,
                     tile=bplan.tiles.tile, tiles=plan.n_tiles, levels=levels, seconds=seconds,
                     resumed_blocks=len(done), blocks=bplan.n_blocks, block=bplan.block,
                     redundant_share=bplan.redundant_share, mips=written)


def _run_distributed(client: Any, engine_request: tuple[str, str, bool], model_path: str,
                     input_path: str, output: str, settings: TileSettings, levels: Levels,
                     bplan: BlockPlan, out_dtype: np.dtype, record: Any, todo: list[Block],
                     mips: Mips | None, raw_mips: Mips | None, state: RunProgress,
                     bar: Any, select: tuple[int | None, int | None]) -> None:
    from resin.runtime.distributed import BlockJob, merge_mips, run_on_cluster

    # the workers tile as planned here, whatever memory they have
    fixed = replace(settings, tile=bplan.tiles.tile)
    job = BlockJob(model_path=str(Path(model_path).resolve()), backend=engine_request[0],
                   device=engine_request[1], allow_plan_host_code=engine_request[2],
                   input_path=str(Path(input_path).resolve()),
                   output=str(Path(output).resolve()), settings=fixed, levels=levels,
                   out_shape=bplan.tiles.out_shape, out_dtype=str(out_dtype),
                   chunks=bplan.chunks, block=bplan.block, plan_sha256=record.sha256,
                   record_dir=str(record.dir.resolve()), mips=mips is not None,
                   channel=select[0], time=select[1])
    scale = bplan.tiles.scale

    def on_block(block: Block, proj: tuple[np.ndarray, ...] | None) -> None:
        if proj is not None and mips is not None and raw_mips is not None:
            merge_mips(mips, proj[:3], block.start)
            merge_mips(raw_mips, proj[3:],
                       tuple(s.start for s in block.input_region(scale)))  # type: ignore[arg-type]
        bar.advance(block.n_tiles)
        state.add(tiles=block.n_tiles, blocks=1)

    run_on_cluster(client, job, todo, on_block)


def _create_writer(engine: Backend, model_path: str, reader: Any, output: str,
                   bplan: BlockPlan, levels: Levels, settings: TileSettings,
                   out_dtype: np.dtype, overwrite: bool, resume: bool) -> Any:
    from resin.io import create_volume

    plan = bplan.tiles
    attrs = output_attrs(engine, model_path, levels, plan, settings,
                         Path(input_name(reader)).name, bplan.block,
                         getattr(reader, "channel", None), getattr(reader, "time", None))
    return create_volume(output, plan.out_shape, out_dtype,
                         voxel_size=output_voxel_size(reader.voxel_size, plan),
                         chunks=bplan.chunks, overwrite=overwrite, attrs=attrs,
                         shards=settings.shards, resume=resume, levels=settings.pyramid)


def output_attrs(engine: Backend, model_path: str | None, levels: Levels, plan: TilePlan,
                 settings: TileSettings, source: str,
                 block: Triple | None = None, channel: int | None = None,
                 time_point: int | None = None) -> dict[str, Any]:
    """The provenance every output records (Zarr attributes ``resin``, TIFF tag): one place;
    ``input_channel`` / ``input_time`` only when the input had several."""
    from resin import __version__

    meta = engine.metadata
    attrs: dict[str, Any] = {
        "model_sha256": meta.weights_sha256,
        "model": None if model_path is None else Path(model_path).name,
        "model_resin_version": meta.resin_version, "resin_version": __version__,
        "normalization": levels.as_attrs(),
        "scale": list(meta.scale), "axial_angle_deg": meta.axial_angle_deg,
        "tile": list(plan.tile), "halo": list(plan.halo),
        "halo_kind": halo_kind(meta, settings),
        "overlap": settings.overlap or 0, "blend": settings.blend, "faces": settings.faces,
        "block": None if block is None else list(block),
        "input": source,
    }
    if channel is not None:
        attrs["input_channel"] = channel
    if time_point is not None:
        attrs["input_time"] = time_point
    return attrs


def output_voxel_size(voxel_size: Any, plan: TilePlan) -> tuple[float, float, float] | None:
    """The input's voxel size divided by the model's scale (None when unknown)."""
    if voxel_size is None:
        return None
    z, y, x = (float(v) / s for v, s in zip(voxel_size, plan.scale, strict=True))
    return z, y, x


def input_name(reader: Any) -> str:
    return str(getattr(reader, "path", "volume")).rstrip("/")


def _mips_of_done(writer: Any, reader: Any, blocks: list[Block], scale: Triple, mips: Mips,
                  raw_mips: Mips) -> None:
    """MIPs of the blocks an earlier run finished: read back from the partial output and
    the input (max is order-free, so the result equals an uninterrupted run's)."""
    from resin.io import open_volume

    with open_volume(writer.partial_path) as done_out:
        for b in blocks:
            mips.update(np.ascontiguousarray(done_out.read(b.region)), b.start)
            region = b.input_region(scale)
            raw_mips.update(np.ascontiguousarray(reader.read(region)),
                            tuple(s.start for s in region))


def _abandon(writer: Any) -> None:
    abandon = getattr(writer, "abandon", None)
    try:
        if callable(abandon):
            abandon()
    except Exception as exc:  # noqa: BLE001 - the original error is the one to report
        _log.debug(f"could not keep the partial output: {exc}")
