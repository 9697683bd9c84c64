"""The RESIN paper's evaluation metrics (definitions: docs/metrics.md), plus two isotropy variants.

All metrics compare an evaluated volume ``pred`` with a ground truth ``truth`` of the same
ZYX shape, each min-max normalised on its own (so dtypes may differ):

- :func:`rmse`: 255.998 x RMSE of the [0, 1] volumes (the paper's "RMSE").
- :func:`ssim`: 3D SSIM with an 11-tap Gaussian window (sigma 1.5), K1 0.01, K2 0.03,
  data range 1, population covariance, mean over voxels at least 5 from every border
  (= ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``).
- :func:`psnr`: 10 log10(1 / MSE) of the [0, 1] volumes.
- :func:`isotropy_ratio`: axial over lateral FWHM of ``pred`` measured on the truth's
  skeleton, as the paper's notebook does; :func:`isotropy_ratio_subvoxel` the same with
  interpolated half-maximum crossings; :func:`isotropy_fourier` needs no truth: lateral over
  axial spectral cut-off frequency. 1.0 is isotropic for all three; > 1 means the axial
  direction is blurrier.

Volumes are never copied whole as floats: everything runs over z-slabs in float32 (float64
only for sums), so a 512x1024x1024 uint16 pair fits a 24 GiB machine. Inputs may be
``numpy.memmap``. Bad input (shape mismatch, constant volume, NaN/inf) raises
:class:`resin.errors.VolumeError`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from resin._optional import require
from resin.errors import OutputExistsError, VolumeError

#: the keys of :func:`evaluate` and of ``resin eval --json``, in table order
KEYS = ("rmse", "ssim", "psnr", "isotropy_ratio", "isotropy_ratio_subvoxel", "isotropy_fourier")

RMSE_SCALE = 255.998
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: 11 taps, as skimage
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
SSIM_K1 = 0.01
SSIM_K2 = 0.03

#: isotropy_ratio constants from the paper's notebook (uint16 scale)
SKELETON_THRESHOLD = 11000
POINT_THRESHOLD = 10000
BORDER = 16
PROFILE_HALF = 10  # profile [c - 10, c + 10): 20 samples

#: isotropy_fourier: Welch blocks, cut-off power quantile, noise-floor band
FOURIER_BLOCK = 128
FOURIER_MAX_BLOCKS = 64
FOURIER_QUANTILE = math.erf(math.sqrt(2.0))  # 2 sigma of a Gaussian spectrum
FOURIER_FLOOR_FROM = 0.4  # cycles/voxel

#: voxels per slab for blockwise passes (32 Mi voxels: 128 MiB per float32 temporary;
#: SSIM holds about a dozen, so ~1.5 GiB whatever the volume size)
SLAB_VOXELS = 1 << 25


#: the fewest voxels per axis the Fourier anisotropy (and so a report) can be measured on
MIN_FOURIER_SIDE = 16


# --------------------------------------------------------------------------- helpers


def _as_volume(volume: np.ndarray, name: str) -> np.ndarray:
    """Accept ndarray-likes (incl. memmap) without copying; reject non-3D / non-real data."""
    if not hasattr(volume, "shape") or not hasattr(volume, "dtype"):
        volume = np.asarray(volume)
    if len(volume.shape) != 3:
        raise VolumeError(f"{name} must be a 3D ZYX volume, got shape {tuple(volume.shape)}")
    kind = np.dtype(volume.dtype).kind
    if kind not in "uif" and kind != "b":
        raise VolumeError(f"{name} has unsupported dtype {volume.dtype}; use integers or floats")
    return volume


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _as_volume(pred, "prediction")
    t = _as_volume(truth, "truth")
    if tuple(p.shape) != tuple(t.shape):
        raise VolumeError(f"prediction and truth have different shapes {tuple(p.shape)} and "
                          f"{tuple(t.shape)}; evaluate volumes on the same grid")
    return p, t


def _slabs(nz: int, plane_voxels: int, halo: int = 0) -> Iterator[tuple[int, int]]:
    """z-ranges [z0, z1) of about SLAB_VOXELS voxels, halo planes included.

    With a halo, a slab is at least 3 halos thick so the re-read halo stays a minority.
    """
    step = max(1, SLAB_VOXELS // max(plane_voxels, 1) - 2 * halo, 2 * halo)
    for z0 in range(0, nz, step):
        yield z0, min(nz, z0 + step)


def value_range(volume: np.ndarray, name: str = "volume") -> tuple[float, float]:
    """(min, max) of a volume, slab by slab; NaN/inf or a constant volume is a VolumeError."""
    vol = _as_volume(volume, name)
    lo, hi = math.inf, -math.inf
    plane = int(vol.shape[1]) * int(vol.shape[2])
    for z0, z1 in _slabs(int(vol.shape[0]), plane):
        block = np.asarray(vol[z0:z1])
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise VolumeError(f"{name} contains NaN or infinite values; metrics need finite data")
        lo = min(lo, float(block.min()))
        hi = max(hi, float(block.max()))
    if not hi > lo:
        raise VolumeError(f"{name} is constant ({lo:g}); min-max normalised metrics need contrast")
    return lo, hi


def _unit(block: np.ndarray, rng: tuple[float, float]) -> np.ndarray:
    """Min-max normalise a block to [0, 1] in float32."""
    lo, hi = rng
    out = np.asarray(block, dtype=np.float32) - np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    return out


# --------------------------------------------------------------------------- intensity metrics


def _mse(pred: np.ndarray, truth: np.ndarray, prange: tuple[float, float],
         trange: tuple[float, float]) -> float:
    plane = int(pred.shape[1]) * int(pred.shape[2])
    total = 0.0
    for z0, z1 in _slabs(int(pred.shape[0]), plane):
        diff = _unit(pred[z0:z1], prange)
        diff -= _unit(truth[z0:z1], trange)
        total += float(np.einsum("i,i->", diff.ravel(), diff.ravel(), dtype=np.float64))
    return total / float(np.prod(pred.shape, dtype=np.float64))


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """255.998 x root-mean-square error of the min-max normalised volumes."""
    p, t = _check_pair(pred, truth)
    mse = _mse(p, t, value_range(p, "prediction"), value_range(t, "truth"))
    return RMSE_SCALE * math.sqrt(mse)


def _psnr_from_mse(mse: float) -> float:
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of the min-max normalised volumes, data range 1."""
    p, t = _check_pair(pred, truth)
    return _psnr_from_mse(_mse(p, t, value_range(p, "prediction"), value_range(t, "truth")))


