"""Patch sampling for training: lazy region reads, global normalization, foreground filter.

The raw volume is never loaded whole: patches are read region by region through
:func:`resin.io.open_volume` (TIFF now, Zarr through the same reader). Intensities are
normalized once per volume with global percentiles (``x -> (x - p_low) / (p_high - p_low)``),
the same rule the runtime applies at inference: never per patch, which would make seams.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from resin.config import DataConfig, NormalizationConfig
from resin.errors import VolumeError
from resin.io import VolumeReader

T = TypeVar("T")

#: at most this many voxels are read for a volume's normalization levels (64^3 blocks)
SAMPLE_VOXELS = 16_000_000


@dataclass(frozen=True)
class Normalization:
    """The global percentile normalization of one volume."""

    low_percentile: float
    high_percentile: float
    low: float
    high: float

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((x.astype(np.float32) - self.low) / (self.high - self.low)).astype(np.float32)

    def invert(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32) * (self.high - self.low) + self.low

    def record(self) -> dict[str, float]:
        """The checkpoint's ``normalization`` entry."""
        return {"low_percentile": self.low_percentile, "high_percentile": self.high_percentile,
                "train_low": self.low, "train_high": self.high}


class _Readable(Protocol):
    shape: Any
    path: Any

    def read(self, region: Any = None) -> np.ndarray: ...


