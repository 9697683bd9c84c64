"""Tiles chosen from a memory budget.

A tile of ``T`` input voxels per axis computes ``T`` but keeps only its core; along an
axis of ``n`` voxels cut into ``K`` tiles, ``n / (K * T)`` of what the network computes is
kept. Bigger tiles keep more, so the planner takes, among the tiles whose memory estimate
fits the budget, the one that keeps the largest share (ties: fewer network calls, then
less memory). Cores are multiples of the size multiple, so the tiles partition the output
(:meth:`resin.runtime.planner.AxisPlan.kept`).

The memory estimate of a tile (bytes):

- the engine's activations: ``4 * 8 * sum(features[i] / 8**i)`` bytes per voxel of the
  tile on the output grid (about eight live float32 feature maps per U-Net level, level
  ``i`` at ``1/8**i`` of the voxels; ONNX Runtime on the CPU measures about 0.8 of this),
  or 1 KiB per voxel when the model does not record its features;
- the pipeline's buffers, by the run's own rule
  (:func:`resin.runtime.blocks.working_bytes`): the block's output being filled (the
  budget chooses tiles only when they partition the output, which needs no float32
  accumulators), finished blocks queued for the writer, and the tiles read ahead or in
  flight, for the block the run will use with that tile (``--block`` or the default, in
  whole chunks).

On a CPU engine both share one budget (``--memory``, default :data:`DEFAULT_SHARE` of the
available RAM). On a GPU engine the activations live in GPU memory and are held to a
device budget (``--memory``, default :data:`DEFAULT_DEVICE_SHARE` of the GPU's free
memory), together with, on the GPU-resident path (:mod:`resin.runtime.device`), the
block's accumulators, two finalized blocks and a tile's output and core; the host buffers
are held to the default RAM budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from resin.runtime.blocks import make_block_plan, working_bytes
from resin.runtime.planner import face_pad

from resin._memory import available_memory
from resin.errors import UsageError
from resin.metadata import ModelMetadata

if TYPE_CHECKING:
    from resin.runtime.planner import AxisPlan

Triple = tuple[int, int, int]

#: default share of the available memory a run may plan for
DEFAULT_SHARE = 0.25
#: default share of a GPU engine's free device memory a run may plan for (the engine's own
#: workspace and the CUDA context come on top)
DEFAULT_DEVICE_SHARE = 0.5
#: engine bytes per voxel when the model does not record its features
FALLBACK_BYTES_PER_VOXEL = 1024
#: candidate tiles per axis in the search (thinned evenly beyond this)
_MAX_CANDIDATES = 160
#: smaller output blocks (voxels, rounded up to whole chunks) the budget tries, in this
#: order, when no --block is given: taken only where the default block's buffers leave
#: the tiles too little of a small budget (a large volume within --memory 1)
BUDGET_BLOCKS: tuple[Triple, ...] = ((96, 512, 512), (96, 256, 256), (32, 256, 256))
#: a smaller block is taken over one that also fits only when it keeps this many times the
#: share (more blocks cost writes, flushes and resume markers); so a larger budget, where
#: the default block fits again, may keep up to 2 % less than a smaller one did
BLOCK_GAIN = 1.02
GiB = 1024**3


def default_budget(available: int | None = None) -> int:
    """:data:`DEFAULT_SHARE` of ``available`` bytes (None: the available memory, read now),
    at least 1 GiB (4 GiB if unknown: 0)."""
    free = available_memory() if available is None else available
    return max(GiB, int(DEFAULT_SHARE * free)) if free else 4 * GiB


def free_device_memory(engine: object) -> int | None:
    """Free bytes of the GPU ``engine`` runs on; None for a CPU engine or when the backend
    cannot tell (it has no ``device_memory()``, or that fails or reports no finite
    figure, as Numba's CUDA simulator does)."""
    if not str(getattr(engine, "device", "cpu")).startswith("cuda"):
        return None
    query = getattr(engine, "device_memory", None)
    if not callable(query):
        return None
    try:
        info = query()
    except Exception:  # noqa: BLE001 - an unknown figure, not a failed run
        return None
    if info is None:
        return None
    free = float(info[0])
    return int(free) if math.isfinite(free) and free > 0 else None


def default_device_budget(free: int) -> int:
    """:data:`DEFAULT_DEVICE_SHARE` of a GPU's free memory, at least 256 MiB."""
    return max(256 * 1024**2, int(DEFAULT_DEVICE_SHARE * free))


def device_blend_bytes(block_voxels: Any, tile_voxels: Any, scale_voxels: int) -> Any:
    """GPU memory of the GPU-resident blend besides the network's: the block's two float32
    accumulators, two finalized blocks (one being copied out; float32, the widest), and one
    tile's output and kept core."""
    return 2 * 4 * block_voxels + 2 * 4 * block_voxels + 2 * 4 * tile_voxels * scale_voxels


def engine_bytes_per_voxel(meta: ModelMetadata) -> float:
    """Estimated activation bytes per output-grid voxel of a tile (module docstring)."""
    features = (meta.generator or {}).get("features")
    if not features:
        return float(FALLBACK_BYTES_PER_VOXEL)
    return 4.0 * 8.0 * sum(float(f) / 8**i for i, f in enumerate(features))


@dataclass(frozen=True)
class TileChoice:
    """The tile a budget allows, with what it costs and keeps."""

    tile: Triple
    #: bytes planned for in the budget's memory: all of it on a CPU engine, the host
    #: buffers on a GPU engine
    memory: int
    kept_share: float
    calls: int
    #: bytes planned for on the GPU (0 on a CPU engine)
    device_memory: int = 0
    #: the output block the budget chose (a target of :data:`BUDGET_BLOCKS`) when the
    #: default one would crowd out the tiles; None: the default block
    block: Triple | None = None


@dataclass(frozen=True)
class _Axis:
    tile: np.ndarray
    calls: np.ndarray
    #: the output block's extent along the axis (clipped to the output) and their count
    block: np.ndarray
    blocks: np.ndarray


def _axis_plans(n: int, halo: int, m: int, bounds: tuple[int, int] | None,
                pad: int | None = None) -> list[AxisPlan]:
    """The tile sizes worth trying along an axis: for each tile count only the smallest
    tile (a bigger one with as many tiles computes more for nothing)."""
    from resin.runtime.planner import plan_axis

    pad = halo if pad is None else pad
    padded = -(-(n + 2 * pad) // m) * m
    smallest = min(padded, -(-(2 * halo + m) // m) * m)
    lo, hi = (smallest, padded) if bounds is None else (max(smallest, bounds[0]),
                                                         min(padded, bounds[1]))
    if lo > hi:
        lo = hi = min(padded, max(bounds[0], smallest)) if bounds is not None else padded
    best: dict[int, AxisPlan] = {}
    for tile in range(lo, hi + 1, m):
        try:
            axis = plan_axis(n, tile, halo, m, 0, pad)
        except UsageError:  # too small for this halo with zero-padded faces
            continue
        best.setdefault(len(axis.starts), axis)
    if not best:  # no tile in the bounds works: the largest, whose plan says why
        best[0] = plan_axis(n, hi, halo, m, 0, pad)
    plans = sorted(best.values(), key=lambda a: a.tile)
    if len(plans) > _MAX_CANDIDATES:
        keep = np.unique(np.linspace(0, len(plans) - 1, _MAX_CANDIDATES).round().astype(int))
        plans = [plans[i] for i in keep]
    return plans


def _axis_candidates(plans: list[AxisPlan], n: int, halo: int, scale: int,
                     block: int | None, shard: int | None, index: int,
                     chosen: int | None = None) -> _Axis:
    """Per tile size in ``plans``: tiles along the axis (``index``: 0 z, 1 y, 2 x) and the
    output block's extent as the run will choose it (``--block``, else the budget's
    ``chosen`` block, else the default one)."""
    from resin.runtime.planner import TilePlan

    blocks = []
    out = n * scale
    for plan in plans:
        # the block rules are per axis (each with its own default chunk and block): plan
        # this axis thrice and read its own extent
        cube = TilePlan(shape=(n, n, n), tile=(plan.tile,) * 3, halo=(halo,) * 3,
                        scale=(scale,) * 3, axes=(plan, plan, plan),
                        block=None if chosen is None else (chosen,) * 3)
        blocks.append(make_block_plan(cube, None if block is None else (block,) * 3,
                                      shards=None if shard is None else (shard,) * 3
                                      ).block[index])
    extent = np.array(blocks, dtype=np.int64)
    return _Axis(tile=np.array([a.tile for a in plans], dtype=np.int64),
                 calls=np.array([len(a.starts) for a in plans], dtype=np.int64),
                 block=np.minimum(extent, out), blocks=-(-out // extent))


def choose_tile(shape: Sequence[int], halo: Sequence[int], size_multiple: int,
                scale: Sequence[int], budget: int, bytes_per_voxel: float,
                block: Sequence[int] | None = None, shards: Sequence[int] | None = None,
                bounds: tuple[Triple, Triple] | None = None,
                device_budget: int | None = None, device_blend: bool = False,
                faces: str = "repeat", out_itemsize: int = 4) -> TileChoice:
    """The tile keeping the largest share of what is computed within ``budget`` bytes.

    ``bounds``: (smallest, largest) tile the engine accepts (a TensorRT profile).
    ``block`` and ``shards``: the run's settings (None: defaults), whose block buffers
    count. ``device_budget``: a GPU engine's budget (module docstring): the activations
    (and with ``device_blend`` the GPU-resident blend's buffers) must fit it and the host
    buffers ``budget``. If nothing fits, the tile needing the least memory (its estimate
    is then over the budget). ``faces``: the run's face mode
    (:data:`resin.runtime.planner.FACES`). ``out_itemsize``: bytes per output voxel of the
    blocks (default 4, float32, the widest).
    """
    if budget <= 0:
        raise UsageError(f"the memory budget must be positive, got {budget} bytes")
    if device_budget is not None and device_budget <= 0:
        raise UsageError(f"the GPU memory budget must be positive, got {device_budget} bytes")
    m = int(size_multiple)
    plans = [_axis_plans(int(shape[a]), int(halo[a]), m,
                         None if bounds is None else (bounds[0][a], bounds[1][a]),
                         face_pad(faces, int(halo[a])))
             for a in range(3)]
    best: tuple[bool, TileChoice] | None = None
    # the default block first; smaller ones only where they leave the tiles more room
    for target in (None, *(() if block is not None else BUDGET_BLOCKS)):
        axes = [_axis_candidates(plans[a], int(shape[a]), int(halo[a]), int(scale[a]),
                                 None if block is None else int(block[a]),
                                 None if shards is None else int(shards[a]), a,
                                 None if target is None else int(target[a]))
                for a in range(3)]
        fits, choice = _best_tile(axes, shape, scale, budget, bytes_per_voxel, device_budget,
                                  device_blend, out_itemsize)
        choice = replace(choice, block=target)
        # a smaller block costs more blocks (writes, flushes, resume markers): taken for a
        # real gain only
        if (best is None or (fits and not best[0])
                or (fits == best[0] and choice.kept_share > best[1].kept_share * BLOCK_GAIN)):
            best = (fits, choice)
    assert best is not None
    return best[1]


def _best_tile(axes: list[_Axis], shape: Sequence[int], scale: Sequence[int], budget: int,
               bytes_per_voxel: float, device_budget: int | None, device_blend: bool,
               out_itemsize: int) -> tuple[bool, TileChoice]:
    """The best tile over the candidates ``axes`` (:func:`choose_tile`), and whether any
    candidate fits the budget at all."""
    z, y, x = (ax.tile.astype(np.float64) for ax in axes)
    scale_voxels = math.prod(int(s) for s in scale)
    tile_voxels = z[:, None, None] * y[None, :, None] * x[None, None, :]
    blocks = (axes[0].block[:, None, None] * axes[1].block[None, :, None]
              * axes[2].block[None, None, :]).astype(np.float64)
    n_blocks = (axes[0].blocks[:, None, None] * axes[1].blocks[None, :, None]
                * axes[2].blocks[None, None, :])
    # the engine's activations, plus the pipeline's buffers by the run's own rule
    activations = tile_voxels * scale_voxels * bytes_per_voxel
    host = working_bytes(blocks, tile_voxels, scale_voxels, int(out_itemsize), blocks=n_blocks)
    if device_budget is None:
        memory, device = activations + host, np.zeros_like(activations)
        fits = memory <= budget
        need = memory / budget
    else:
        memory = host
        device = activations + (device_blend_bytes(blocks, tile_voxels, scale_voxels)
                                if device_blend else 0.0)
        fits = (memory <= budget) & (device <= device_budget)
        need = np.maximum(memory / budget, device / device_budget)
    calls = (axes[0].calls[:, None, None] * axes[1].calls[None, :, None]
             * axes[2].calls[None, None, :])
    share = math.prod(int(s) for s in shape) / (calls * tile_voxels)
    any_fits = bool(fits.any())
    if not any_fits:
        fits = need == need.min()
    score = np.where(fits, np.round(share, 9), -1.0)
    order = np.lexsort(((memory + device).ravel(), calls.ravel(), -score.ravel()))
    i, j, k = np.unravel_index(order[0], memory.shape)
    return any_fits, TileChoice(tile=(int(z[i]), int(y[j]), int(x[k])),
                                memory=int(memory[i, j, k]),
                                kept_share=float(share[i, j, k]), calls=int(calls[i, j, k]),
                                device_memory=int(device[i, j, k]))
