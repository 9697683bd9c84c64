"""3-D output blocks: the unit of work, of memory, of writing and of resuming.

The output is cut into blocks aligned to a grid of *chunks* (the output store's chunks,
chosen as whole multiples of the tile grid's step so that tile cores and blocks share
boundaries). A block runs every tile of the one global tile grid whose kept core reaches
it, in the global tile order, and blends them into an accumulator of the block's size
only (tiles that partition the output, the default, are written straight into the
block's output: :meth:`BlockRunner.run`). Each output voxel therefore receives the same
contributions in the same order whatever the block size, the order blocks run in, or the
process that runs them: the output is byte-identical to a single-block run. Memory is one
block (its output, or with blended cores two float32 accumulators) plus a few tiles, flat
in every axis. This holds on either path, host or GPU-resident
(:mod:`resin.runtime.device`); between the two paths the contributions and their order are
the same, and the outputs are bit-identical in Numba's CUDA simulator, while a GPU that
fuses ``acc + tile * w`` into one FMA may differ in the last float32 bit (and an integer
output by one at a rounding boundary).

A tile whose kept region reaches two blocks runs once for each (the *redundant* work,
reported by :attr:`BlockPlan.redundant_share`). Without extra overlap the tiles partition
the output on multiples of the tile step (:meth:`AxisPlan.kept`) and blocks are whole
multiples of it, so no tile runs twice, unless an end tile keeps more than a step (with
zero-padded faces, where no step the tile allows avoids it); with ``--overlap`` (blended
cores) or a block off the step, the tiles across each block face do.
"""

from __future__ import annotations

import functools
import itertools
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from resin.runtime.backends._base import Backend, device_resident
from resin.runtime.normalize import Levels, normalize_tile
from resin.runtime.pipeline import (
    QUEUE_DEPTH,
    Mips,
    ReadFn,
    Sink,
    TileKeeper,
    Writer,
    update_raw_mips,
)
from resin.runtime.planner import AxisPlan, Tile, TilePlan, read_padded

from resin import _log
from resin.errors import UsageError

Triple = tuple[int, int, int]
Region = tuple[slice, slice, slice]

#: approximate default block, output voxels (~110 MB of uint16 output; blended cores
#: (``--overlap``) add two float32 accumulators of ~220 MB each)
DEFAULT_BLOCK = (96, 768, 768)
#: approximate output chunk of a Zarr output (the alignment grid of blocks)
DEFAULT_CHUNK = (32, 256, 256)


def _step(axis: AxisPlan) -> int:
    """Distance between neighbouring kept boundaries (the whole core when one tile)."""
    return axis.step


def align_chunks(plan: TilePlan, target: Triple = DEFAULT_CHUNK) -> Triple:
    """Output chunks that are whole multiples of the tile step (about ``target``)."""
    out = []
    for i in range(3):
        step = _step(plan.axes[i]) * plan.scale[i]
        c = step * max(1, round(target[i] / step))
        out.append(max(1, min(c, plan.out_shape[i])))
    return out[0], out[1], out[2]


