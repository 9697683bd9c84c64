"""Tile planner: where each tile is read, which part of its output is kept, and where it goes.

Geometry, per axis of length ``n`` (all in input voxels):

- The volume is conceptually padded by ``halo`` on both sides (each face plane
  repeated: :func:`face_indices`), plus ``extra`` voxels
  at the end so the padded length ``L = n + 2*halo + extra`` is a multiple of the model's
  ``size_multiple``. One tile spanning that whole padded volume is "one-tile inference".
- Tiles have ``tile`` voxels (a multiple of ``size_multiple``, at most ``L``). A tile read at
  ``start`` keeps only its *core* ``[start + halo, start + tile - halo)``; the halo is the
  context the network needs so the core equals one-tile inference.
- Tile starts, relative to the padded origin ``-halo``, are multiples of ``size_multiple`` so
  pooling grids line up with one-tile inference; the last tile is flush with the padded end.
- Neighbouring cores overlap by at least ``overlap`` voxels and are blended with a window.
  Without extra overlap (the default) there is nothing to blend: each output voxel is
  *kept* from exactly one tile (tile k keeps ``[k*step, (k+1)*step)`` of its core, the last
  tile the rest), so the tiles partition the output. Every kept voxel still has
  at least ``halo`` voxels of context on each side, and a block of the output is made of
  whole kept regions when its boundaries sit on the tile step.

Volumes smaller than a tile become one padded tile whose core is cropped to the volume.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from resin.errors import UsageError
from resin.metadata import DEFAULT_CORE, default_tile

__all__ = ["DEFAULT_CORE", "AxisPlan", "Tile", "TilePlan", "default_tile", "plan_tiles",
           "face_indices", "read_padded"]

Triple = tuple[int, int, int]



def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class AxisPlan:
    """Tiling of one axis; ``starts`` are tile read starts in volume coordinates."""

    n: int
    tile: int
    halo: int
    extra: int
    starts: tuple[int, ...]

    @property
    def core(self) -> int:
        return self.tile - 2 * self.halo

    def kept(self, k: int, partition: bool) -> tuple[int, int]:
        """Input voxels ``[lo, hi)`` tile ``k`` contributes (see the module docstring).

        Partitioned, tile k keeps ``[k * step, (k + 1) * step)`` and the last tile the rest:
        every boundary is a multiple of the step (so blocks on the step never cut a kept
        region), and each kept region lies inside its tile's core (the last tile starts at
        most one step before ``(K - 1) * step`` and its core reaches the padded end).
        """
        lo = self.starts[k] + self.halo
        hi = lo + self.core
        if partition and len(self.starts) > 1:
            step = self.starts[1] - self.starts[0]
            lo = k * step
            if k + 1 < len(self.starts):
                hi = (k + 1) * step
        return min(lo, self.n), min(hi, self.n)


def plan_axis(n: int, tile: int, halo: int, size_multiple: int, overlap: int = 0) -> AxisPlan:
    """Tile one axis of ``n`` voxels; see the module docstring for the geometry."""
    if n <= 0:
        raise UsageError(f"cannot tile an axis of length {n}")
    m = size_multiple
    padded = _round_up(n + 2 * halo, m)
    tile = min(_round_up(tile, m), padded)
    core = tile - 2 * halo
    if core < min(m, padded - 2 * halo):
        raise UsageError(
            f"tile {tile} leaves too small a core after a halo of {halo} voxels per side; "
            f"use a tile of at least {_round_up(2 * halo + m, m)}"
        )
    extra = padded - n - 2 * halo
    last = padded - tile  # relative to the padded origin; a multiple of m
    step = max(m, ((core - overlap) // m) * m)
    rel = list(range(0, last, step)) + [last]
    return AxisPlan(n=n, tile=tile, halo=halo, extra=extra,
                    starts=tuple(r - halo for r in rel))


@dataclass(frozen=True)
class Tile:
    """One tile: read ``tile`` voxels at ``start`` (may stick out: faces repeated), keep the core."""

    index: Triple
    start: Triple

    def core_start(self, halo: Triple) -> Triple:
        return (self.start[0] + halo[0], self.start[1] + halo[1], self.start[2] + halo[2])


@dataclass(frozen=True)
class TilePlan:
    """All tiles of a volume, in z-major order (rows of equal z start come together)."""

    shape: Triple
    tile: Triple
    halo: Triple
    scale: Triple
    axes: tuple[AxisPlan, AxisPlan, AxisPlan]
    #: each voxel kept from one tile (no extra overlap); False: overlapping cores blended
    partition: bool = True
    #: which memory budget chose the tile, for the run's log ('' when none did)
    budget: str = ""

    def kept_region(self, tile: Tile) -> tuple[tuple[slice, slice, slice], Triple]:
        """What tile ``tile`` contributes: the slices of its network output and where that
        goes in the output volume."""
        sl, out = [], []
        for i in range(3):
            lo, hi = self.axes[i].kept(tile.index[i], self.partition)
            s = self.scale[i]
            hi = max(hi, lo)
            sl.append(slice((lo - tile.start[i]) * s, (hi - tile.start[i]) * s))
            out.append(lo * s)
        return (sl[0], sl[1], sl[2]), (out[0], out[1], out[2])

    @property
    def core(self) -> Triple:
        return (self.axes[0].core, self.axes[1].core, self.axes[2].core)

    @property
    def out_shape(self) -> Triple:
        return (self.shape[0] * self.scale[0], self.shape[1] * self.scale[1],
                self.shape[2] * self.scale[2])

    @property
    def out_core(self) -> Triple:
        c = self.core
        return (c[0] * self.scale[0], c[1] * self.scale[1], c[2] * self.scale[2])

    @property
    def n_tiles(self) -> int:
        return len(self.axes[0].starts) * len(self.axes[1].starts) * len(self.axes[2].starts)

    def rows(self) -> Iterator[tuple[int, list[Tile]]]:
        """``(z_row, tiles)`` for each row of tiles sharing a z start, in order."""
        az, ay, ax = self.axes
        for iz, z in enumerate(az.starts):
            yield iz, [Tile((iz, iy, ix), (z, y, x))
                       for (iy, y), (ix, x) in itertools.product(enumerate(ay.starts),
                                                                 enumerate(ax.starts))]

    def tiles(self) -> Iterator[Tile]:
        for _, row in self.rows():
            yield from row

    def out_core_start(self, tile: Tile) -> Triple:
        """Where the tile's kept output core goes in the output volume (may stick out at the end)."""
        c = tile.core_start(self.halo)
        return (c[0] * self.scale[0], c[1] * self.scale[1], c[2] * self.scale[2])

    def core_slices(self) -> tuple[slice, slice, slice]:
        """The core inside a tile's network output."""
        s, h, t = self.scale, self.halo, self.tile
        return tuple(slice(h[i] * s[i], (t[i] - h[i]) * s[i]) for i in range(3))  # type: ignore[return-value]


