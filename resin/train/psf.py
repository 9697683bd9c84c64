"""How much more the raw volume is blurred axially than laterally, from the raw volume alone.

RESIN's premise is that the sample is statistically the same in every direction
(rotational equivariance), so the axial and lateral power spectra of the raw volume differ
only by the extra axial blur: for a Gaussian PSF, ``S_axial(k) = S_lateral(k) *
exp(-(s_a^2 - s_l^2) k^2)`` plus the same white noise floor. The extra axial sigma
``sqrt(s_a^2 - s_l^2)`` is the blur D must learn; :func:`estimate_axial_blur` finds it by
forward modelling (see there). Training starts D there instead of at
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

    Forward model: blurring the lateral lines by ``sigma`` in real space (then windowing
    both alike, so window leakage treats model and data the same) must give the axial
    lines' power spectrum, up to the white noise that the blur removed from the lateral
    lines but that the axial lines still carry. The sigma with the least squared log
    mismatch over all frequencies wins (where both spectra are down at the noise floor the
    mismatch is ~0 for every sigma, so those frequencies do not bias the fit).
    ``frequencies`` counts those where the axial signal clears the noise floor; fewer than
    2 means no usable signal and a sigma of 0. ``angle_deg`` tilts the PSF axis from z
    towards x (the block should then be cubic).

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
    k = 2 * math.pi * np.fft.rfftfreq(length)
    band = slice(int(len(k) * (1 - _NOISE_BAND)), None)
    lateral_lines = [np.moveaxis(a, axis, 0) for a in aligned for axis in (1, 2)]

    def lateral_power(lines: list[np.ndarray]) -> np.ndarray:
        return np.mean([_line_power(v, 0, length) for v in lines], axis=0)

    axial = np.mean([_line_power(a, 0, length) for a in aligned], axis=0)
    lateral = lateral_power(lateral_lines)
    noise = float(np.median(lateral[band]))
    used = int(((axial - noise) > _SNR * noise).sum())
    if used < 2:
        return AxialBlurEstimate(0.0, used)
    log_axial = np.log(axial[1:])
    best = (math.inf, 0.0)
    impulse = np.zeros(length)
    impulse[0] = 1.0
    for sigma in np.arange(0.0, max_sigma + 1e-9, 0.1):
        blurred = [gaussian_filter1d(v, sigma, axis=0, mode="reflect") if sigma else v
                   for v in lateral_lines]
        model = lateral_power(blurred)
        # the noise power the sampled, truncated filter removed: 1 - |H(k)|^2
        gain = np.abs(np.fft.rfft(gaussian_filter1d(impulse, sigma, mode="wrap")
                                  if sigma else impulse)) ** 2
        model = model + noise * (1.0 - gain)
        err = float(np.mean((log_axial - np.log(model[1:])) ** 2))
        if err < best[0]:
            best = (err, float(sigma))
    return AxialBlurEstimate(best[1], used)
