"""Tile planner: where each tile is read, which part of its output is kept, and where it goes.

Geometry, per axis of length ``n`` (all in input voxels):

- The volume is conceptually padded by ``pad`` on both sides (each face plane repeated:
  :func:`face_indices`), plus ``extra`` voxels at the end so the padded length
  ``L = n + 2*pad + extra`` is a multiple of the model's ``size_multiple``. One network call
  over that whole padded volume, its faces meeting the network's own zero padding, is
  "one-tile inference". ``pad`` is the halo by default (``faces="repeat"``: every face gets
  as much context as the inside) or 0 (``faces="zeros"``: the faces meet the network's zero
  padding, as a training patch's edges do and as a whole-volume call does, and no voxel
  outside the volume is computed but the ``extra`` planes, fewer than the size multiple).
- Tiles have ``tile`` voxels (a multiple of ``size_multiple``, at most ``L``). Tile starts,
  relative to the padded origin ``-pad``, are multiples of ``size_multiple`` so pooling grids
  line up with one-tile inference; the first tile is flush with the padded start and the
  last with the padded end, so a tile side on a padded face sees the same zero padding as
  one-tile inference there. Every other tile side gives what it keeps ``halo`` voxels of
  context: the context the network needs so its output equals one-tile inference.
- Without extra overlap (the default) the tiles partition the output: the first tile
  keeps ``[0, lead*step)``, tile k >= 1 ``[(k-1+lead)*step, (k+lead)*step)`` and the last
  the rest, so every kept boundary is a multiple of the step and a block of the output
  whose boundaries sit on the step cuts no kept region but an end tile's longer than a
  step. With ``pad < halo`` the inner tiles start ``halo - pad`` (rounded up to the size
  multiple) before their kept region to give it its context, and the step is chosen so
  that both end tiles keep at most one step where the tile allows it (:func:`_whole_step`).
- With extra overlap (``pad == halo`` only) tile k's *core* ``[start + halo, start + tile -
  halo)`` is blended with its neighbours' cores, which overlap by at least ``overlap``.

Volumes smaller than a tile become one padded tile whose kept region is the volume.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from resin.errors import UsageError
from resin.metadata import DEFAULT_CORE, default_tile

__all__ = ["DEFAULT_CORE", "FACES", "OVERLAP_NEEDS_REPEAT", "AxisPlan", "Tile", "TilePlan",
           "check_faces", "default_tile", "face_pad", "min_tile", "plan_tiles", "face_indices",
           "read_padded"]

Triple = tuple[int, int, int]

#: how the volume's faces are treated: "repeat" pads each face by the halo, repeating the
#: face plane; "zeros" pads nothing and lets the faces meet the network's zero padding; a
#: number N (as text, "8") repeats the face plane N voxels (at most the halo), the network's
#: zero padding beyond (see :func:`face_pad`)
FACES = ("repeat", "zeros")


def check_faces(faces: str) -> str:
    """``faces`` if it is a face mode (:data:`FACES` or a number of voxels), else a
    UsageError naming them."""
    if faces in FACES or (isinstance(faces, str) and faces.isdigit()):
        return faces
    raise UsageError(f"--faces must be repeat, zeros or a number of voxels N (each face "
                     f"padded by N, at most the halo), got {faces!r}")


def face_pad(faces: str, halo: int) -> int | None:
    """The face padding of an axis with this halo: None (the halo) for "repeat", 0 for
    "zeros", ``min(N, halo)`` for a number N."""
    check_faces(faces)
    if faces == "repeat":
        return None
    return 0 if faces == "zeros" else min(int(faces), int(halo))


#: why ``--overlap`` is refused with zero-padded faces (the planner and the settings check)
OVERLAP_NEEDS_REPEAT = ("--overlap blends whole tile cores, which needs the faces padded by "
                        "the halo; use --faces repeat with --overlap")


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
    #: face padding (module docstring); the halo unless the faces meet zero padding
    pad: int
    #: distance between kept boundaries (module docstring); the padded axis less its
    #: face padding when one tile
    step: int
    #: the first tile keeps ``lead`` steps; tile k >= 1 keeps from ``(k - 1 + lead) * step``
    lead: int

    @property
    def core(self) -> int:
        return self.tile - 2 * self.halo

    @property
    def padded(self) -> int:
        """The padded length ``n + 2*pad + extra``."""
        return self.n + 2 * self.pad + self.extra

    def kept(self, k: int, partition: bool) -> tuple[int, int]:
        """Input voxels ``[lo, hi)`` tile ``k`` contributes (see the module docstring).

        Partitioned, tile k >= 1 keeps ``[(k - 1 + lead) * step, (k + lead) * step)``, the
        first tile from the volume's start and the last the rest: every inner boundary is a multiple of the step
        (so blocks on the step never cut a kept region), and each kept region has ``halo``
        voxels of context inside its tile on every side that is not on a padded face.
        """
        last = len(self.starts) - 1
        if partition:
            lo = 0 if k == 0 else (k - 1 + self.lead) * self.step
            hi = self.n if k == last else (k + self.lead) * self.step
        else:
            lo = self.starts[k] + self.halo
            hi = lo + self.core
        return min(lo, self.n), min(hi, self.n)


def plan_axis(n: int, tile: int, halo: int, size_multiple: int, overlap: int = 0,
              pad: int | None = None) -> AxisPlan:
    """Tile one axis of ``n`` voxels, its faces padded by ``pad`` (None: the halo); see the
    module docstring for the geometry."""
    if n <= 0:
        raise UsageError(f"cannot tile an axis of length {n}")
    m = size_multiple
    pad = halo if pad is None else int(pad)
    if not 0 <= pad <= halo:
        raise UsageError(f"face padding {pad} must be from 0 to the halo ({halo})")
    if pad < halo and overlap > 0:
        raise UsageError(OVERLAP_NEEDS_REPEAT)
    padded = _round_up(n + 2 * pad, m)
    asked, tile = tile, min(_round_up(tile, m), padded)
    shift = _round_up(halo - pad, m)  # inner tiles start this far before k*step - pad
    room = tile - halo - pad - shift  # the largest step an inner tile keeps with context
    extra = padded - n - 2 * pad
    last = padded - tile  # relative to the padded origin; a multiple of m
    if last == 0:
        # one tile keeps the whole axis: its step is the axis (blocks along it: one)
        return AxisPlan(n=n, tile=tile, halo=halo, extra=extra, starts=(-pad,), pad=pad,
                        step=tile - 2 * pad, lead=1)
    if room < min(m, padded - 2 * halo):
        raise UsageError(
            f"tile {asked}{f' (rounded to {tile})' if tile != asked else ''} leaves too "
            f"small a core after a halo of {halo} voxels per side; "
            f"use a tile of at least {min_tile(halo, pad, m)}"
        )
    step = max(m, ((room - overlap) // m) * m)
    whole = _whole_step(n, halo, pad, m, step, last) if pad < halo else None
    if whole is not None:
        step, lead, j_last = whole
    else:
        lead, j_last = _ends(tile, halo, pad, step, last, overlap)
    rel = [0] + [j * step - shift for j in range(lead, j_last)]
    if j_last * step < n:
        rel.append(last)
    return AxisPlan(n=n, tile=tile, halo=halo, extra=extra,
                    starts=tuple(r - pad for r in rel), pad=pad, step=step, lead=lead)


def min_tile(halo: int, pad: int, size_multiple: int) -> int:
    """The smallest tile :func:`plan_axis` accepts on an axis longer than a tile, for this
    halo and face padding: an inner tile keeps one size multiple with the halo's context."""
    m = size_multiple
    return _round_up(halo + pad + _round_up(halo - pad, m) + m, m)