def _ssim(pred: np.ndarray, truth: np.ndarray, prange: tuple[float, float],
          trange: tuple[float, float]) -> float:
    ndimage = require("scipy.ndimage", "ssim")
    nz, ny, nx = (int(s) for s in pred.shape)
    win = 2 * SSIM_RADIUS + 1
    if min(nz, ny, nx) < win:
        raise VolumeError(f"volume shape {(nz, ny, nx)} is smaller than the {win}-voxel SSIM "
                          "window along some axis")
    r = SSIM_RADIUS
    c1 = np.float32(SSIM_K1**2)
    c2 = np.float32(SSIM_K2**2)

    def filt(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma=SSIM_SIGMA, truncate=SSIM_TRUNCATE,
                                       mode="reflect")

    total = 0.0
    # the mean runs over voxels >= r from every border, whose windows lie inside the
    # volume: each slab of output planes [z0, z1) reads planes [z0 - r, z1 + r)
    for z0, z1 in _slabs(nz - 2 * r, ny * nx, halo=r):
        a, b = z0, z1 + 2 * r  # input planes, in volume coordinates
        x = _unit(pred[a:b], prange)
        y = _unit(truth[a:b], trange)
        ux, uy = filt(x), filt(y)
        vx = filt(x * x)
        vx -= ux * ux
        vy = filt(y * y)
        vy -= uy * uy
        vxy = filt(x * y)
        vxy -= ux * uy
        del x, y
        num = (2 * ux * uy + c1) * (2 * vxy + c2)
        den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
        s = (num / den)[r:-r, r:ny - r, r:nx - r]
        total += float(s.sum(dtype=np.float64))
    count = float(nz - 2 * r) * float(ny - 2 * r) * float(nx - 2 * r)
    return total / count


def ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    """3D SSIM of the min-max normalised volumes (Gaussian window sigma 1.5, 11 taps)."""
    p, t = _check_pair(pred, truth)
    return _ssim(p, t, value_range(p, "prediction"), value_range(t, "truth"))


# --------------------------------------------------------------------------- isotropy (truth)


def _axes(axial_axis: int) -> tuple[int, int, int]:
    if axial_axis not in (0, 1, 2):
        raise VolumeError(f"axial axis must be 0, 1 or 2 (z, y, x), got {axial_axis}")
    lateral = [a for a in (0, 1, 2) if a != axial_axis]
    return axial_axis, lateral[0], lateral[1]


def _uint16_scale(values: np.ndarray, rng: tuple[float, float]) -> np.ndarray:
    """The notebook's min-max to uint16: (v - min) / (max - min) * 65535, truncated."""
    lo, hi = rng
    scaled = (np.asarray(values, dtype=np.float64) - lo) / (hi - lo) * 65535.0
    return scaled.astype(np.uint16)


def skeleton_points(truth: np.ndarray, trange: tuple[float, float] | None = None) -> np.ndarray:
    """Truth skeleton voxels (N x 3, zyx) where isotropy is measured.

    Skeleton of (uint16-normalised truth >= 11000); kept where the truth > 10000 and the
    voxel is at least 16 voxels from every border (16 <= c <= n - 17).
    """
    morphology = require("skimage.morphology", "isotropy_ratio (skeletonization)",
                         extra="eval")
    t = _as_volume(truth, "truth")
    rng = trange if trange is not None else value_range(t, "truth")
    plane = int(t.shape[1]) * int(t.shape[2])
    mask = np.empty(tuple(int(s) for s in t.shape), dtype=bool)
    for z0, z1 in _slabs(int(t.shape[0]), plane):
        mask[z0:z1] = _uint16_scale(t[z0:z1], rng) >= SKELETON_THRESHOLD
    skeleton = morphology.skeletonize(mask)
    del mask
    pts = np.argwhere(skeleton)
    shape = np.asarray(t.shape)
    inside = np.all((pts >= BORDER) & (pts <= shape - 1 - BORDER), axis=1)
    pts = pts[inside]
    if len(pts):
        values = _uint16_scale(t[pts[:, 0], pts[:, 1], pts[:, 2]], rng)
        pts = pts[values > POINT_THRESHOLD]
    return pts


def _profiles(volume: np.ndarray, points: np.ndarray, axis: int) -> np.ndarray:
    """(N, 20) samples of ``volume`` along ``axis`` over [c - 10, c + 10) at each point."""
    offsets = np.arange(-PROFILE_HALF, PROFILE_HALF)
    idx = [np.repeat(points[:, a:a + 1], len(offsets), axis=1) for a in range(3)]
    idx[axis] = points[:, axis:axis + 1] + offsets[None, :]
    return np.asarray(volume[idx[0], idx[1], idx[2]])


def _fwhm_voxel(prof: np.ndarray) -> np.ndarray:
    """last - first index with value >= max / 2, per row."""
    above = prof >= prof.max(axis=1, keepdims=True) / 2.0
    n = prof.shape[1]
    first = np.argmax(above, axis=1)
    last = n - 1 - np.argmax(above[:, ::-1], axis=1)
    return (last - first).astype(np.float64)


