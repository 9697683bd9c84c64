"""Global percentile normalization, computed once per volume by streamed sampling.

The network was trained on ``(x - p_low) / (p_high - p_low)`` with the volume's own
percentiles; computing them per tile would change the mapping from tile to tile (seams,
flicker), so they are computed once for the whole volume and recorded with the output.

Sampling reads up to :data:`MAX_PLANES` evenly spaced z planes (one at a time, so memory is
one plane) and keeps a fixed-seed random subset of each, at most :data:`MAX_SAMPLES` values
in all. Small volumes are used whole, giving exact percentiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from resin.errors import VolumeError

MAX_PLANES = 64
MAX_SAMPLES = 4_000_000


@dataclass(frozen=True)
class Levels:
    """The volume's intensities at the model's low/high percentiles."""

    low_percentile: float
    high_percentile: float
    low: float
    high: float
    samples: int

    def as_attrs(self) -> dict:
        return asdict(self)


def sample_levels(read: Callable[[tuple[slice, slice, slice]], np.ndarray],
                  shape: tuple[int, int, int], low_percentile: float, high_percentile: float,
                  source: str = "volume", seed: int = 0) -> Levels:
    """Percentile levels of a volume read plane by plane through ``read(region)``.

    A NaN or infinity in a sampled plane is a :class:`VolumeError`; so is a volume with no
    voxels. A constant volume gets ``high = low + 1`` so normalization stays finite.
    """
    z, y, x = shape
    if z * y * x == 0:
        raise VolumeError(f"{source}: the volume is empty (shape {shape})")
    planes = np.unique(np.linspace(0, z - 1, num=min(z, MAX_PLANES)).round().astype(int))
    per_plane = max(1, MAX_SAMPLES // len(planes))
    rng = np.random.default_rng(seed)
    parts = []
    for p in planes:
        plane = np.asarray(read((slice(int(p), int(p) + 1), slice(0, y), slice(0, x)))).ravel()
        if plane.dtype.kind == "f" and not np.isfinite(plane).all():
            raise VolumeError(f"{source}: the volume contains NaN or infinite values (plane z={p})")
        if plane.size > per_plane:
            plane = plane[rng.choice(plane.size, per_plane, replace=False)]
        parts.append(plane.astype(np.float64))
    values = np.concatenate(parts)
    low, high = np.percentile(values, [low_percentile, high_percentile])
    low, high = float(low), float(high)
    if not high > low:
        high = low + 1.0
    return Levels(low_percentile=float(low_percentile), high_percentile=float(high_percentile),
                  low=low, high=high, samples=int(values.size))


def normalize_tile(tile: np.ndarray, levels: Levels, dtype: npt.DTypeLike = np.float32,
                   source: str = "volume") -> np.ndarray:
    """``(tile - low) / (high - low)`` as the network's input dtype; NaN/inf is a VolumeError."""
    out = tile.astype(np.float32, copy=True)
    if tile.dtype.kind == "f" and not np.isfinite(out).all():
        raise VolumeError(f"{source}: the volume contains NaN or infinite values")
    out -= np.float32(levels.low)
    out *= np.float32(1.0 / (levels.high - levels.low))
    return out if np.dtype(dtype) == np.float32 else out.astype(dtype)
