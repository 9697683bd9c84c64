"""The raw volume's noise, measured from the raw volume alone, so that D can add it back.

D blurs. A blur averages the noise away, so without this a degraded volume D(x) is
smoother than any raw patch, and two things go wrong on noisy data: F learns to restore
noise-free inputs (the self-imitation pair F(D(R(y))) ~ R(y)) and then meets noisy ones,
and the rotational-equivariance discriminator can tell D(R(F(y))) from y by its missing
noise alone, which pushes F to make texture rather than to deblur. So D's outputs get
the noise the blur removed: Gaussian noise of variance ``(gain * mean + floor) (1 - sum
k^2)``, the Poisson-Gaussian model of a camera (``gain * mean``: shot noise; ``floor``:
read noise) minus the part a normalized kernel ``k`` keeps.

The model is fitted on second differences ``(2 v[p] - v[p - s] - v[p + s]) / sqrt(6)``:
white noise of variance ``sigma^2`` gives exactly ``sigma^2`` there, and smooth signal
nearly nothing. Along the blurred axis the signal is smooth; along a sharp lateral axis it
is not, and an oblique PSF has no blurred grid axis. So the robust (median absolute
deviation) variance is taken along the three axes and the six face diagonals, binned by
the local mean, and the smallest per bin is kept: every direction's figure is noise plus
some signal, the smallest the least signal. A noise-free volume measures ~0 and then
nothing is added.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: signal-to-noise at the raw volume's bright level under which training and
#: ``resin-run --report`` warn that the noise, not the blur, limits what comes back
#: (docs/benchmarks.md, "Harder acquisitions": one nuclei volume at 7.7 gained no SSIM, at
#: 12.7-13.3 it gained SSIM but lost least-squares RMSE and over-sharpened z, at 18.0 and
#: on every simulated volume at 26-32 it was better on every metric)
NOISY_SNR = 15.0
#: bins of the local mean the variance is measured in
_BINS = 16
#: fewest samples a bin needs
_MIN_SAMPLES = 200
#: steps (z, y, x) of the second differences: the three axes and six face diagonals
_DIRECTIONS: tuple[tuple[int, int, int], ...] = (
    (1, 0, 0), (0, 1, 0), (0, 0, 1),
    (1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1))


@dataclass(frozen=True)
class NoiseModel:
    """Noise variance ``gain * mean + floor`` (normalized units), at most ``scale`` of it
    in the training patches (linear z interpolation averages planes)."""

    gain: float = 0.0
    floor: float = 0.0
    scale: float = 1.0

    @property
    def silent(self) -> bool:
        return self.gain <= 0.0 and self.floor <= 0.0

    def variance(self, mean: np.ndarray | float) -> np.ndarray:
        return self.scale * np.maximum(self.gain * np.asarray(mean) + self.floor, 0.0)

    def record(self) -> dict[str, float]:
        return {"gain": self.gain, "floor": self.floor, "scale": self.scale}

    def bright_snr(self) -> float | None:
        """Signal-to-noise of a raw plane at the bright level (normalized 1 over 0): the
        range over the noise sigma there; None when no noise was measured."""
        var = self.gain + self.floor
        return None if var <= 0.0 else 1.0 / math.sqrt(var)

    def limited(self, what: str, where: str) -> str | None:
        """The warning that ``what`` (the raw volume, the input) is noise-limited, when its
        :meth:`bright_snr` is under :data:`NOISY_SNR` (``where``: how its bright level is
        named); None otherwise."""
        snr = self.bright_snr()
        if snr is None or snr >= NOISY_SNR:
            return None
        return (f"{what} is noise-limited (signal-to-noise about {snr:.0f} at its {where}): "
                "RESIN restores axial resolution, it does not remove noise; on data this "
                "noisy expect a small gain, or z sharper than it should be (compare x-z "
                "views with the input)")

    def describe(self) -> str:
        """One line for the training log: the noise sigma at 0 and at 1 (normalized)."""
        lo = math.sqrt(float(self.variance(0.0)))
        hi = math.sqrt(float(self.variance(1.0)))
        return (f"noise sigma {lo:.3g} at the background, {hi:.3g} at the bright level "
                f"(variance {self.gain:.3g} * mean + {self.floor:.3g}, normalized units)")


def interpolation_scale(z_step: int) -> float:
    """Mean noise variance of planes linearly interpolated between raw planes K apart
    (``(1 - t)^2 + t^2`` at ``t = r / K``), relative to a raw plane's."""
    k = max(int(z_step), 1)
    return float(np.mean([(1 - r / k) ** 2 + (r / k) ** 2 for r in range(k)]))


def estimate_noise(blocks: Sequence[np.ndarray], z_step: int = 1) -> NoiseModel:
    """Fit :class:`NoiseModel` on normalized blocks of raw planes (no z interpolation).

    ``z_step``: the raw planes' spacing in lateral voxels; training interpolates between
    them, which the model's ``scale`` accounts for.
    """
    means: list[np.ndarray] = []
    diffs: list[list[np.ndarray]] = [[] for _ in _DIRECTIONS]
    for block in blocks:
        v = np.asarray(block, dtype=np.float64)
        if v.ndim != 3 or min(v.shape) < 3:
            continue
        # every direction on the same voxels, the block's core, where all of them exist
        core = tuple(slice(1, n - 1) for n in v.shape)
        here = v[core]
        means.append(_local_mean(v)[core].ravel())
        for i, s in enumerate(_DIRECTIONS):
            before = v[tuple(slice(1 - d, n - 1 - d) for d, n in zip(s, v.shape, strict=True))]
            after = v[tuple(slice(1 + d, n - 1 + d) for d, n in zip(s, v.shape, strict=True))]
            diffs[i].append(((2.0 * here - before - after) / math.sqrt(6.0)).ravel())
    if not means:
        return NoiseModel(scale=interpolation_scale(z_step))
    m = np.concatenate(means)
    ds = [np.concatenate(d) for d in diffs]
    edges = np.unique(np.quantile(m, np.linspace(0.0, 1.0, _BINS + 1)))
    which = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, max(len(edges) - 2, 0))
    xs, ys, ws = [], [], []
    for i in range(max(len(edges) - 1, 1)):
        sel = which == i
        if int(sel.sum()) < _MIN_SAMPLES:
            continue
        var = min(_robust_variance(d[sel]) for d in ds)
        xs.append(float(np.median(m[sel])))
        ys.append(var)
        ws.append(float(sel.sum()))
    scale = interpolation_scale(z_step)
    if not xs:
        return NoiseModel(scale=scale)
    if len(xs) < 2 or np.ptp(xs) <= 0:
        return NoiseModel(0.0, max(float(np.median(ys)), 0.0), scale)
    fit = np.polyfit(xs, ys, 1, w=np.sqrt(ws))
    gain, floor = float(fit[0]), float(fit[1])
    if gain < 0.0:  # no shot noise to see: a constant variance
        gain, floor = 0.0, float(np.average(ys, weights=ws))
    # the variance must not go negative over the data's range
    floor = max(floor, -gain * float(np.min(xs)))
    return NoiseModel(gain, floor, scale)


def _local_mean(v: np.ndarray) -> np.ndarray:
    """Mean over each voxel's 3 x 3 x 3 neighbourhood (edges: the nearest values)."""
    from scipy import ndimage

    return ndimage.uniform_filter(v, size=3, mode="nearest")


def _robust_variance(d: np.ndarray) -> float:
    mad = float(np.median(np.abs(d - np.median(d))))
    return (1.4826 * mad) ** 2