def _fwhm_subvoxel(prof: np.ndarray) -> np.ndarray:
    """Distance between the linearly interpolated half-maximum crossings, per row.

    The crossings are found around the first and last samples >= max / 2; where that
    sample is the profile's end, the end itself counts (as in the voxel variant).
    """
    half = prof.max(axis=1, keepdims=True) / 2.0
    above = prof >= half
    n = prof.shape[1]
    rows = np.arange(len(prof))
    first = np.argmax(above, axis=1)
    last = n - 1 - np.argmax(above[:, ::-1], axis=1)
    h = half[:, 0]
    left = first.astype(np.float64)
    has_left = first > 0
    i = first[has_left]
    r = rows[has_left]
    p_in, p_out = prof[r, i], prof[r, i - 1]
    left[has_left] = i - (p_in - h[has_left]) / np.where(p_in > p_out, p_in - p_out, 1.0)
    right = last.astype(np.float64)
    has_right = last < n - 1
    j = last[has_right]
    r = rows[has_right]
    p_in, p_out = prof[r, j], prof[r, j + 1]
    right[has_right] = j + (p_in - h[has_right]) / np.where(p_in > p_out, p_in - p_out, 1.0)
    return right - left


def _isotropy(pred: np.ndarray, points: np.ndarray, prange: tuple[float, float],
              axial_axis: int, subvoxel: bool) -> float:
    ax, lat1, lat2 = _axes(axial_axis)
    if len(points) == 0:
        raise VolumeError("the truth has no skeleton voxels >= 16 voxels from the borders; "
                          "isotropy needs structures in a volume of at least 33 voxels per axis")
    sums = {ax: 0.0, lat1: 0.0, lat2: 0.0}
    lo, hi = prange
    for start in range(0, len(points), 1 << 16):
        batch = points[start:start + (1 << 16)]
        for axis in (ax, lat1, lat2):
            prof = _profiles(pred, batch, axis)
            if subvoxel:
                width = _fwhm_subvoxel((prof.astype(np.float64) - lo) / (hi - lo))
            else:
                width = _fwhm_voxel(_uint16_scale(prof, prange).astype(np.float64))
            sums[axis] += float(width.sum())
    if sums[lat1] == 0.0 or sums[lat2] == 0.0:
        return math.nan
    return 0.5 * (sums[ax] / sums[lat1] + sums[ax] / sums[lat2])


def isotropy_ratio(pred: np.ndarray, truth: np.ndarray, axial_axis: int = 0) -> float:
    """Axial over lateral FWHM of ``pred`` summed over the truth's skeleton (1 = isotropic)."""
    p, t = _check_pair(pred, truth)
    _axes(axial_axis)
    points = skeleton_points(t, value_range(t, "truth"))
    return _isotropy(p, points, value_range(p, "prediction"), axial_axis, subvoxel=False)


def isotropy_ratio_subvoxel(pred: np.ndarray, truth: np.ndarray, axial_axis: int = 0) -> float:
    """:func:`isotropy_ratio` with linearly interpolated half-maximum crossings."""
    p, t = _check_pair(pred, truth)
    _axes(axial_axis)
    points = skeleton_points(t, value_range(t, "truth"))
    return _isotropy(p, points, value_range(p, "prediction"), axial_axis, subvoxel=True)


# --------------------------------------------------------------------------- isotropy (no truth)


