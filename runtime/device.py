"""The GPU-resident blend of :class:`resin.runtime.blocks.BlockRunner`.

Used when the engine can leave a tile's output in GPU memory
(:class:`resin.runtime.backends._base.DeviceBackend`: TensorRT, ONNX Runtime's CUDA
provider) and host blending was not asked for. Per block:

- the accumulator and weight sum live on the device (allocated once per block shape and
  cleared there); the blend window is uploaded once per run;
- each tile's kept core is copied out of the network's output into float32 by
  ``keep_core``, which also counts its NaN/infinite voxels into a per-tile slot of a small
  device array, then blended with the CUDA ``accumulate`` kernel;
- ``finalize`` runs on the device; the per-tile counts come back (one small copy, the only
  wait on the compute stream per block) and a tile with a bad value fails the run with
  :func:`resin.runtime.pipeline.nonfinite_error`'s message, naming the first such tile;
- the output MIPs are updated on the device from the finalized block and copied back into
  the host :class:`~resin.runtime.pipeline.Mips` when the run ends;
- the finished block is copied into pinned host memory on a second stream, ordered after
  ``finalize`` by an event, so the copy overlaps the next block's tiles. The block goes to
  the writer only after that copy's event has completed (checked on the calling thread
  when the next block finishes, or at the end of the run), so the writer thread never
  touches memory a copy is still filling;
- the finalized block's device array and its pinned host copy come from pools
  (:class:`BufferPool`) and go back to them once the copy is complete and once the writer
  has written the block: page-locking host memory costs about as much as copying it, so a
  run allocates a handful of each (blocks in flight, by shape) instead of two per block.

Kernels run on the engine's ``device_stream`` (behind its inference) or, when it has none,
on a stream of this module's own. The order of contributions per voxel is the host path's
(the same tiles in the same order), so the two paths agree to float32 rounding: the GPU may
fuse ``acc + tile * w`` into one FMA where the CPU kernel rounds twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from resin.runtime.backends._base import Backend
from resin.runtime.pipeline import Mips, TileKeeper, Writer, nonfinite_error, run_engine
from resin.runtime.planner import Tile

if TYPE_CHECKING:
    from resin.runtime.blocks import Block
    from resin.runtime.normalize import Levels


class BufferPool:
    """Arrays by shape and dtype, made by ``make(shape, dtype)`` when none is free and handed
    back by ``give`` for reuse (from any thread). ``made`` counts the arrays ever made."""

    def __init__(self, make: Callable[[tuple[int, ...], np.dtype], Any]) -> None:
        self._make = make
        self._free: dict[tuple[tuple[int, ...], str], list[Any]] = {}
        self._lock = threading.Lock()
        self.made = 0

    @staticmethod
    def _key(shape: tuple[int, ...], dtype: Any) -> tuple[tuple[int, ...], str]:
        return tuple(int(n) for n in shape), np.dtype(dtype).str

    def take(self, shape: tuple[int, ...], dtype: Any) -> Any:
        key = self._key(shape, dtype)
        with self._lock:
            free = self._free.get(key)
            if free:
                return free.pop()
            self.made += 1
        return self._make(key[0], np.dtype(dtype))

    def give(self, array: Any) -> None:
        key = self._key(array.shape, array.dtype)
        with self._lock:
            self._free.setdefault(key, []).append(array)


class DeviceBlender:
    """Blends, finalizes and projects the blocks of one run on the GPU (module docstring)."""

    def __init__(self, engine: Backend, keeper: TileKeeper, levels: Levels,
                 out_dtype: np.dtype, mips: Mips | None) -> None:
        from numba import cuda
        from resin.kernels import _cuda

        self._cuda, self._k = cuda, _cuda
        self.engine, self.keeper, self.levels = engine, keeper, levels
        self.out_dtype = np.dtype(out_dtype)
        self.stream = getattr(engine, "device_stream", None) or cuda.stream()
        self.copy_stream = cuda.stream()
        self._window = (None if keeper.window is None
                        else cuda.to_device(keeper.window, stream=self.stream))
        self._ones: dict[tuple[int, ...], Any] = {}
        self._cores: dict[tuple[int, ...], Any] = {}
        self.mips = mips
        self._mips_dev = (None if mips is None else
                          tuple(cuda.to_device(a, stream=self.stream)
                                for a in (mips.along_z, mips.along_y, mips.along_x)))
        self._acc: Any = None
        self._wsum: Any = None
        self._bad: Any = None
        self._tiles: list[Tile] = []
        self._open = False
        #: finalized blocks on the device, and their pinned host copies (module docstring)
        self.device_out = BufferPool(lambda shape, dt: cuda.device_array(shape, dtype=dt,
                                                                         stream=self.stream))
        self.pinned = BufferPool(lambda shape, dt: cuda.pinned_array(shape, dtype=dt))
        #: the last finished block while its copy to the host runs
        self._pending: tuple[Any, np.ndarray, Any, Block, Callable[[], None]] | None = None

    # -- tiles --------------------------------------------------------------------------
    def _begin(self, block: Block) -> None:
        k = self._k
        if self._acc is None or tuple(self._acc.shape) != block.shape:
            self._acc = k.zeros(block.shape, self.stream)
            self._wsum = k.zeros(block.shape, self.stream)
        else:
            k.clear(self._acc, self.stream)
            k.clear(self._wsum, self.stream)
        self._bad = self._cuda.to_device(np.zeros(max(1, block.n_tiles), np.int32),
                                         stream=self.stream)
        self._tiles = []
        self._open = True

    def _buffer(self, cache: dict, shape: tuple[int, ...], ones: bool) -> Any:
        buf = cache.get(shape)
        if buf is None:
            if ones:
                buf = self._cuda.to_device(self.keeper.window_for(shape), stream=self.stream)
            else:
                buf = self._cuda.device_array(shape, dtype=np.float32, stream=self.stream)
            cache[shape] = buf
        return buf

    def add(self, block: Block, tile: Tile, x: np.ndarray) -> None:
        """Run ``tile`` and blend its kept core into the block's device accumulator."""
        from resin.kernels import accumulate

        if not self._open:
            self._begin(block)
        y = run_engine(self.engine.infer_device, x)  # type: ignore[attr-defined]
        sl, where = self.keeper.place(tile, x.shape, tuple(int(n) for n in y.shape))
        shape = tuple(s.stop - s.start for s in sl)
        core = self._buffer(self._cores, shape, ones=False)
        window = self._window if self._window is not None else self._buffer(self._ones, shape,
                                                                            ones=True)
        self._k.keep_core(y[0, 0], core, (sl[0].start, sl[1].start, sl[2].start), self._bad,
                          len(self._tiles), self.stream)
        self._tiles.append(tile)
        accumulate(self._acc, self._wsum, core, window,
                   tuple(where[i] - block.start[i] for i in range(3)), stream=self.stream)

    # -- blocks -------------------------------------------------------------------------
    def finish(self, block: Block, writer: Writer, then: Callable[[], None]) -> None:
        """Finalize ``block`` on the device, check its tiles, update the MIPs and start its
        copy to pinned host memory; the previous block goes to ``writer``."""
        from resin.kernels import finalize, mip_update

        if not self._open:
            self._begin(block)
        out = finalize(self._acc, self._wsum, self.out_dtype, low=self.levels.low,
                       high=self.levels.high, out=self.device_out.take(block.shape,
                                                                       self.out_dtype),
                       stream=self.stream)
        bad = self._bad.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        self._open = False
        hit = np.flatnonzero(bad[:len(self._tiles)])
        if hit.size:
            raise nonfinite_error(int(bad[hit[0]]), self._tiles[hit[0]])
        if self._mips_dev is not None:
            mip_update(*self._mips_dev, out, block.start, stream=self.stream)
        self.hand_over(writer)
        cuda = self._cuda
        finalized = cuda.event()
        finalized.record(self.stream)
        finalized.wait(self.copy_stream)
        host = self.pinned.take(block.shape, self.out_dtype)
        out.copy_to_host(host, stream=self.copy_stream)
        copied = cuda.event()
        copied.record(self.copy_stream)
        self._pending = (copied, host, out, block, then)

    def hand_over(self, writer: Writer) -> None:
        """Give the block whose copy is under way to ``writer`` once the copy is complete."""
        if self._pending is None:
            return
        copied, host, out, block, then = self._pending
        copied.synchronize()
        self._pending = None
        self.device_out.give(out)

        def written() -> None:
            self.pinned.give(host)
            then()

        writer.put(block.region, host, written)

    def close(self) -> None:
        """Bring the device MIPs back into the host ones (after a failure too: they hold
        only blocks that were finalized and checked)."""
        self._pending = None
        if self._mips_dev is None or self.mips is None:
            return
        self.stream.synchronize()
        for dev, host in zip(self._mips_dev, (self.mips.along_z, self.mips.along_y,
                                              self.mips.along_x), strict=True):
            dev.copy_to_host(host)
