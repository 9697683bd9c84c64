"""Shared pieces of the streaming engine (:mod:`resin.runtime.blocks` runs them).

- :class:`TileKeeper`: the part of a tile's network output that is kept, its window and its
  place in the output; refuses NaN/infinity, naming the tile.
- :class:`Writer`: the write-behind thread (write a finished region, update MIPs, then the
  item's follow-up such as a done marker).
- :class:`Mips`, :func:`update_raw_mips`: running maximum-intensity projections.
- :class:`ArraySink`, out-of-memory detection and the smaller tile of a retry.

Stages overlap: a read-ahead thread reads and normalizes tiles, the calling thread runs
inference and blends, the writer thread writes.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from resin.runtime.backends._base import Backend
from resin.runtime.planner import Tile, TilePlan, min_tile

Region = tuple[slice, slice, slice]
ReadFn = Callable[[Region], np.ndarray]

#: tiles read ahead of inference; output slabs queued for the writer
QUEUE_DEPTH = 2

# The kernels are safe to call from the reader, main and writer threads at once:
# resin.kernels serializes parallel regions itself where Numba's threading layer needs it.


class Sink(Protocol):
    """Where finished output goes: a :class:`resin.io.VolumeWriter` or an in-memory array."""

    def write(self, region: Region, array: np.ndarray) -> None: ...


class ArraySink:
    """A sink that fills a NumPy array (``Enhancer.enhance``)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def buffer(self, region: Region) -> np.ndarray:
        """The array's own voxels of ``region``, for a block to be finalized into in place
        (a sink without this method gets a separate block buffer)."""
        return self.array[region]

    def write(self, region: Region, array: np.ndarray) -> None:
        target = self.array[region]
        if (array.__array_interface__["data"] == target.__array_interface__["data"]
                and array.strides == target.strides and array.shape == target.shape):
            return  # finalized in place (``buffer``)
        target[...] = array


@dataclass
class Mips:
    """Running maximum-intensity projections of the output (along z, y, x)."""

    along_z: np.ndarray
    along_y: np.ndarray
    along_x: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, int, int], dtype: np.dtype) -> Mips:
        from resin.kernels import mip_init

        mz, my, mx = mip_init(shape, dtype)
        return cls(mz, my, mx)

    def update(self, chunk: np.ndarray, offset: tuple[int, int, int]) -> None:
        from resin.kernels import mip_update

        mip_update(self.along_z, self.along_y, self.along_x, chunk, offset)


class OutOfMemory(Exception):
    """Inference ran out of memory (the runner retries unwritten blocks with smaller tiles)."""


_OOM = re.compile(r"out of memory|failed to allocate|bad_alloc|cudaErrorMemoryAllocation"
                  r"|OUT_OF_MEMORY", re.IGNORECASE)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or bool(_OOM.search(str(exc)))


def update_raw_mips(mips: Mips, plan: TilePlan, raw: np.ndarray, tile: Tile,
                    lo_bound: tuple[int, ...] = (0, 0, 0),
                    hi_bound: tuple[int, ...] | None = None) -> None:
    """Update the input's MIPs from what a tile keeps (its kept region, or its core when
    cores are blended; clipped to the volume and to ``[lo_bound, hi_bound)``): every input
    voxel lies in some tile's."""
    hi_bound = hi_bound or plan.shape
    lo, hi = [], []
    for i in range(3):
        a, b = plan.axes[i].kept(tile.index[i], plan.partition)
        lo.append(max(0, a, lo_bound[i]))
        hi.append(min(plan.shape[i], b, hi_bound[i]))
    if any(h <= lo_ for lo_, h in zip(lo, hi, strict=True)):
        return
    start = tile.start
    sub = raw[tuple(slice(lo[i] - start[i], hi[i] - start[i]) for i in range(3))]
    mips.update(np.ascontiguousarray(sub), (lo[0], lo[1], lo[2]))