def _block_starts(n: int, b: int) -> list[int]:
    count = -(-n // b)
    return sorted({round(s) for s in np.linspace(0, n - b, count)})


def fourier_spectra(volume: np.ndarray, block: int = FOURIER_BLOCK,
                    max_blocks: int = FOURIER_MAX_BLOCKS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per axis, (frequencies in cycles/voxel, marginal power spectrum), Welch-averaged.

    Blocks of up to ``block`` voxels per axis (mean removed, 3D Hann window) are
    Fourier-transformed; the power is averaged over the two other frequency axes and
    over +-f, then over at most ``max_blocks`` blocks spread evenly through the volume.
    """
    signal = require("scipy.signal", "isotropy_fourier")
    vol = _as_volume(volume, "volume")
    shape = tuple(int(s) for s in vol.shape)
    b = tuple(min(block, n) for n in shape)
    if min(b) < MIN_FOURIER_SIDE:
        raise VolumeError(f"volume shape {shape} is too small for isotropy_fourier; it needs "
                          f"at least {MIN_FOURIER_SIDE} voxels per axis (64 or more for "
                          "accuracy)")
    starts = [(z, y, x) for z in _block_starts(shape[0], b[0])
              for y in _block_starts(shape[1], b[1]) for x in _block_starts(shape[2], b[2])]
    if len(starts) > max_blocks:
        pick = np.linspace(0, len(starts) - 1, max_blocks).round().astype(int)
        starts = [starts[i] for i in sorted(set(pick.tolist()))]
    wins = [signal.windows.hann(n, sym=False) for n in b]
    window = (wins[0][:, None, None] * wins[1][None, :, None] * wins[2][None, None, :])
    acc = [np.zeros(n, dtype=np.float64) for n in b]
    for z, y, x in starts:
        # a copy: the in-place steps below must never write into a float64 caller's array
        blk = np.array(vol[z:z + b[0], y:y + b[1], x:x + b[2]], dtype=np.float64)
        if not np.isfinite(blk).all():
            raise VolumeError("volume contains NaN or infinite values; metrics need finite data")
        blk -= blk.mean()
        blk *= window
        power = np.abs(np.fft.fftn(blk)) ** 2
        acc[0] += power.mean(axis=(1, 2))
        acc[1] += power.mean(axis=(0, 2))
        acc[2] += power.mean(axis=(0, 1))
    out = []
    for n, a in zip(b, acc, strict=True):
        half = n // 2
        folded = np.empty(half + 1)
        folded[0] = a[0]
        k = np.arange(1, half + 1)
        folded[1:] = 0.5 * (a[k] + a[(-k) % n])
        out.append((np.arange(half + 1) / n, folded / len(starts)))
    return out


def cutoff_frequencies(volume: np.ndarray, block: int = FOURIER_BLOCK,
                       quantile: float = FOURIER_QUANTILE) -> tuple[float, float, float]:
    """Spectral cut-off per axis (z, y, x), cycles/voxel, as used by :func:`isotropy_fourier`.

    The noise floor is the smallest, over the axes, median marginal power at >= 0.4
    cycles/voxel (the most blurred axis has only noise there). Each axis's cut-off is the
    frequency below which ``quantile`` (erf(sqrt 2) = 95.45 %) of its floor-subtracted
    marginal power lies, each bin's power spread evenly over the bin. For a Gaussian
    spectrum (Gaussian blur of sigma s voxels) that is the e^-2 point, 1 / (sqrt(2) pi s).
    An integral, not a threshold crossing, so one noisy bin cannot move it.
    """
    spectra = fourier_spectra(volume, block=block)
    floor = min(float(np.median(p[f >= FOURIER_FLOOR_FROM])) for f, p in spectra)
    cut = []
    for f, p in spectra:
        s = np.clip(p - floor, 0.0, None)
        s[0] *= 0.5  # bin 0 covers [-df/2, df/2]: half of it is on the positive side
        total = float(s.sum())
        if not total > 0:
            raise VolumeError("the volume has no structure above its noise floor; "
                              "isotropy_fourier is undefined")
        cum = np.cumsum(s) / total
        k = int(np.searchsorted(cum, quantile))
        df = float(f[1] - f[0])
        lo_edge, width = (0.0, 0.5 * df) if k == 0 else (float(f[k]) - 0.5 * df, df)
        before = float(cum[k - 1]) if k > 0 else 0.0
        cut.append(lo_edge + width * (quantile - before) / (float(cum[k]) - before))
    return cut[0], cut[1], cut[2]


def isotropy_fourier(volume: np.ndarray, axial_axis: int = 0) -> float:
    """Mean lateral over axial spectral cut-off frequency (1 = isotropic; no truth needed).

    For Gaussian-blurred noise with sigmas (s_ax, s_lat, s_lat) this is s_ax / s_lat; see
    :func:`cutoff_frequencies` for the exact definition.
    """
    ax, lat1, lat2 = _axes(axial_axis)
    cut = cutoff_frequencies(volume)
    return 0.5 * (cut[lat1] + cut[lat2]) / cut[ax]


# --------------------------------------------------------------------------- all at once


def evaluate(pred: np.ndarray, truth: np.ndarray, axial_axis: int = 0) -> dict[str, float]:
    """All six metrics of ``pred`` against ``truth`` (keys :data:`KEYS`).

    Shape mismatch, a constant volume or NaN/inf raise :class:`VolumeError`; an isotropy
    measure the volume is too small for (fewer than 33 voxels per axis for
    ``isotropy_ratio``, 16 for ``isotropy_fourier``) is NaN, with a log line saying why.
    """
    from resin import _log

    p, t = _check_pair(pred, truth)
    _axes(axial_axis)
    prange = value_range(p, "prediction")
    trange = value_range(t, "truth")
    mse = _mse(p, t, prange, trange)
    _log.debug(f"eval: mse {mse:.6g}")
    ssim_value = _ssim(p, t, prange, trange)
    points = skeleton_points(t, trange)
    _log.debug(f"eval: {len(points)} skeleton points")
    # a volume too small (or too empty) for an isotropy measure still gets the other
    # numbers: that measure is NaN (null in JSON) and the log says why
    iso = iso_sub = fourier = math.nan
    if len(points):
        iso = _isotropy(p, points, prange, axial_axis, subvoxel=False)
        iso_sub = _isotropy(p, points, prange, axial_axis, subvoxel=True)
    else:
        _log.warn("eval: isotropy_ratio is undefined: the truth has no skeleton voxels at "
                 f"least {BORDER} voxels from every border")
    try:
        fourier = isotropy_fourier(p, axial_axis)
    except VolumeError as exc:
        _log.warn(f"eval: isotropy_fourier is undefined: {exc}")
    return {
        "rmse": RMSE_SCALE * math.sqrt(mse),
        "ssim": ssim_value,
        "psnr": _psnr_from_mse(mse),
        "isotropy_ratio": iso,
        "isotropy_ratio_subvoxel": iso_sub,
        "isotropy_fourier": fourier,
    }


def evaluate_files(pred_path: str | os.PathLike, truth_path: str | os.PathLike,
                   axial_axis: int = 0, json_out: str | os.PathLike | None = None,
                   overwrite: bool = False) -> dict[str, float]:
    """Read two volumes, :func:`evaluate` them, optionally write the numbers as JSON."""
    from resin.io import open_volume
    from resin.io._common import check_folder, make_parent

    if json_out is not None:
        if Path(json_out).exists() and not overwrite:
            raise OutputExistsError(f"{json_out} exists; pass --overwrite to replace it")
        check_folder(Path(os.path.abspath(json_out)).parent)  # before the minutes of scoring
    volumes = []
    for path in (pred_path, truth_path):
        with open_volume(path) as reader:
            if not getattr(reader, "complete", True):
                raise VolumeError(f"{path} is incomplete (an unfinished resin-run wrote it); "
                                  "finish that run with --resume before scoring it")
            volumes.append(reader.read())
    pred, truth = volumes
    if tuple(pred.shape) != tuple(truth.shape):
        raise VolumeError(f"{pred_path} and {truth_path} have different shapes "
                          f"{tuple(pred.shape)} and {tuple(truth.shape)}; "
                          "evaluate volumes on the same grid")
    result = evaluate(pred, truth, axial_axis=axial_axis)
    if json_out is not None:
        make_parent(json_out)
        write_json(result, json_out)
    return result


def write_json(result: dict[str, float], path: str | os.PathLike) -> None:
    """The metrics as a JSON object with exactly :data:`KEYS`; non-finite values as null."""
    from resin._atomic import atomic_write

    record = {k: (float(result[k]) if math.isfinite(result[k]) else None) for k in KEYS}
    atomic_write(path, json.dumps(record, indent=2) + "\n")


__all__ = [
    "KEYS",
    "cutoff_frequencies",
    "evaluate",
    "evaluate_files",
    "fourier_spectra",
    "isotropy_fourier",
    "isotropy_ratio",
    "isotropy_ratio_subvoxel",
    "psnr",
    "rmse",
    "skeleton_points",
    "ssim",
    "value_range",
    "write_json",
]