def volume_sample(reader: _Readable, max_voxels: int = SAMPLE_VOXELS, seed: int = 0,
                  source: str | None = None) -> np.ndarray:
    """Voxels for global statistics: the whole volume if small, else seeded random 64^3
    blocks (memory flat in every axis). Training and the runtime both sample through here,
    so a model runs under the mapping it was trained with. NaN/inf is a VolumeError."""
    shape = tuple(int(s) for s in reader.shape)
    source = source or str(reader.path)
    total = math.prod(shape)
    if total == 0:
        raise VolumeError(f"{source}: the volume is empty (shape {shape})")
    def checked(part: np.ndarray) -> np.ndarray:
        if part.dtype.kind == "f" and not np.isfinite(part).all():
            raise VolumeError(f"{source}: the volume contains NaN or infinite values")
        return part.ravel()

    if total <= max_voxels:  # a copy: the caller's percentiles reorder the sample in place
        return np.array(checked(np.asarray(reader.read())), copy=True)
    rng = np.random.default_rng(seed)
    block = tuple(min(s, 64) for s in shape)
    n, size = max(1, max_voxels // math.prod(block)), math.prod(block)
    out: np.ndarray | None = None
    for i in range(n):  # filled in place: the sample is the only copy held
        start = [int(rng.integers(0, s - b + 1)) for s, b in zip(shape, block, strict=True)]
        region = tuple(slice(o, o + b) for o, b in zip(start, block, strict=True))
        part = checked(np.asarray(reader.read(region)))  # type: ignore[arg-type]
        if out is None:
            out = np.empty(n * size, part.dtype)
        out[i * size:(i + 1) * size] = part
    assert out is not None
    return out


def percentile_levels(sample: np.ndarray, low_percentile: float, high_percentile: float,
                      in_place: bool = False) -> tuple[float, float] | None:
    """The one levels rule: the two percentiles, or min/max when they coincide (sparse
    data: the high percentile is still background); None for a constant sample.
    ``in_place``: the sample is the caller's own scratch copy and may be reordered (no copy
    of a large sample is made)."""
    low, high = np.percentile(sample, [low_percentile, high_percentile],
                              overwrite_input=in_place)
    if high - low > 0:
        return float(low), float(high)
    bottom, top = (float(sample.min()), float(sample.max())) if sample.size else (0.0, 0.0)
    return (bottom, top) if top > bottom else None


def compute_normalization(sample: np.ndarray, config: NormalizationConfig,
                          source: str = "volume") -> Normalization:
    """Global percentiles (:func:`percentile_levels`); a constant volume is a VolumeError."""
    levels = percentile_levels(sample, config.low_percentile, config.high_percentile)
    if levels is None:
        raise VolumeError(f"{source}: the volume is empty or constant; nothing to learn from")
    return Normalization(config.low_percentile, config.high_percentile, *levels)


def bright_draw(draw: Callable[[], T], level: Callable[[T], float], threshold: float,
                tries: int) -> T:
    """The foreground rule of patch sampling: the first of up to ``tries`` draws whose
    ``level`` reaches ``threshold``, else the brightest of them."""
    best, best_level = None, -math.inf
    for _ in range(max(1, tries)):
        item = draw()
        value = float(level(item))
        if value >= threshold:
            return item
        if value > best_level:
            best, best_level = item, value
    assert best is not None
    return best


def lerp_planes(planes: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Planes at fractional positions ``t`` (in plane units) by linear interpolation between
    the two nearest planes (the last plane repeats past the end); float32.

    The one z-interpolation rule of ``z_step``: training patches, and anything that must see
    the data as training does."""
    t = np.asarray(t, dtype=np.float64)
    i0 = np.clip(np.floor(t).astype(int), 0, planes.shape[0] - 1)
    i1 = np.clip(i0 + 1, 0, planes.shape[0] - 1)
    w = (t - np.floor(t)).astype(np.float32)[:, None, None]
    return (planes[i0] * (1 - w) + planes[i1] * w).astype(np.float32)


#: a flip of z, y and x and a swap of y and x, each applied or not
Symmetry = tuple[bool, bool, bool, bool]


def psf_symmetries(oblique: bool) -> list[Symmetry]:
    """The flips and swaps that keep the PSF's axis (and so the blur) unchanged, identity
    first. Axial PSF: flip any axis, swap y and x (16). Oblique PSF (axis in the z-x
    plane): flip y, or flip z and x together (a half turn about y), 4; a lone z or x flip
    or a y/x swap would mirror the PSF's tilt."""
    if oblique:
        return [(zx, fy, zx, False) for zx, fy in itertools.product((False, True), repeat=2)]
    return [(fz, fy, fx, swap) for fz, fy, fx, swap in itertools.product((False, True), repeat=4)]


def apply_symmetry(volume: np.ndarray, op: Symmetry) -> np.ndarray:
    """``volume`` (ZYX) flipped as ``op`` says, then y and x swapped if it says so."""
    fz, fy, fx, swap = op
    v = volume[::-1 if fz else 1, ::-1 if fy else 1, ::-1 if fx else 1]
    return np.ascontiguousarray(v.transpose(0, 2, 1) if swap else v)


def undo_symmetry(volume: np.ndarray, op: Symmetry) -> np.ndarray:
    """:func:`apply_symmetry` undone."""
    fz, fy, fx, swap = op
    v = volume.transpose(0, 2, 1) if swap else volume
    return np.ascontiguousarray(v[::-1 if fz else 1, ::-1 if fy else 1, ::-1 if fx else 1])


class PatchSampler:
    """Draws normalized training patches (C=1 axis added by the caller) from a reader.

    With ``z_step = K > 1`` the raw z axis is linearly interpolated by K on the fly, so a
    patch of ``Pz`` samples covers ``(Pz - 1) / K + 1`` raw slices. Foreground filter: a
    draw is kept if its 99th percentile reaches the volume's ``foreground_percentile``;
    after ``foreground_tries`` draws the brightest one is used. All randomness comes from
    one seeded NumPy generator whose state is saved in the checkpoint.
    """

    def __init__(self, reader: VolumeReader, config: DataConfig, norm: Normalization,
                 foreground_level: float, angle_deg: float = 0.0, seed: int = 0,
                 holdout: bool = True) -> None:
        self.reader = reader
        self.config = config
        self.norm = norm
        self.foreground_level = foreground_level
        self.oblique = abs(angle_deg) > 1e-9
        self.rng = np.random.default_rng(seed)
        self.k = config.z_step
        z, y, x = reader.shape
        self.shape = ((z - 1) * self.k + 1, y, x)
        p = config.patch_size
        if any(s < q for s, q in zip(self.shape, p, strict=True)):
            raise VolumeError(
                f"{reader.path}: volume {tuple(reader.shape)} (z-step {self.k}: "
                f"{self.shape}) is smaller than the training patch {tuple(p)}; "
                "use a smaller patch size")
        # Hold out the last patch-width along x for validation when the volume allows it.
        self.holdout = holdout and x >= 3 * p[2]
        self.train_x_max = x - 2 * p[2] if self.holdout else x - p[2]
        # Voxels a training patch may reach past each face (padded as the runtime pads).
        padded = (False, True, False) if self.oblique else (True, True, True)
        self.face_margin = tuple(int(config.face_margin * q) if ok else 0
                                 for q, ok in zip(p, padded, strict=True))

    # -- state for exact resume -------------------------------------------------------
    def state(self) -> str:
        return json.dumps(self.rng.bit_generator.state)

    def set_state(self, state: str) -> None:
        self.rng.bit_generator.state = json.loads(state)

    # -- reading ----------------------------------------------------------------------
    def read_patch(self, start: tuple[int, int, int],
                   size: tuple[int, int, int] | None = None) -> np.ndarray:
        """Normalized float32 block of ``size`` (default: the patch) at ``start``.

        ``start`` and ``size`` are in resampled (z-step) units. A block reaching past the
        volume's faces holds there what the runtime's padding shows the network: each face
        plane repeated (:func:`resin.runtime.planner.face_indices`; with a z step, the
        first or last raw plane, as the interpolation of repeated planes gives).
        """
        from resin.runtime.planner import face_indices

        size = size or self.config.patch_size
        idx = [face_indices(start[i], size[i], self.shape[i]) for i in range(3)]
        ys = slice(int(idx[1].min()), int(idx[1].max()) + 1)
        xs = slice(int(idx[2].min()), int(idx[2].max()) + 1)
        t = idx[0] / self.k
        z_lo = int(np.floor(t.min()))
        z_hi = min(int(np.ceil(t.max())) + 1, self.reader.shape[0])
        box = self.norm.apply(self.reader.read((slice(z_lo, z_hi), ys, xs)))
        if self.k > 1:
            box = lerp_planes(box, t - z_lo)
            zi = np.arange(len(t))
        else:
            zi = idx[0] - z_lo
        return np.ascontiguousarray(box[np.ix_(zi, idx[1] - ys.start, idx[2] - xs.start)],
                                    dtype=np.float32)

    def _random_start(self, inside: bool = False) -> tuple[int, int, int]:
        pz, py, _ = self.config.patch_size
        mz, my, mx = (0, 0, 0) if inside else self.face_margin
        # the far x face only without a held-out strip (which lies beyond it)
        return (int(self.rng.integers(-mz, self.shape[0] - pz + mz + 1)),
                int(self.rng.integers(-my, self.shape[1] - py + my + 1)),
                int(self.rng.integers(-mx, self.train_x_max + (0 if self.holdout else mx) + 1)))

    def sample(self, inside: bool = False) -> np.ndarray:
        """One augmented foreground patch (Z, Y, X), float32, normalized; ``inside``: one
        that does not reach past the volume's faces whatever ``face_margin`` is."""
        best = self._foreground(lambda: self.read_patch(self._random_start(inside)))
        return self.augment(best) if self.config.augment else best

    def _foreground(self, draw: Callable[[], np.ndarray]) -> np.ndarray:
        """The first of ``draw``'s blocks whose 99th percentile reaches the foreground level
        (at most ``foreground_tries`` draws), else the brightest."""
        return bright_draw(draw, lambda block: np.percentile(block, 99), self.foreground_level,
                           self.config.foreground_tries)

    def batch(self, inside: bool = False) -> np.ndarray:
        """(N, 1, Z, Y, X) float32 (``inside``: see :meth:`sample`)."""
        return np.stack([self.sample(inside) for _ in range(self.config.batch_size)])[:, None]

    def real_batch(self) -> np.ndarray | None:
        """The discriminators' real patches when patches may reach past the faces: drawn
        inside the volume, so repeated face planes (constant along one axis, noise
        included, which no acquired data is) are never shown to them as real; None when
        every patch is inside."""
        return self.batch(inside=True) if any(self.face_margin) else None

    def rotated_batch(self, matrix: np.ndarray) -> np.ndarray | None:
        """(N, 1, P, P, P) foreground patches seen through a rotation, or None if the volume
        is too small: ``out[q] = volume(c + matrix @ q)`` (q: offsets from the patch centre,
        c: the centre of a random foreground block), trilinear.

        Each is resampled from a block read around c that holds every point it needs, so
        all of it is data. Rotating a patch already drawn (what training does to F's
        output) leaves the corners that came from outside it to be filled, and for an
        oblique PSF that leaves a centred cube of only ~60 % of the side (45 degrees) on
        which a loss can be trusted; training's self-imitation pair uses these instead.
        """
        patches = [self.rotated_patch(matrix) for _ in range(self.config.batch_size)]
        if patches[0] is None:
            return None
        return np.stack(patches)[:, None]  # type: ignore[arg-type]

    def rotated_patch(self, matrix: np.ndarray) -> np.ndarray | None:
        """One (P, P, P) patch of :meth:`rotated_batch`; None if the volume is too small."""
        from resin.kernels import affine_transform

        side = self.config.patch_size[0]
        m = np.asarray(matrix, dtype=np.float64)
        half = (side - 1) / 2 * np.abs(m).sum(axis=1)
        z, y, x = (int(math.ceil(2 * h)) + 2 for h in half)  # +2: trilinear neighbours
        size = (z, y, x)
        x_room = self.train_x_max + self.config.patch_size[2] - size[2]
        if size[0] > self.shape[0] or size[1] > self.shape[1] or x_room < 0:
            return None
        c_in = (np.asarray(size, dtype=np.float64) - 1) / 2
        offset = c_in - m @ np.full(3, (side - 1) / 2)

        def draw() -> np.ndarray:
            start = (int(self.rng.integers(0, self.shape[0] - size[0] + 1)),
                     int(self.rng.integers(0, self.shape[1] - size[1] + 1)),
                     int(self.rng.integers(0, x_room + 1)))
            return self.read_patch(start, size)

        block = self._foreground(draw)
        if self.config.augment:
            block = self.augment(block)
        return affine_transform(np.ascontiguousarray(block, dtype=np.float32), m,
                                offset=offset, output_shape=(side,) * 3, order=1)

    def augment(self, patch: np.ndarray) -> np.ndarray:
        """One of :func:`psf_symmetries`, drawn at random (a y/x swap only for square
        lateral sides)."""
        flips = [bool(f) for f in self.rng.integers(0, 2, size=4)]
        if self.oblique:
            op = (flips[1], flips[0], flips[1], False)
        else:
            op = (flips[0], flips[1], flips[2], flips[3] and patch.shape[1] == patch.shape[2])
        return apply_symmetry(patch, op)

    def validation_patches(self, count: int, seed: int) -> list[np.ndarray]:
        """Fixed patches for the validation score (from the held-out strip if there is one)."""
        rng = np.random.default_rng(seed)
        pz, py, px = self.config.patch_size
        x_lo = self.shape[2] - px if self.holdout else 0
        out = []
        for _ in range(count):
            start = (int(rng.integers(0, self.shape[0] - pz + 1)),
                     int(rng.integers(0, self.shape[1] - py + 1)),
                     int(rng.integers(x_lo, self.shape[2] - px + 1)))
            out.append(self.read_patch(start))
        return out

    def preview_region(self, multiple: int) -> tuple[slice, slice, slice]:
        """A centred block (resampled z units) for the PNG previews, at most ~2 x 4 x 4 patches."""
        pz, py, px = self.config.patch_size
        want = (2 * pz, min(4 * py, 256), min(4 * px, 256))
        out = []
        for s, w in zip(self.shape, want, strict=True):
            n = max(multiple, (min(s, w) // multiple) * multiple)
            lo = (s - n) // 2
            out.append(slice(lo, lo + n))
        return out[0], out[1], out[2]

    def read_region(self, region: tuple[slice, slice, slice]) -> np.ndarray:
        """Normalized block; ``region`` is in resampled (z-step) units."""
        start = (int(region[0].start), int(region[1].start), int(region[2].start))
        size = tuple(int(r.stop) - int(r.start) for r in region)
        return self.read_patch(start, size)  # type: ignore[arg-type]


def spread(count: int, picks: int) -> list[int]:
    """``picks`` indices into ``count`` items spread evenly from the first to the last
    (repeating some when ``picks`` > ``count``; [0] for one pick)."""
    if picks == 1:
        return [0]
    return [round(i * (count - 1) / (picks - 1)) for i in range(picks)]


class SeriesSampler:
    """Training patches from every time point of a series: one :class:`PatchSampler` per
    time point, each with that time point's own normalization and foreground level (as
    ``resin-run --time all`` normalizes each time point), all drawing from one seeded
    generator. Each patch comes from a time point drawn at random. The first one given is
    the reference: the measurements made before training (D's start, the noise) and the
    previews read it (``reader``, ``norm``, :meth:`read_patch`, :meth:`read_region`).
    """

    def __init__(self, samplers: list[PatchSampler], seed: int = 0) -> None:
        if len(samplers) < 2:
            raise ValueError("a series sampler needs at least two time points")
        shapes = {s.shape for s in samplers}
        if len(shapes) > 1:
            raise VolumeError(f"{samplers[0].reader.path}: the time points differ in shape "
                              f"({', '.join(map(str, sorted(shapes)))})")
        self.samplers = samplers
        self.rng = np.random.default_rng(seed)
        for s in samplers:
            s.rng = self.rng
        first = samplers[0]
        self.reader, self.norm, self.config = first.reader, first.norm, first.config
        self.shape, self.holdout = first.shape, first.holdout

    def _pick(self) -> PatchSampler:
        return self.samplers[int(self.rng.integers(0, len(self.samplers)))]

    def state(self) -> str:
        return json.dumps(self.rng.bit_generator.state)

    def set_state(self, state: str) -> None:
        self.rng.bit_generator.state = json.loads(state)

    def batch(self, inside: bool = False) -> np.ndarray:
        """(N, 1, Z, Y, X) float32, each patch from a random time point."""
        return np.stack([self._pick().sample(inside)
                         for _ in range(self.config.batch_size)])[:, None]

    def real_batch(self) -> np.ndarray | None:
        return self.batch(inside=True) if any(self.samplers[0].face_margin) else None

    def rotated_batch(self, matrix: np.ndarray) -> np.ndarray | None:
        patches = [self._pick().rotated_patch(matrix) for _ in range(self.config.batch_size)]
        if patches[0] is None:
            return None
        return np.stack(patches)[:, None]  # type: ignore[arg-type]

    def validation_patches(self, count: int, seed: int) -> list[np.ndarray]:
        """``count`` fixed patches spread evenly over the time points (first to last)."""
        return [self.samplers[t].validation_patches(1, seed + i)[0]
                for i, t in enumerate(spread(len(self.samplers), count))]

    def read_patch(self, start: tuple[int, int, int],
                   size: tuple[int, int, int] | None = None) -> np.ndarray:
        return self.samplers[0].read_patch(start, size)

    def preview_region(self, multiple: int) -> tuple[slice, slice, slice]:
        return self.samplers[0].preview_region(multiple)

    def read_region(self, region: tuple[slice, slice, slice]) -> np.ndarray:
        return self.samplers[0].read_region(region)


def foreground_level(sample: np.ndarray, norm: Normalization, percentile: float) -> float:
    """The normalized intensity a foreground patch's 99th percentile must reach."""
    return float(norm.apply(np.asarray([np.percentile(sample, percentile)]))[0])


def describe(reader: VolumeReader) -> dict[str, Any]:
    return {"path": str(reader.path), "shape": list(reader.shape), "dtype": str(reader.dtype)}