def choose_block(plan: TilePlan, chunks: Triple, block: Sequence[int] | None = None,
                 shards: Sequence[int] | None = None) -> Triple:
    """The block shape: ``block`` (or :data:`DEFAULT_BLOCK`, to the nearest whole chunk)
    rounded up to whole chunks (whole shards when sharded), at most the output's extent."""
    unit = tuple(int(v) for v in (shards if shards is not None else chunks))
    if block is not None:
        vals = tuple(int(v) for v in block)
        if len(vals) != 3 or min(vals) < 1:
            raise UsageError(f"--block needs three positive integers Z Y X, got {tuple(block)}")
    else:
        vals = DEFAULT_BLOCK
    out = []
    for i in range(3):
        whole = -(-plan.out_shape[i] // unit[i]) * unit[i]
        if block is None:
            b = unit[i] * max(1, round(vals[i] / unit[i]))
        else:
            b = -(-vals[i] // unit[i]) * unit[i]
        out.append(min(b, whole))
    return out[0], out[1], out[2]


def working_bytes(block_voxels: Any, tile_voxels: Any, scale_voxels: int,
                  out_itemsize: int, partition: bool = True, blocks: Any = None) -> Any:
    """Host memory a run holds besides the network's own, for blocks and tiles of these
    sizes (numbers or arrays of them): the block being filled, finalized blocks queued for
    the writer, and the tiles read ahead or in flight (network input and output). Tiles
    that ``partition`` the output fill the block's output directly; blended cores
    (``--overlap``) need two float32 accumulators of the block instead. ``blocks``: how
    many blocks the run has (None: many), since a run of fewer never holds more."""
    tiles = (QUEUE_DEPTH + 2) * tile_voxels * 4 * (1 + scale_voxels)
    if partition:
        held = QUEUE_DEPTH + 2 if blocks is None else np.minimum(QUEUE_DEPTH + 2, blocks)
        return held * block_voxels * out_itemsize + tiles
    held = QUEUE_DEPTH + 1 if blocks is None else np.minimum(QUEUE_DEPTH + 1, blocks)
    return 2 * 4 * block_voxels + held * block_voxels * out_itemsize + tiles


@dataclass(frozen=True)
class Block:
    """One output block: ``[start, stop)`` in output voxels and the tiles reaching it.

    The tiles are kept as their indices per axis (``reach``) over the plan's tile starts and
    made on demand, so listing every block of a terabyte volume stays small.
    """

    index: Triple
    start: Triple
    stop: Triple
    reach: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    starts: tuple[tuple[int, ...], ...] = field(repr=False, compare=False)

    @property
    def tiles(self) -> tuple[Tile, ...]:
        """The tiles reaching this block, in the global tile order."""
        s = self.starts
        return tuple(Tile((iz, iy, ix), (s[0][iz], s[1][iy], s[2][ix]))
                     for iz, iy, ix in itertools.product(*self.reach))

    @property
    def n_tiles(self) -> int:
        return math.prod(len(r) for r in self.reach)

    def input_region(self, scale: Triple) -> Region:
        """The input voxels under this block (its output region divided by the scale)."""
        return (slice(self.start[0] // scale[0], -(-self.stop[0] // scale[0])),
                slice(self.start[1] // scale[1], -(-self.stop[1] // scale[1])),
                slice(self.start[2] // scale[2], -(-self.stop[2] // scale[2])))

    @property
    def shape(self) -> Triple:
        return (self.stop[0] - self.start[0], self.stop[1] - self.start[1],
                self.stop[2] - self.start[2])

    @property
    def region(self) -> Region:
        return (slice(self.start[0], self.stop[0]), slice(self.start[1], self.stop[1]),
                slice(self.start[2], self.stop[2]))

    @property
    def voxels(self) -> int:
        return math.prod(self.shape)

    @property
    def key(self) -> str:
        return ".".join(str(i) for i in self.index)


@functools.lru_cache(maxsize=1024)
def _tiles_reaching(plan: TilePlan, axis: int, lo: int, hi: int) -> tuple[int, ...]:
    """Indices along ``axis`` of tiles whose output core overlaps ``[lo, hi)`` (the same
    few ranges recur for every block of a plan: computed once)."""
    a, s, n = plan.axes[axis], plan.scale[axis], plan.out_shape[axis]
    found = []
    for i, start in enumerate(a.starts):
        k0, k1 = a.kept(i, True) if plan.partition else (start + a.halo,
                                                          start + a.tile - a.halo)
        c0, c1 = k0 * s, min(k1 * s, n)
        if c0 < hi and c1 > lo:
            found.append(i)
    return tuple(found)


@dataclass(frozen=True)
class BlockPlan:
    """The blocks of one run over one :class:`TilePlan`, in z-major order."""

    tiles: TilePlan
    block: Triple
    chunks: Triple

    @property
    def grid(self) -> Triple:
        o = self.tiles.out_shape
        return (-(-o[0] // self.block[0]), -(-o[1] // self.block[1]),
                -(-o[2] // self.block[2]))

    @property
    def n_blocks(self) -> int:
        return math.prod(self.grid)

    def block_at(self, index: Sequence[int]) -> Block:
        plan, o = self.tiles, self.tiles.out_shape
        start = tuple(int(index[i]) * self.block[i] for i in range(3))
        stop = tuple(min(start[i] + self.block[i], o[i]) for i in range(3))
        reach = tuple(_tiles_reaching(plan, i, start[i], stop[i]) for i in range(3))
        return Block(index=(int(index[0]), int(index[1]), int(index[2])),
                     start=(start[0], start[1], start[2]), stop=(stop[0], stop[1], stop[2]),
                     reach=reach,  # type: ignore[arg-type]
                     starts=tuple(a.starts for a in plan.axes))

    def blocks(self) -> Iterator[Block]:
        for index in itertools.product(*(range(g) for g in self.grid)):
            yield self.block_at(index)

    def working_bytes(self, out_dtype: Any) -> int:
        """Host memory a run of this plan holds besides the network's own
        (:func:`working_bytes`)."""
        extent = math.prod(min(b, o) for b, o in zip(self.block, self.tiles.out_shape,
                                                     strict=True))
        return int(working_bytes(extent, math.prod(self.tiles.tile),
                                 math.prod(self.tiles.scale), np.dtype(out_dtype).itemsize,
                                 self.tiles.partition, self.n_blocks))

    @property
    def tile_runs(self) -> int:
        """Network calls over all blocks (tiles reaching two blocks count twice)."""
        per_axis = []
        for i in range(3):
            n = 0
            for b in range(self.grid[i]):
                lo = b * self.block[i]
                n += len(_tiles_reaching(self.tiles, i, lo,
                                         min(lo + self.block[i], self.tiles.out_shape[i])))
            per_axis.append(n)
        return math.prod(per_axis)

    @property
    def redundant_share(self) -> float:
        """Extra network calls caused by blocking, as a share of the tiles (0 = none)."""
        return self.tile_runs / self.tiles.n_tiles - 1.0


def make_block_plan(plan: TilePlan, block: Sequence[int] | None = None,
                    chunks: Triple | None = None,
                    shards: Sequence[int] | None = None) -> BlockPlan:
    """The blocks of a run: ``block`` (``--block``), else the one the memory budget chose
    (``plan.block``, never below one chunk), else :data:`DEFAULT_BLOCK`."""
    if chunks is None:
        chunks = align_chunks(plan)
        if shards is not None:  # chunks must tile a shard
            chunks = tuple(math.gcd(c, int(s)) for c, s in zip(chunks, shards,  # type: ignore[assignment]
                                                                  strict=True))
        elif block is not None:  # a block smaller than a chunk: smaller chunks
            chunks = (min(chunks[0], int(block[0])), min(chunks[1], int(block[1])),
                      min(chunks[2], int(block[2])))
    if block is None:  # the budget's block: whole chunks, which it never shrinks
        block = plan.block
    return BlockPlan(tiles=plan, block=choose_block(plan, chunks, block, shards), chunks=chunks)


# -- running blocks ---------------------------------------------------------------------------

class BlockRunner:
    """Runs blocks of a :class:`BlockPlan`: read-ahead -> inference -> blend -> write.

    Three threads overlap: a reader reads and normalizes tiles (and updates the input's
    MIPs), the calling thread runs inference and blends, a writer writes finished blocks
    and calls ``on_written(block)`` once a block's data is in the sink.

    With an engine whose outputs can stay on the GPU (``device_resident``) and
    ``device_blend`` left on, tiles are blended, blocks finalized and output MIPs updated on
    the GPU (:class:`resin.runtime.device.DeviceBlender`); otherwise on the CPU.
    """

    def __init__(self, engine: Backend, bplan: BlockPlan, levels: Levels, out_dtype: np.dtype,
                 sink: Sink, blend: str = "gaussian", sigma_scale: float = 0.125,
                 mips: Mips | None = None, raw_mips: Mips | None = None,
                 on_written: Callable[[Block], None] | None = None,
                 on_tile: Callable[[], None] | None = None,
                 device_blend: bool = True) -> None:
        self.engine = engine
        #: blend on the GPU: asked for and the engine's outputs can stay there
        self.device_blend = bool(device_blend) and device_resident(engine)
        self.bplan = bplan
        self.plan = bplan.tiles
        self.levels = levels
        self.out_dtype = np.dtype(out_dtype)
        self.in_dtype = np.dtype(engine.metadata.input_dtype)
        self.keeper = TileKeeper(self.plan, blend, sigma_scale)
        self.sink = sink
        self.mips = mips
        self.raw_mips = raw_mips
        self.on_written = on_written
        self.on_tile = on_tile
        #: keys of the blocks written so far (an out-of-memory retry skips them)
        self.done: set[str] = set()
        _log.debug(blend_path(engine, device_blend))

    # -- one tile ---------------------------------------------------------------------------
    def prepare(self, read: ReadFn, block: Block, tile: Tile) -> np.ndarray:
        raw = read_padded(read, self.plan.shape, tile.start, self.plan.tile)
        x = normalize_tile(raw, self.levels, self.in_dtype)[None, None]
        if self.raw_mips is not None:  # the part of the core inside this block
            region = block.input_region(self.plan.scale)
            update_raw_mips(self.raw_mips, self.plan, raw, tile,
                            tuple(s.start for s in region), tuple(s.stop for s in region))
        return x

    # -- blocks -----------------------------------------------------------------------------
    def run(self, read: ReadFn, blocks: Sequence[Block], read_ahead: bool = True) -> None:
        """Run ``blocks`` in order; each is written (and ``on_written``) before this returns."""
        from resin.kernels import accumulate, finalize

        gpu = None
        if self.device_blend:
            from resin.runtime.device import DeviceBlender

            gpu = DeviceBlender(self.engine, self.keeper, self.levels, self.out_dtype,
                                self.mips)
        writer = Writer(self.sink, None if gpu is not None else self.mips)
        items = ((b, t) for b in blocks for t in (*b.tiles, None))
        source = _ReadAhead(self, read, items) if read_ahead else None
        # Tiles that partition the output give each voxel one core at weight 1, so the
        # blend ``acc / wsum`` is the core itself: each core is finalized straight into the
        # block's output (the same kernel on the same values, so the same bytes) and no
        # float32 accumulators are held (8 bytes per block voxel).
        direct = self.keeper.window is None
        acc: np.ndarray | None = None
        wsum: np.ndarray | None = None
        try:
            for block, tile, x in (source if source is not None else
                                   _inline(self, read, items)):
                if gpu is not None:
                    if tile is not None:
                        gpu.add(block, tile, x)
                        if self.on_tile is not None:
                            self.on_tile()
                    else:
                        gpu.finish(block, writer, lambda b=block: self._written(b))
                    continue
                if acc is None:
                    if direct:  # the block's output itself, filled core by core
                        acc = self._block_buffer(block)
                    else:
                        acc = np.zeros(block.shape, np.float32)
                        wsum = np.zeros(block.shape, np.float32)
                if tile is not None:
                    core, window, where = self.keeper.infer(self.engine, tile, x)
                    offset = tuple(where[i] - block.start[i] for i in range(3))
                    if direct:
                        self._finalize_into(acc, core, window, offset)
                    else:
                        accumulate(acc, wsum, core, window, offset)
                    if self.on_tile is not None:
                        self.on_tile()
                    continue
                if direct:
                    out = acc
                else:
                    assert wsum is not None
                    out = finalize(acc, wsum, self.out_dtype, low=self.levels.low,
                                   high=self.levels.high)
                writer.put(block.region, out, lambda b=block: self._written(b))
                acc = wsum = None
            if gpu is not None:
                gpu.hand_over(writer)
                gpu.close()
            writer.close()
        except BaseException:
            if source is not None:
                source.stop()
            if gpu is not None:
                # the block finished before the failure is still written, and the MIPs of
                # written blocks come back for an out-of-memory retry
                for step in (lambda: gpu.hand_over(writer), gpu.close):
                    try:
                        step()
                    except BaseException as exc:  # noqa: BLE001 - the first error is reported
                        _log.debug(f"GPU error after a failed block: {exc}")
            try:
                writer.close()
            except BaseException as exc:  # noqa: BLE001 - the first error is the one reported
                _log.debug(f"writer error after a failed block: {exc}")
            raise

    def _block_buffer(self, block: Block) -> np.ndarray:
        """Zeros of the block's shape in the output dtype: the sink's own voxels where it
        offers them (an in-memory result), else a new array."""
        buffer = getattr(self.sink, "buffer", None)
        out = None if buffer is None else buffer(block.region)
        if out is None or out.dtype != self.out_dtype:
            return np.zeros(block.shape, self.out_dtype)
        out[...] = 0
        return out

    def _finalize_into(self, out: np.ndarray, core: np.ndarray, ones: np.ndarray,
                       offset: tuple[int, ...]) -> None:
        """Finalize a kept core (weights ``ones``) into the block's output ``out`` at
        ``offset``, clipped to the block."""
        from resin.kernels import _common, finalize

        region = _common.clip_region(out.shape, core.shape, (offset[0], offset[1], offset[2]))
        if region is None:
            return
        (az, ay, ax), (tz, ty, tx), (nz, ny, nx) = region
        done = finalize(core, ones, self.out_dtype, low=self.levels.low, high=self.levels.high)
        out[az:az + nz, ay:ay + ny, ax:ax + nx] = done[tz:tz + nz, ty:ty + ny, tx:tx + nx]

    def _written(self, block: Block) -> None:
        self.done.add(block.key)
        if self.on_written is not None:
            self.on_written(block)


def blend_path(engine: Backend, device_blend: bool = True) -> str:
    """One line saying where tiles are blended for ``engine`` (the log says it per run)."""
    if device_resident(engine):
        if device_blend:
            return (f"blending on the GPU: {engine.name} outputs stay in device memory, "
                    "blocks return to the host finished")
        return f"blending on the CPU (host blending asked for; {engine.name} could keep tiles on the GPU)"
    return f"blending on the CPU ({engine.name} on {engine.device} returns host arrays)"


def _inline(runner: BlockRunner, read: ReadFn,
            items: Iterator[tuple[Block, Tile | None]]) -> Iterator[tuple[Block, Tile | None, Any]]:
    for block, tile in items:
        yield block, tile, (None if tile is None else runner.prepare(read, block, tile))


class _ReadAhead:
    """Reads and normalizes the next tiles on a thread while the caller runs inference."""

    def __init__(self, runner: BlockRunner, read: ReadFn,
                 items: Iterator[tuple[Block, Tile | None]]) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._stop = threading.Event()

        def produce() -> None:
            try:
                for block, tile in items:
                    if self._stop.is_set():
                        return
                    x = None if tile is None else runner.prepare(read, block, tile)
                    self._q.put(("item", (block, tile, x)))
                self._q.put(("end", None))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                self._q.put(("error", exc))

        self._thread = threading.Thread(target=produce, name="resin-reader", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[tuple[Block, Tile | None, Any]]:
        while True:
            kind, payload = self._q.get()
            if kind == "item":
                yield payload
            elif kind == "error":
                raise payload
            else:
                return

    def stop(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                self._q.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()