class TileKeeper:
    """The part of a tile's network output that is kept, its blend window and its place in
    the output; checks the output's shape and refuses NaN/infinity (naming the tile)."""

    def __init__(self, plan: TilePlan, blend: str = "gaussian",
                 sigma_scale: float = 0.125) -> None:
        from resin.kernels import tile_window

        self.plan = plan
        self.window = None if plan.partition else tile_window(plan.out_core, mode=blend,
                                                              sigma_scale=sigma_scale)
        self._ones: dict[tuple[int, ...], np.ndarray] = {}

    def infer(self, engine: Backend, tile: Tile, x: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
        """Run the network on one tile and :meth:`keep` its output; out-of-memory becomes
        :class:`OutOfMemory`."""
        return self.keep(tile, x, run_engine(engine.infer, x))

    def place(self, tile: Tile, x_shape: tuple[int, ...], y_shape: tuple[int, ...]
              ) -> tuple[tuple[slice, slice, slice], tuple[int, int, int]]:
        """Where the kept part lies in a tile's output of ``y_shape`` (checked against the
        scale for an input of ``x_shape``), and where it goes in the output volume."""
        p = self.plan
        expect = tuple(int(x_shape[i + 2] * p.scale[i]) for i in range(3))
        if len(y_shape) != 5 or tuple(y_shape[2:]) != expect:
            from resin.errors import ModelError

            raise ModelError(f"the model returned a tile of shape {tuple(y_shape)} for input "
                             f"{tuple(x_shape)}; its metadata promises scale {p.scale}")
        if p.partition:
            return p.kept_region(tile)
        return p.core_slices(), p.out_core_start(tile)

    def window_for(self, core_shape: tuple[int, ...]) -> np.ndarray:
        """The blend window of a kept core (ones when the tiles partition the output)."""
        if self.window is not None:
            return self.window
        window = self._ones.get(core_shape)
        if window is None:
            window = self._ones[core_shape] = np.ones(core_shape, np.float32)
        return window

    def keep(self, tile: Tile, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                     tuple[int, int, int]]:
        sl, where = self.place(tile, x.shape, y.shape)
        core = np.ascontiguousarray(y[0, 0][sl], dtype=np.float32)
        if not np.isfinite(core).all():
            raise nonfinite_error(int(core.size - np.count_nonzero(np.isfinite(core))), tile)
        return core, self.window_for(core.shape), where


def run_engine(infer: Callable[[np.ndarray], Any], x: np.ndarray) -> Any:
    """``infer(x)``, with an out-of-memory error turned into :class:`OutOfMemory`."""
    try:
        return infer(x)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise OutOfMemory(str(exc)) from exc
        raise


def nonfinite_error(bad: int, tile: Tile) -> Exception:
    """The error for a tile whose kept output held ``bad`` NaN/infinite values."""
    from resin.errors import InferenceError

    return InferenceError(
        f"the network returned {bad} NaN/infinite values for the tile read at z,y,x "
        f"{tuple(tile.start)} (tile {tuple(tile.index)}); the model or the backend is "
        "broken (try --backend onnxruntime --device cpu, or re-export the model)")


def overflow_error(data: np.ndarray, region: Region) -> Exception:
    """The error for finished output holding infinities: the network's finite, normalized
    output scaled back to the input's levels passed the float32 limit (the input's values
    are that close to it)."""
    from resin.errors import VolumeError

    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    return VolumeError(
        f"the enhanced volume overflows float32 ({bad} voxels of the block at z,y,x "
        f"{tuple(int(s.start or 0) for s in region)} are infinite): the input's values are "
        f"too close to float32's limit ({float(np.finfo(np.float32).max):.2e}); scale the "
        "volume down and run again with --overwrite")


class Writer:
    """The write-behind thread: writes finished regions, updates the MIPs from them, then
    calls the item's ``then`` (progress records, done markers)."""

    def __init__(self, sink: Sink, mips: Mips | None) -> None:
        self.sink = sink
        self.mips = mips
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = threading.Thread(
            target=self._loop, name="resin-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is not None:
                    continue  # drain so the producer never blocks
                region, data, then = item
                try:
                    if data.dtype.kind == "f" and not np.isfinite(data).all():
                        raise overflow_error(data, region)
                    self.sink.write(region, data)
                    if self.mips is not None:
                        self.mips.update(data, tuple(s.start for s in region))
                    if then is not None:
                        then()
                except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                    self._error = exc
            finally:
                self._queue.task_done()

    def put(self, region: Region, data: np.ndarray,
            then: Callable[[], None] | None = None) -> None:
        self.check()
        self._queue.put((region, data, then))

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self.check()


def shrink_tile(plan: TilePlan, size_multiple: int) -> tuple[int, int, int] | None:
    """A smaller tile for an out-of-memory retry (the largest side halved), or None."""
    tile, m = list(plan.tile), size_multiple
    order = sorted(range(3), key=lambda i: tile[i] - 2 * plan.halo[i], reverse=True)
    for i in order:
        core = tile[i] - 2 * plan.halo[i]
        new_core = max(m, (core // 2 // m) * m)
        new = new_core + 2 * plan.halo[i]
        new = -(-max(new, min_tile(plan.halo[i], plan.axes[i].pad, m)) // m) * m
        if new < tile[i]:
            tile[i] = new
            return (tile[0], tile[1], tile[2])
    return None


def describe(x: Any) -> str:
    return "x".join(str(int(v)) for v in x)
