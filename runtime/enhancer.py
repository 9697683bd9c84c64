"""The embedding API: :class:`Enhancer` (in-memory, file-to-file, and during acquisition).

```python
from resin.runtime import Enhancer
with Enhancer("model.onnx") as enh:            # engine=None: the bundled default model
    out = enh.enhance(volume)                  # ndarray -> ndarray
    enh.run("in.zarr", "out.ome.zarr")         # streaming, out-of-core
    with enh.stream(shape, "uint16", out="live.ome.zarr") as s:
        for plane in camera:
            s.push(plane)                      # finished chunks are written as they complete
```

One engine is shared by all calls; inference is serialized by a lock, so an Enhancer may
be used from several threads at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from resin.runtime.backends import choose_backend
from resin.runtime.backends._base import Backend, device_resident
from resin.runtime.blocks import Block, BlockPlan, BlockRunner, align_chunks
from resin.runtime.normalize import Levels, sample_levels
from resin.runtime.pipeline import ArraySink, Sink
from resin.runtime.planner import TilePlan, face_indices
from resin.runtime.runner import (
    RunProgress,
    RunReport,
    TileSettings,
    enhance_array,
    enhance_file,
    make_plan,
    output_attrs,
    output_chunks,
    output_dtype,
    output_voxel_size,
)

from resin import _log
from resin.errors import ModelError, UsageError, VolumeError
from resin.metadata import ModelMetadata

DEFAULT_MODEL = "default.onnx"


def default_model_path() -> Path:
    """The model shipped inside the package (``resin/data/default.onnx``)."""
    path = Path(str(resources.files("resin") / "data" / DEFAULT_MODEL))
    if not path.is_file():
        raise ModelError("the bundled default model is missing from this install; pass "
                         "--engine MODEL (or reinstall resin)")
    return path


def _triple(value: Any) -> tuple[int, int, int] | None:
    return None if value is None else tuple(int(v) for v in value)  # type: ignore[return-value]


class LockedEngine:
    """A backend whose ``infer`` is serialized (TensorRT contexts are not thread-safe)."""

    def __init__(self, engine: Backend) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self.name = engine.name
        self.device = engine.device
        self.metadata = engine.metadata

    def load(self, path: Path, device: str) -> ModelMetadata:
        return self._engine.load(path, device)

    def infer(self, tile: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._engine.infer(tile)

    @property
    def device_resident(self) -> bool:
        """Whether the engine's outputs can stay on the GPU (:class:`DeviceBackend`)."""
        return device_resident(self._engine)

    @property
    def device_stream(self) -> Any:
        return getattr(self._engine, "device_stream", None)

    def infer_device(self, tile: np.ndarray) -> Any:
        with self._lock:
            return self._engine.infer_device(tile)  # type: ignore[attr-defined]

    def close(self) -> None:
        with self._lock:
            self._engine.close()


