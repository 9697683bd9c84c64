"""Global percentile normalization, computed once per volume by streamed sampling.

The network was trained on ``(x - p_low) / (p_high - p_low)`` with the volume's own
percentiles; computing them per tile would change the mapping from tile to tile (seams,
flicker), so they are computed once for the whole volume and recorded with the output.

Sampling is :func:`resin.data.volume_sample` (seeded 64^3 blocks spread over the volume,
at most :data:`resin.data.SAMPLE_VOXELS` voxels, never whole planes) and the levels rule is
:func:`resin.data.percentile_levels`: the same as training, so a model runs under the
mapping it was trained with. Small volumes are used whole, giving exact percentiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from resin.errors import VolumeError


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


class _View:
    """A ``read(region)`` function seen as the reader :func:`resin.data.volume_sample` takes."""

    def __init__(self, read: Callable[[tuple[slice, slice, slice]], np.ndarray],
                 shape: tuple[int, int, int], path: str) -> None:
        self.read_fn, self.shape, self.path = read, shape, path

    def read(self, region: tuple[slice, slice, slice] | None = None) -> np.ndarray:
        full = tuple(slice(0, s) for s in self.shape)
        return np.asarray(self.read_fn(region or full))  # type: ignore[arg-type]


def sample_levels(read: Callable[[tuple[slice, slice, slice]], np.ndarray],
                  shape: tuple[int, int, int], low_percentile: float, high_percentile: float,
                  source: str = "volume", seed: int = 0,
                  max_voxels: int | None = None) -> Levels:
    """Percentile levels of a volume read block by block through ``read(region)``.

    A NaN or infinity in a sampled block is a :class:`VolumeError`; so is a volume with no
    voxels. A constant volume gets ``high = low + 1`` so normalization stays finite.
    """
    from resin.data import SAMPLE_VOXELS, percentile_levels, volume_sample

    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    values = volume_sample(_View(read, shape, source), max_voxels or SAMPLE_VOXELS, seed,
                           source)  # the stored dtype, as training: 2 B per uint16 voxel
    levels = percentile_levels(values, low_percentile, high_percentile, in_place=True)
    low, high = levels if levels is not None else (float(values[0]), float(values[0]) + 1.0)
    return Levels(low_percentile=float(low_percentile), high_percentile=float(high_percentile),
                  low=low, high=high, samples=int(values.size))


def normalize_tile(tile: np.ndarray, levels: Levels, dtype: npt.DTypeLike = np.float32,
                   source: str = "volume") -> np.ndarray:
    """``(tile - low) / (high - low)`` as the network's input dtype; NaN/inf is a VolumeError."""
    out = unit_range(tile, levels.low, levels.high)
    if tile.dtype.kind == "f" and not np.isfinite(out).all():
        raise VolumeError(f"{source}: the volume contains NaN or infinite values")
    return out if np.dtype(dtype) == np.float32 else out.astype(dtype)


def unit_range(values: npt.ArrayLike, low: float, high: float) -> np.ndarray:
    """``(values - low) / (high - low)`` in float32, with the exact arithmetic the runtime
    feeds the network (a new array)."""
    out = np.array(values, dtype=np.float32, copy=True)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return out
