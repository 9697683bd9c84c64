"""How much more the raw volume is blurred axially than laterally, from the raw volume alone.

RESIN's premise is that the sample is statistically the same in every direction
(rotational equivariance), so the axial and lateral power spectra of the raw volume differ
only by the extra axial blur: for a Gaussian PSF, ``S_axial(k) = S_lateral(k) *
exp(-(s_a^2 - s_l^2) k^2)`` plus the same white noise floor. The extra axial sigma
``sqrt(s_a^2 - s_l^2)`` is the blur D must learn; :func:`estimate_axial_blur` finds it as
the lateral blur that makes the volume look the same along z and along that lateral axis
(see there). Training starts D there instead of at
the identity, so the cycle constraints teach F to deblur from the first step instead of
waiting for the adversarial terms to discover the blur. No ground truth is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: signal must exceed this multiple of the noise floor at a frequency used in the fit
_SNR = 2.0
#: the highest fraction of frequencies whose median power is the noise floor
_NOISE_BAND = 0.25


@dataclass(frozen=True)
class AxialBlurEstimate:
    """Result of :func:`estimate_axial_blur`."""

    sigma: float
    """Extra axial Gaussian sigma (voxels): sqrt(sigma_axial^2 - sigma_lateral^2), >= 0."""
    frequencies: int
    """How many frequencies entered the fit (0: no usable signal; sigma is then 0)."""


def _line_power(block: np.ndarray, axis: int, length: int) -> np.ndarray:
    """Mean power spectrum of the Hann-windowed lines of ``block`` along ``axis``."""
    v = np.moveaxis(block, axis, -1)
    start = (v.shape[-1] - length) // 2
    lines = v[..., start:start + length].reshape(-1, length).astype(np.float64)
    lines = lines - lines.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(lines * np.hanning(length), axis=1)
    return (np.abs(spec) ** 2).mean(axis=0)


def aligned_block(block: np.ndarray, angle_deg: float) -> np.ndarray:
    """The largest box of a cubic ``block`` whose first axis runs along the tilted PSF axis."""
    if abs(angle_deg) < 1e-9:
        return block
    from resin.kernels import affine_transform
    from resin.train.geometry import aligned_basis, aligned_extent

    side = min(block.shape)
    cube = np.ascontiguousarray(block[tuple(slice((s - side) // 2, (s - side) // 2 + side)
                                            for s in block.shape)], dtype=np.float32)
    n = aligned_extent(side, angle_deg)
    out_shape = (n, side, n)
    q = aligned_basis(angle_deg)
    c_in = np.full(3, (side - 1) / 2)
    c_out = (np.asarray(out_shape) - 1) / 2
    return affine_transform(cube, q, offset=c_in - q @ c_out, output_shape=out_shape, order=1)


def estimate_axial_blur(block: np.ndarray | Sequence[np.ndarray], angle_deg: float = 0.0,
                        max_sigma: float = 12.0) -> AxialBlurEstimate:
    """Extra axial blur sigma (voxels) of a raw ``block`` (Z, Y, X), from its spectra.

    Symmetry test: blurring the block along a lateral axis by the right ``sigma`` blurs it
    as much along that axis as along z, and an isotropic sample then looks the same along
    both, so the power spectrum of the blurred block's lines along z must equal that of its
    lines along the lateral axis. Both spectra are of lines through the *same* blurred
    block, windowed alike, so what the lines integrate over across them and the window's
    leakage treat the two sides the same (comparing unblurred lateral lines with axial ones
    instead is biased low by 10-20 %, because lateral lines average over a z extent that
    the axial blur has narrowed). White noise is the one asymmetric part: the blur removes
    ``1 - |H(k)|^2`` of it from the lateral lines and ``1 - sum(h^2)`` from the axial ones;
    the noise floor (median lateral power of the highest frequencies) is subtracted
    accordingly. The sigma with the least squared log mismatch over the frequencies where
    both sides clear the noise wins (steps of 0.5, then 0.1 around the best).

    ``frequencies`` counts those where the raw axial signal clears the noise floor; fewer
    than 2 means no usable signal and a sigma of 0. ``angle_deg`` tilts the PSF axis from z
    towards x (the block should then be cubic): the block is resampled so its first axis
    runs along the PSF, and only the other in-plane axis (x'), which that resampling
    smooths the same way, is compared with it.

    ``block`` may also be a sequence of blocks of one shape (e.g. spread over a volume):
    their spectra are averaged, which steadies the fit on dense or uneven samples where
    one block holds only a few objects.
    """
    from scipy.ndimage import gaussian_filter1d

    blocks = [block] if isinstance(block, np.ndarray) else list(block)
    if not blocks:
        return AxialBlurEstimate(0.0, 0)
    aligned = [aligned_block(np.asarray(b, dtype=np.float32), angle_deg) for b in blocks]
    length = min(min(a.shape) for a in aligned)
    if length < 16:
        return AxialBlurEstimate(0.0, 0)
    lateral_axes = (2,) if abs(angle_deg) > 1e-9 else (1, 2)

    def power(vols: list[np.ndarray], axis: int) -> np.ndarray:
        return np.mean([_line_power(v, axis, length) for v in vols], axis=0)

    lateral = np.mean([power(aligned, axis) for axis in lateral_axes], axis=0)
    noise = float(np.median(lateral[int(len(lateral) * (1 - _NOISE_BAND)):]))
    used = int(((power(aligned, 0) - noise) > _SNR * noise).sum())
    if used < 2:
        return AxialBlurEstimate(0.0, used)
    impulse = np.zeros(length)
    impulse[0] = 1.0

    def mismatch(sigma: float) -> float:
        h = gaussian_filter1d(impulse, sigma, mode="wrap") if sigma else impulse
        floor_axial = noise * float(np.sum(h**2))
        floor_lateral = noise * np.abs(np.fft.rfft(h)) ** 2
        errors = []
        for axis in lateral_axes:
            blurred = [gaussian_filter1d(a, sigma, axis=axis, mode="reflect") if sigma else a
                       for a in aligned]
            axial = power(blurred, 0) - floor_axial
            across = power(blurred, axis) - floor_lateral
            ok = (axial > _SNR * floor_axial) & (across > _SNR * floor_axial)
            ok[0] = False  # the mean, removed from every line
            if ok.sum() < 2:
                return math.inf
            errors.append(float(np.mean((np.log(axial[ok]) - np.log(across[ok])) ** 2)))
        return float(np.mean(errors))

    coarse = min((mismatch(float(s)), float(s)) for s in np.arange(0.0, max_sigma + 1e-9, 0.5))
    lo = max(0.0, coarse[1] - 0.4)
    fine = min((mismatch(float(s)), float(s)) for s in np.arange(lo, coarse[1] + 0.41, 0.1))
    best = min(coarse, fine)
    if not math.isfinite(best[0]):
        return AxialBlurEstimate(0.0, used)
    return AxialBlurEstimate(round(best[1], 2), used)