def plan_tiles(shape: Triple, tile: Triple | None, halo: Triple, size_multiple: int,
               overlap: int = 0, scale: Triple = (1, 1, 1)) -> TilePlan:
    """Plan the tiles of a ``shape`` volume for a model with this halo and size multiple.

    ``tile=None`` picks a default whose core is about :data:`DEFAULT_CORE`. ``overlap`` is
    the extra blending overlap (voxels) between neighbouring cores, on top of the halo.
    """
    if len(shape) != 3 or any(int(s) <= 0 for s in shape):
        raise UsageError(f"cannot tile a volume of shape {tuple(shape)}")
    if overlap < 0:
        raise UsageError(f"overlap must be >= 0, got {overlap}")
    if tile is None:
        tile = default_tile(halo, size_multiple, overlap)
    if any(int(t) <= 0 for t in tile):
        raise UsageError(f"tile sides must be positive, got {tuple(tile)}")
    axes = tuple(plan_axis(int(shape[i]), int(tile[i]), int(halo[i]), size_multiple, overlap)
                 for i in range(3))
    return TilePlan(shape=(int(shape[0]), int(shape[1]), int(shape[2])),
                    tile=(axes[0].tile, axes[1].tile, axes[2].tile),
                    halo=(int(halo[0]), int(halo[1]), int(halo[2])),
                    scale=(int(scale[0]), int(scale[1]), int(scale[2])),
                    axes=axes, partition=overlap == 0)  # type: ignore[arg-type]


def face_indices(start: int, size: int, n: int) -> np.ndarray:
    """Indices ``start .. start+size-1`` of an axis of length ``n`` padded at its faces by
    repeating the face plane (NumPy 'edge'): outside ``[0, n)`` they clamp to 0 or n-1.

    Repeating the face rather than mirroring it keeps every structure that crosses a face
    on its own course: a mirror folds a tilted one (an oblique PSF's streaks, a fibre at an
    angle) back into a V whose apex F brightens, several times the data's maximum for an
    oblique PSF (docs/runtime.md, "Faces"), and scores worse for an axial one as well.
    """
    return np.clip(np.arange(start, start + size), 0, n - 1).astype(np.intp)


def read_padded(read: Callable[[tuple[slice, slice, slice]], np.ndarray], shape: Triple,
                start: Triple, size: Triple) -> np.ndarray:
    """Read a box that may stick out of the volume, outside voxels repeating the nearest face
    (:func:`face_indices`).

    ``read(region)`` reads an in-bounds region; only the in-bounds bounding box is read.
    """
    inside = all(start[i] >= 0 and start[i] + size[i] <= shape[i] for i in range(3))
    if inside:
        return read(tuple(slice(start[i], start[i] + size[i]) for i in range(3)))  # type: ignore[arg-type]
    idx = [face_indices(start[i], size[i], shape[i]) for i in range(3)]
    lo = [int(ix.min()) for ix in idx]
    hi = [int(ix.max()) + 1 for ix in idx]
    box = read(tuple(slice(lo[i], hi[i]) for i in range(3)))  # type: ignore[arg-type]
    return box[np.ix_(idx[0] - lo[0], idx[1] - lo[1], idx[2] - lo[2])]