def _ends(tile: int, halo: int, pad: int, step: int, last: int,
          overlap: int = 0) -> tuple[int, int]:
    """``(lead, j_last)``: the first tile keeps ``[0, lead*step)``, as far as its own
    context reaches (a face on its start side); the last keeps from ``j_last*step``, the
    first multiple of the step with ``halo - pad`` voxels of context before it inside the
    last tile (if that is past the volume, the tile before keeps the rest)."""
    lead = 1 if overlap else max(1, (tile - halo - pad) // step)
    return lead, max(lead, -(-(last + halo - pad) // step))


def _whole_step(n: int, halo: int, pad: int, m: int, largest: int,
                last: int) -> tuple[int, int, int] | None:
    """``(step, lead, j_last)`` whose end regions stay within one step, or None.

    With less face padding than halo the first and last tiles may keep more than a step
    (their face side needs no context), and a kept region across a multiple of the step
    can straddle a block boundary, which runs its tile once per block. Here the first tile
    keeps one step (``lead`` 1, which needs ``step > shift`` for the next tile to start
    after it) and the last keeps from a multiple ``j_last*step`` at most a
    step before the end; ``j_last`` may be larger than the least the last tile's context
    allows as long as the inner tile before it starts before the last tile. Of the steps
    up to ``largest`` that allow it, the one with the fewest tiles, then the largest.
    """
    shift = _round_up(halo - pad, m)
    best: tuple[int, int, int, int] | None = None
    for step in range(largest, shift, -m):  # step > shift: tile 1 starts after tile 0
        j = max(1, -(-(last + halo - pad) // step))  # the least the context allows
        while (j - 1) * step - shift < last:  # the inner tile j - 1 starts before the last
            if n - j * step <= step:
                tiles = j + (j * step < n)
                if best is None or tiles < best[0]:
                    best = (tiles, step, 1, j)
                break
            j += 1
    return None if best is None else best[1:]


@dataclass(frozen=True)
class Tile:
    """One tile: read ``tile`` voxels at ``start`` (may stick out by the face padding: faces
    repeated), keep its kept region (:meth:`TilePlan.kept_region`)."""

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
    #: the output block the memory budget chose (about this many voxels, rounded up to
    #: whole chunks) when no block was asked for and the default one would crowd out the
    #: tiles; None: the default block
    block: Triple | None = None

    @property
    def faces(self) -> str:
        """How the volume's faces are treated: "repeat" (padded by the halo), "zeros" (not
        padded) or "padded by N" (less than the halo along some axis)."""
        if all(a.pad == a.halo for a in self.axes):
            return "repeat"
        if all(a.pad == 0 for a in self.axes):
            return "zeros"
        return f"padded by {max(a.pad for a in self.axes)}"

    @property
    def pad(self) -> Triple:
        """The face padding per axis (module docstring)."""
        return (self.axes[0].pad, self.axes[1].pad, self.axes[2].pad)

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
               overlap: int = 0, scale: Triple = (1, 1, 1), faces: str = "repeat") -> TilePlan:
    """Plan the tiles of a ``shape`` volume for a model with this halo and size multiple.

    ``tile=None`` picks a default whose core is about :data:`DEFAULT_CORE`. ``overlap`` is
    the extra blending overlap (voxels) between neighbouring cores, on top of the halo.
    ``faces`` (:func:`face_pad`): pad each face by the halo, repeating it, by N voxels, or
    let the faces meet the network's zero padding.
    """
    check_faces(faces)
    if len(shape) != 3 or any(int(s) <= 0 for s in shape):
        raise UsageError(f"cannot tile a volume of shape {tuple(shape)}")
    if overlap < 0:
        raise UsageError(f"overlap must be >= 0, got {overlap}")
    if tile is None:
        tile = default_tile(halo, size_multiple, overlap)
    if any(int(t) <= 0 for t in tile):
        raise UsageError(f"tile sides must be positive, got {tuple(tile)}")
    axes = tuple(plan_axis(int(shape[i]), int(tile[i]), int(halo[i]), size_multiple, overlap,
                           face_pad(faces, int(halo[i])))
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
