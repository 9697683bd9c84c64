"""Blocks on a Dask cluster: ``resin-run --workers N`` / ``--scheduler ADDRESS`` /
``Enhancer.run(..., client=...)``.

The client plans the run exactly as a local run does (levels, tiles, blocks, run record,
lock, staged output) and submits one task per unfinished block. A worker process loads the
engine, opens the input and reopens the staged Zarr output once, and keeps them for all
its blocks; it runs the block's tiles, writes the block straight into the store, flushes
it and creates the block's done marker, then returns only the block's three small MIPs
(no voxel data goes through the scheduler). A block is a pure function of the plan, so a
task retried on another worker (a worker died) rewrites the same bytes: the output is
identical to a single-process run whatever the number of workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from resin.runtime.blocks import Block
from resin.runtime.normalize import Levels

from resin import _log
from resin.errors import MissingDependencyError, UsageError

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs to run any block of one run (small and picklable)."""

    model_path: str
    backend: str
    device: str
    allow_plan_host_code: bool
    input_path: str
    output: str
    settings: Any  # TileSettings
    levels: Levels
    out_shape: Triple
    out_dtype: str
    chunks: Triple
    block: Triple
    plan_sha256: str
    record_dir: str
    mips: bool
    channel: int | None = None
    time: int | None = None


class _WorkerState:
    """Per worker process: the engine, the input reader and the reopened output."""

    def __init__(self, job: BlockJob) -> None:
        from resin.runtime.backends import choose_backend
        from resin.runtime.blocks import BlockPlan
        from resin.runtime.enhancer import LockedEngine
        from resin.runtime.runner import make_plan
        from resin.runtime.runstate import RunRecord

        from resin.io import open_volume
        from resin.io._zarr import ZarrWriter

        # a worker may run several blocks on threads at once: one inference at a time
        self.engine = LockedEngine(choose_backend(
            job.model_path, job.backend, job.device,
            allow_plan_host_code=job.allow_plan_host_code)[0])
        self.reader = open_volume(job.input_path, job.channel, job.time)
        shape = tuple(int(s) for s in self.reader.shape)
        plan = make_plan(self.engine, shape, job.settings)  # type: ignore[arg-type]
        self.bplan = BlockPlan(tiles=plan, block=job.block, chunks=job.chunks)
        self.writer = ZarrWriter(job.output, job.out_shape, job.out_dtype, chunks=job.chunks,
                                 shards=job.settings.shards, resume=True,
                                 levels=job.settings.pyramid)
        self.record = RunRecord.attach(job.record_dir, job.plan_sha256)


_STATES: dict[tuple, _WorkerState] = {}
_STATES_LOCK = threading.Lock()


def _state(job: BlockJob) -> _WorkerState:
    key = (job.model_path, job.backend, job.device, job.input_path, job.output,
           job.plan_sha256)
    with _STATES_LOCK:
        if key not in _STATES:
            _STATES[key] = _WorkerState(job)
        return _STATES[key]


class _Capture:
    """A sink that writes through to the store and keeps the last block for its MIPs."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.data: np.ndarray | None = None

    def write(self, region: tuple[slice, slice, slice], data: np.ndarray) -> None:
        self.writer.write(region, data)
        self.data = data


def run_block(job: BlockJob, index: Triple) -> tuple[Triple, tuple[np.ndarray, ...] | None]:
    """The worker task: run, write, flush and mark one block; returns its MIPs (output z,
    y, x then input z, y, x projections) when the run writes MIPs."""
    from resin.kernels import mip
    from resin.runtime.blocks import BlockRunner

    st = _state(job)
    block = st.bplan.block_at(index)
    sink = _Capture(st.writer)

    s = job.settings
    runner = BlockRunner(st.engine, st.bplan, job.levels, np.dtype(job.out_dtype), sink,
                         s.blend, s.sigma_scale,
                         on_written=lambda b: st.record.mark_flushed(st.writer, b),
                         device_blend=s.device_blend)
    runner.run(st.reader.read, [block], read_ahead=True)
    if not job.mips or sink.data is None:
        return block.index, None
    raw = np.ascontiguousarray(st.reader.read(block.input_region(st.bplan.tiles.scale)))
    return block.index, (*mip(sink.data), *mip(raw))


def merge_mips(mips: Any, proj: tuple[np.ndarray, ...], start: Triple) -> None:
    """Fold a block's projections (along z, y, x) at output ``start`` into running MIPs."""
    z0, y0, x0 = start
    pz, py, px = proj
    for target, p, (a, b) in ((mips.along_z, pz, (y0, x0)), (mips.along_y, py, (z0, x0)),
                              (mips.along_x, px, (z0, y0))):
        view = target[a:a + p.shape[0], b:b + p.shape[1]]
        np.maximum(view, p, out=view)


def make_client(workers: int | None = None, scheduler: str | None = None,
                device: str = "auto") -> Any:
    """A ``distributed.Client``: to ``scheduler``, or a local cluster of ``workers``
    processes (one per GPU with dask-cuda when the device is CUDA)."""
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError("distributed", "cluster", "--workers/--scheduler") from None
    if scheduler is not None:
        try:
            return distributed.Client(scheduler, timeout="20s")
        except (OSError, ValueError, TypeError) as exc:  # unreachable, or not an address
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler} "
                             f"({' '.join(str(exc).split())})") from None
    n = int(workers if workers is not None else 1)
    if n < 1:
        raise UsageError(f"--workers must be at least 1, got {n}")
    if device.startswith("cuda"):
        try:
            from dask_cuda import LocalCUDACluster  # type: ignore[import-not-found]

            return distributed.Client(LocalCUDACluster(n_workers=n, threads_per_worker=1))
        except ImportError:
            _log.log("dask-cuda is not installed: the local workers share the visible GPUs "
                     "(pip install dask-cuda for one worker per GPU)")
    cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    return distributed.Client(cluster)


def run_on_cluster(client: Any, job: BlockJob, blocks: list[Block],
                   on_block: Callable[[Block, tuple[np.ndarray, ...] | None], None]) -> None:
    """Run ``blocks`` as tasks on ``client``; ``on_block`` is called as each one finishes."""
    import distributed

    link = getattr(client, "dashboard_link", None)
    if link:
        _log.log(f"Dask dashboard: {link}")
    by_index = {b.index: b for b in blocks}
    futures = client.map(run_block, [job] * len(blocks), [b.index for b in blocks],
                         pure=False, retries=2,
                         key=[f"resin-block-{job.plan_sha256[:12]}-{b.key}" for b in blocks])
    try:
        for fut in distributed.as_completed(futures):
            index, proj = fut.result()
            on_block(by_index[tuple(index)], proj)  # type: ignore[index]
    except BaseException:
        client.cancel(futures)
        raise