class Enhancer:
    """A loaded RESIN model plus tiling settings; see the module docstring."""

    def __init__(self, engine: str | os.PathLike | None = None, backend: str = "auto",
                 device: str = "auto", tile: tuple[int, int, int] | None = None,
                 overlap: int | None = None, blend: str = "gaussian",
                 block: tuple[int, int, int] | None = None,
                 shards: tuple[int, int, int] | None = None, pyramid: int = 1,
                 allow_plan_host_code: bool = False, exact_halo: bool = False,
                 memory: float | None = None, device_blend: bool = True,
                 faces: str = "repeat") -> None:
        self.model_path = Path(engine) if engine is not None else default_model_path()
        self._request = (backend, device, bool(allow_plan_host_code))
        self.settings = TileSettings(tile=_triple(tile), overlap=overlap, blend=blend,
                                     block=_triple(block), shards=_triple(shards),
                                     pyramid=int(pyramid), exact_halo=bool(exact_halo),
                                     memory=None if memory is None else float(memory),
                                     device_blend=bool(device_blend), faces=str(faces))
        self.settings.check()
        engine_, self.backend_reason = choose_backend(
            self.model_path, backend, device, allow_plan_host_code=allow_plan_host_code)
        if engine is None:  # said once a run's inputs are checked (the run's announcement)
            self.backend_reason += ("; model: the bundled one, trained on simulated tubes "
                                    "(fails on unlike data, e.g. dense nuclei): for your own "
                                    "data train one (resin train) and check runs with --report")
        self._engine: LockedEngine | None = LockedEngine(engine_)
        _log.debug(self.backend_reason)

    @property
    def engine(self) -> LockedEngine:
        if self._engine is None:
            raise UsageError("this Enhancer is closed")
        return self._engine

    @property
    def metadata(self) -> ModelMetadata:
        return self.engine.metadata

    def levels(self, volume: npt.ArrayLike) -> Levels:
        """The normalization levels this model would use for ``volume`` (whole-volume)."""
        vol = np.asarray(volume)
        norm = self.metadata.normalization
        return sample_levels(lambda r: vol[r], vol.shape, norm.low_percentile,  # type: ignore[arg-type]
                             norm.high_percentile)

    def enhance(self, volume: npt.ArrayLike, levels: Levels | None = None,
                progress: Callable[[RunProgress], None] | None = None) -> np.ndarray:
        """Enhance an in-memory ZYX volume (uint8/uint16/float32) -> same dtype.

        ``progress(RunProgress)`` is called after every tile and block; an exception raised
        from it stops the work (a GUI's Stop button)."""
        return enhance_array(self.engine, np.asarray(volume), self.settings, levels, progress)

    def run(self, input: str | os.PathLike, output: str | os.PathLike | None = None, *,
            mip: str | os.PathLike | None = None, resume: bool = False,
            overwrite: bool = False,
            progress: Callable[[RunProgress], None] | None = None,
            client: Any = None, channel: int | None = None,
            time: int | None = None) -> RunReport:
        """Stream a volume file to an output file (TIFF, Zarr, OME-Zarr), out of core, block
        by block. ``progress(RunProgress)`` is called after every tile (every block on a
        cluster); an exception raised from it stops the run, keeping the finished blocks for
        ``resume=True``. ``client``: a ``distributed.Client`` whose workers run the blocks
        (each loads the model once; Zarr outputs only; same bytes as a local run).
        ``channel`` / ``time``: which channel / time point of an input with several to
        enhance (0-based; such an input is refused without it)."""
        return self._run_file(input, output, mip=mip, resume=resume, overwrite=overwrite,
                              progress=progress, client=client, channel=channel, time=time)

    def _run_file(self, input: str | os.PathLike, output: str | os.PathLike | None, *,
                  mip: str | os.PathLike | None, resume: bool, overwrite: bool,
                  progress: Callable[[RunProgress], None] | None, client: Any,
                  channel: int | None, time: int | None, brief: bool = False) -> RunReport:
        """:meth:`run`; ``brief``: the backend, tile and blending lines (and the tile's time
        probe) only under ``--debug``, for the later parts of a series, which repeat them."""
        return enhance_file(self.engine, str(self.model_path), input, output, self.settings,
                            mip_dir=mip, resume=resume, overwrite=overwrite,
                            announce=None if brief else self.backend_reason,
                            progress=progress, client=client, engine_request=self._request,
                            channel=channel, time_point=time, brief=brief)

    def run_series(self, input: str | os.PathLike, output: str | os.PathLike | None = None,
                   *, mip: str | os.PathLike | None = None, resume: bool = False,
                   overwrite: bool = False,
                   progress: Callable[[RunProgress], None] | None = None,
                   client: Any = None, channel: int | str | None = None,
                   time: int | str | None = "all") -> list[RunReport]:
        """Every time point (``time="all"``) and/or channel (``channel="all"``) of a file,
        the model loaded once (``resin-run --time all``, ``--channel all``). By default
        into one Zarr store with the input's time / channel axes in front of z, y, x
        (``output`` or ``INPUT_resin.ome.zarr``); an ``output`` holding ``{t}`` / ``{c}``
        gives one output each. Everything is checked before the first is written; with
        ``resume`` the parts this model finished are kept and the unfinished one continues.
        Returns the reports of the parts run now (see :mod:`resin.runtime.series`)."""
        from resin.runtime.series import run_series

        return run_series(self, input, output, mip=mip, resume=resume, overwrite=overwrite,
                          progress=progress, client=client, channel=channel, time=time)

    def stream(self, shape: tuple[int, int, int], dtype: npt.DTypeLike,
               out: str | os.PathLike | None = None, levels: Levels | None = None,
               overwrite: bool = False, voxel_size: tuple[float, float, float] | None = None
               ) -> EnhanceStream:
        """Enhance a volume as it is acquired: push planes (or slabs) in z order.

        ``out``: a TIFF/Zarr path written chunk by chunk (as ``out.partial`` until the last
        plane, then renamed), or None for an in-memory result
        (``stream.result`` after close). ``levels``: the normalization; by default computed
        from the first slab of planes (one tile row), since later planes do not exist yet.
        """
        return EnhanceStream(self.engine, self.settings, shape, dtype, out, levels, overwrite,
                             voxel_size, model_path=str(self.model_path))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> Enhancer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EnhanceStream:
    """Accepts planes in acquisition order; each block runs as soon as its planes exist.

    The same engine as file and in-memory runs (:class:`BlockRunner`), with the pushed
    planes as the source: blocks are one tile step deep and span whole planes, so each runs
    once the planes its tiles read have arrived, and the bytes equal ``enhance()``'s.
    """

    def __init__(self, engine: Backend, settings: TileSettings, shape: tuple[int, int, int],
                 dtype: npt.DTypeLike, out: str | os.PathLike | None, levels: Levels | None,
                 overwrite: bool, voxel_size: tuple[float, float, float] | None,
                 model_path: str | None = None) -> None:
        self._model_path = model_path
        if len(shape) != 3 or min(int(s) for s in shape) < 1:
            raise VolumeError(f"stream shape must be a non-empty (Z, Y, X), got {tuple(shape)}")
        self.shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.dtype = np.dtype(dtype)
        if self.dtype.kind not in "uif":
            raise VolumeError(f"unsupported stream dtype {self.dtype}")
        self._engine = engine
        self._settings = settings
        self._out_dtype = output_dtype(self.dtype)
        self.plan: TilePlan = make_plan(engine, self.shape, settings, out_dtype=self._out_dtype)
        self._levels = levels
        self.result: np.ndarray | None = None
        self._writer: Any = None
        self._out = None if out is None else os.fspath(out)
        self._overwrite = overwrite
        self._voxel_size = voxel_size
        if self._out is None:
            self.result = np.empty(self.plan.out_shape, self._out_dtype)
            self._sink: Sink = ArraySink(self.result)
        else:
            from resin.errors import OutputExistsError
            from resin.io import output_format

            # refuse an existing output now; create it once the levels are known
            output_format(self._out)
            exists = Path(self._out).exists() or Path(self._out + ".partial").exists()
            if exists and not overwrite:
                raise OutputExistsError(f"{self._out} exists; pass overwrite=True to replace it")
        # blocks one tile step deep (whole planes): each runs as soon as its planes exist
        oz, oy, ox = self.plan.out_shape
        step_z = align_chunks(self.plan, target=(1, oy, ox))[0]
        self.blocks = BlockPlan(tiles=self.plan, block=(step_z, oy, ox), chunks=(step_z, oy, ox))
        self._blocks = list(self.blocks.blocks())
        z = self.shape[0]
        # input planes each block needs (the padding repeats the face planes)
        self._need: list[tuple[int, int]] = []
        for b in self._blocks:
            idx = np.concatenate([face_indices(s, self.plan.tile[0], z)
                                  for s in sorted({t.start[0] for t in b.tiles})])
            self._need.append((int(idx.min()), int(idx.max()) + 1))
        self._planes: list[np.ndarray] = []
        self._first = 0  # z of self._planes[0]
        self._received = 0
        self._written = 0
        self._next = 0
        self._runner: BlockRunner | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def received(self) -> int:
        """Input planes pushed so far."""
        return self._received

    @property
    def written(self) -> int:
        """Output planes ``[0, written)`` are final and written to the output."""
        return self._written

    def _block_written(self, block: Block) -> None:
        self._written = block.stop[0]

    def sync(self) -> int:
        """Wait until every finished block is written; returns :attr:`written`."""
        with self._lock:  # a block is written before push() returns
            return self._written

    def push(self, data: npt.ArrayLike) -> None:
        """Add the next plane ``(Y, X)`` or slab ``(k, Y, X)``; runs every row now complete."""
        arr = np.asarray(data)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or arr.shape[1:] != self.shape[1:]:
            raise VolumeError(f"pushed data of shape {np.asarray(data).shape} does not match "
                              f"planes of shape {self.shape[1:]}")
        with self._lock:
            if self._closed:
                raise UsageError("this stream is closed")
            if self._received + arr.shape[0] > self.shape[0]:
                raise VolumeError(f"pushed {self._received + arr.shape[0]} planes into a "
                                  f"stream of {self.shape[0]}")
            self._planes.extend(np.array(p, dtype=self.dtype) for p in arr)
            self._received += arr.shape[0]
            self._run_ready()

    def _read(self, region: tuple[slice, slice, slice]) -> np.ndarray:
        zs = region[0]
        lo, hi = zs.start - self._first, zs.stop - self._first
        if lo < 0 or hi > len(self._planes):
            raise AssertionError(f"planes {zs} are not buffered")
        return np.stack([p[region[1], region[2]] for p in self._planes[lo:hi]])

    def _ensure_runner(self) -> BlockRunner:
        if self._runner is None:
            if self._levels is None:
                n = len(self._planes)
                buf = np.stack(self._planes)
                norm = self._engine.metadata.normalization
                self._levels = sample_levels(lambda r: buf[r], (n, *self.shape[1:]),  # type: ignore[arg-type]
                                             norm.low_percentile, norm.high_percentile,
                                             source="stream")
                _log.log(f"stream: normalization levels from the first {n} planes: "
                         f"{self._levels.low:g} .. {self._levels.high:g}")
            if self._out is not None:
                self._create_output(self._levels)
            self._runner = BlockRunner(self._engine, self.blocks, self._levels,
                                       self._out_dtype, self._sink, self._settings.blend,
                                       self._settings.sigma_scale,
                                       on_written=self._block_written,
                                       device_blend=self._settings.device_blend)
        return self._runner

    def _create_output(self, levels: Levels) -> None:
        from resin.io import create_volume, output_format

        assert self._out is not None
        chunks = output_chunks(output_format(self._out), self.plan)
        attrs = output_attrs(self._engine, self._model_path, levels, self.plan,
                             self._settings, "stream")
        self._writer = create_volume(self._out, self.plan.out_shape, self._out_dtype,
                                     voxel_size=output_voxel_size(self._voxel_size, self.plan),
                                     chunks=chunks, overwrite=self._overwrite, attrs=attrs)
        self._sink = self._writer

    def _run_ready(self) -> None:
        n = len(self._blocks)
        while self._next < n and self._need[self._next][1] <= self._received:
            runner = self._ensure_runner()
            runner.run(self._read, [self._blocks[self._next]], read_ahead=False)
            self._next += 1
            # drop planes no later block needs
            keep_from = (min(lo for lo, _ in self._need[self._next:])
                         if self._next < n else self._received)
            drop = keep_from - self._first
            if drop > 0:
                del self._planes[:drop]
                self._first = keep_from

    def close(self) -> np.ndarray | None:
        """All planes pushed: finish, write the last chunks; returns the in-memory result."""
        with self._lock:
            if self._closed:
                return self.result
            self._closed = True
            if self._received != self.shape[0]:
                self._abort()
                raise VolumeError(f"stream closed after {self._received} of {self.shape[0]} "
                                  "planes")
            if self._next != len(self._blocks):  # cannot happen once every plane is in
                self._abort()
                raise AssertionError(f"stream: {len(self._blocks) - self._next} blocks not run")
            if self._writer is not None:
                self._writer.close()
            return self.result

    def _abort(self) -> None:
        abandon = getattr(self._writer, "abandon", None)
        if callable(abandon):
            abandon()

    def __enter__(self) -> EnhanceStream:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            with self._lock:
                self._closed = True
                self._abort()
