"""Synthetic neurite-like volumes with a known ground truth.

The object is a set of random smooth 3D curves drawn as tubes whose radius and
brightness vary along their length (plus optional round blobs), on an isotropic grid.
The raw volume is that object blurred by an anisotropic Gaussian PSF (long axis along z,
or tilted by ``angle_deg`` from z towards x), optionally subsampled along z, then
Poisson shot noise, Gaussian read noise and a camera offset are added, as a camera
would. Both volumes are uint16 in the same units (camera counts), so min-max
normalised metrics compare like with like.

Everything is drawn from one ``numpy.random.Generator(seed)`` in a fixed order: the
same arguments give the same bytes.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from resin import _log
from resin._optional import require
from resin.errors import UsageError

Shape3 = tuple[int, int, int]

#: Defaults chosen so the blurred input scores in the paper's regime
#: (RMSE ~10-15, SSIM ~0.6-0.7 against the truth); see docs/metrics.md.
DEFAULT_SHAPE: Shape3 = (64, 256, 256)
DEFAULT_SIGMA: tuple[float, float] = (1.0, 5.0)
DEFAULT_PHOTONS = 3000.0
DEFAULT_READ_NOISE = 2.0
DEFAULT_OFFSET = 100
DEFAULT_BACKGROUND = 2.0
NOISE_SLAB = 16  # planes per noise-drawing slab
BIG_VOLUME = 1 << 25  # voxels; bigger volumes show progress while tubes are drawn


@dataclass(frozen=True)
class Simulation:
    """A simulated acquisition: ``raw`` as a camera records it and its noise-free ``truth``."""

    raw: np.ndarray
    """uint16 ZYX; ``ceil(Z / z_step)`` planes."""
    truth: np.ndarray
    """uint16 ZYX on the isotropic grid (shape ``shape``), same units as ``raw``."""
    psf_sigma_zyx: tuple[float, float, float]
    """PSF sigmas (axial, lateral, lateral) in truth voxels, before tilting by ``angle_deg``."""
    angle_deg: float
    """tilt of the PSF's long axis from z towards x."""
    z_step: int
    """raw keeps every ``z_step``-th plane of the blurred object."""
    seed: int

    def psf(self) -> np.ndarray:
        """The PSF kernel that made ``raw`` (sum 1, on the truth grid)."""
        return gaussian_psf(self.psf_sigma_zyx, self.angle_deg)


def gaussian_psf(sigma_zyx: tuple[float, float, float], angle_deg: float = 0.0,
                 truncate: float = 4.0) -> np.ndarray:
    """Sampled anisotropic Gaussian kernel (float32, odd sizes, sum 1).

    ``sigma_zyx`` are the sigmas along the kernel's own axes; its z axis is then tilted by
    ``angle_deg`` towards x (rotation in the z-x plane). The kernel reaches
    ``int(truncate * s + 0.5)`` voxels along each axis, ``s`` being the sigma projected on
    that axis, which for ``angle_deg=0`` matches ``scipy.ndimage.gaussian_filter``.
    """
    sz, sy, sx = (float(s) for s in sigma_zyx)
    if min(sz, sy, sx) <= 0 or not all(math.isfinite(s) for s in (sz, sy, sx)):
        raise UsageError(f"PSF sigmas must be positive numbers, got {sigma_zyx}")
    a = math.radians(float(angle_deg))
    # covariance in (z, x) after rotating the kernel's z axis towards x; y is untouched
    c, s = math.cos(a), math.sin(a)
    czz = sz * sz * c * c + sx * sx * s * s
    cxx = sz * sz * s * s + sx * sx * c * c
    czx = (sz * sz - sx * sx) * c * s
    rz = int(truncate * math.sqrt(czz) + 0.5)
    ry = int(truncate * sy + 0.5)
    rx = int(truncate * math.sqrt(cxx) + 0.5)
    z = np.arange(-rz, rz + 1, dtype=np.float64)[:, None, None]
    y = np.arange(-ry, ry + 1, dtype=np.float64)[None, :, None]
    x = np.arange(-rx, rx + 1, dtype=np.float64)[None, None, :]
    det = czz * cxx - czx * czx
    # inverse of the 2x2 (z, x) covariance
    izz, ixx, izx = cxx / det, czz / det, -czx / det
    q = izz * z * z + 2.0 * izx * z * x + ixx * x * x + (y * y) / (sy * sy)
    kernel = np.exp(-0.5 * q)
    kernel /= kernel.sum()
    return kernel.astype(np.float32)


def blur(volume: np.ndarray, sigma_zyx: tuple[float, float, float],
         angle_deg: float = 0.0) -> np.ndarray:
    """Convolve with :func:`gaussian_psf` (zero outside the volume); float32 out."""
    ndimage = require("scipy.ndimage", "resin simulate")
    vol = np.asarray(volume, dtype=np.float32)
    if float(angle_deg) % 180.0 == 0.0:
        # separable: the same sampled, normalised, truncated kernel as gaussian_psf
        out = ndimage.gaussian_filter(vol, sigma=sigma_zyx, mode="constant", cval=0.0,
                                      truncate=4.0)
        return np.asarray(out, dtype=np.float32)
    signal = require("scipy.signal", "resin simulate")
    kernel = gaussian_psf(sigma_zyx, angle_deg)
    out = signal.fftconvolve(vol, kernel, mode="same")
    # FFT round-off leaves tiny negatives next to empty space
    return np.maximum(out, 0.0).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, n: int, dims: int, corr: float) -> np.ndarray:
    """``n`` x ``dims`` Gaussian noise smoothed over ``corr`` samples, unit variance."""
    ndimage = require("scipy.ndimage", "resin simulate")
    pad = int(3 * corr) + 1
    raw = rng.standard_normal((n + 2 * pad, dims))
    sm = ndimage.gaussian_filter1d(raw, corr, axis=0, mode="nearest")[pad:pad + n]
    std = sm.std(axis=0, keepdims=True)
    return np.asarray(sm / np.where(std > 0, std, 1.0))


def _curve(rng: np.random.Generator, shape: Shape3, step: float) -> np.ndarray:
    """Points (N x 3, float zyx) of a smooth random curve crossing the volume."""
    extent = np.asarray(shape, dtype=np.float64)
    start = rng.uniform(0.1, 0.9, size=3) * extent
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    length = float(rng.uniform(0.6, 1.5) * extent.max())
    n = max(int(length / step), 8)
    # the heading wanders smoothly: persistence ~40 voxels makes gently bending neurites
    wander = _smooth_noise(rng, n, 3, corr=40.0 / step) * 0.7
    heading = direction[None, :] + wander
    heading /= np.linalg.norm(heading, axis=1, keepdims=True)
    # grow both ways from the start point so the curve passes through the interior
    half = n // 2
    fwd = np.cumsum(heading[half:] * step, axis=0)
    bwd = -np.cumsum(heading[:half][::-1] * step, axis=0)[::-1]
    pts = start[None, :] + np.concatenate([bwd, np.zeros((1, 3)), fwd[:-1]], axis=0)
    return pts


def _stamp_tube(obj: np.ndarray, points: np.ndarray, radii: np.ndarray,
                values: np.ndarray) -> None:
    """Draw anti-aliased balls along ``points`` into ``obj`` (running maximum)."""
    shape = np.asarray(obj.shape)
    for p, r, v in zip(points, radii, values, strict=True):
        reach = r + 1.0
        lo = np.maximum(np.floor(p - reach).astype(int), 0)
        hi = np.minimum(np.ceil(p + reach).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        z = np.arange(lo[0], hi[0], dtype=np.float32)[:, None, None] - p[0]
        y = np.arange(lo[1], hi[1], dtype=np.float32)[None, :, None] - p[1]
        x = np.arange(lo[2], hi[2], dtype=np.float32)[None, None, :] - p[2]
        d = np.sqrt(z * z + y * y + x * x)
        ball = np.clip(r + 0.5 - d, 0.0, 1.0) * v
        region = obj[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        np.maximum(region, ball, out=region)


def _draw_tube(obj: np.ndarray, rng: np.random.Generator, shape: Shape3, step: float) -> None:
    """One random tube: a smooth curve with smoothly varying radius and brightness."""
    pts = _curve(rng, shape, step)
    n = len(pts)
    radius = 1.6 + 0.6 * _smooth_noise(rng, n, 1, corr=30.0 / step)[:, 0]
    radius = np.clip(radius, 0.8, 3.0)
    level = float(rng.uniform(0.45, 1.0))
    bright = level * (1.0 + 0.15 * _smooth_noise(rng, n, 1, corr=50.0 / step)[:, 0])
    bright = np.clip(bright, 0.3, 1.0)
    inside = np.all((pts > -4) & (pts < np.asarray(shape) + 4), axis=1)
    _stamp_tube(obj, pts[inside], radius[inside], bright[inside])


def render_object(shape: Shape3, rng: np.random.Generator, n_tubes: int | None = None,
                  n_blobs: int = 0) -> np.ndarray:
    """Noise-free object in [0, 1] (float32 ZYX): tubes and optional blobs."""
    obj = np.zeros(shape, dtype=np.float32)
    if n_tubes is None:
        # ~40 tubes in 64x256x256 (~2% of voxels): dense enough that the blurred input
        # scores like the paper's (RMSE ~14), sparse enough to stay neurite-like
        n_tubes = max(3, round(float(np.prod(shape)) / 1.05e5))
    step = 0.5
    show = obj.size >= BIG_VOLUME
    bar_cm = _log.progress(n_tubes, "simulate: drawing tubes", unit="tubes") if show \
        else nullcontext(None)
    with bar_cm as bar:
        for _ in range(n_tubes):
            _draw_tube(obj, rng, shape, step)
            if bar is not None:
                bar.advance(1)
    for _ in range(n_blobs):
        centre = rng.uniform(0.05, 0.95, size=3) * np.asarray(shape)
        r = float(rng.uniform(2.0, 5.0))
        _stamp_tube(obj, centre[None, :], np.array([r]), np.array([rng.uniform(0.5, 1.0)]))
    return obj


def _to_uint16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 65535).astype(np.uint16)


def simulate(shape: Shape3 = DEFAULT_SHAPE, sigma: tuple[float, float] = DEFAULT_SIGMA,
             angle_deg: float = 0.0, photons: float = DEFAULT_PHOTONS,
             read_noise: float = DEFAULT_READ_NOISE, offset: float = DEFAULT_OFFSET,
             seed: int = 0, z_step: int = 1, background: float = DEFAULT_BACKGROUND,
             n_tubes: int | None = None, n_blobs: int = 0) -> Simulation:
    """Simulate one acquisition of random tubes.

    ``shape`` is the truth's (isotropic) ZYX shape; ``sigma`` = (lateral, axial) PSF sigma
    in voxels; ``photons`` is the expected photon count at the brightest object voxel
    before blurring; ``background`` photons per voxel are added everywhere;
    ``read_noise`` is the Gaussian camera noise sigma (counts); ``offset`` the camera
    baseline (counts). ``raw`` keeps every ``z_step``-th plane of the blurred object.
    """
    if len(shape) != 3 or any(int(s) < 8 for s in shape):
        raise UsageError(f"shape must be three sizes of at least 8 voxels (Z Y X), got {tuple(shape)}")
    if len(sigma) != 2 or any(not (float(s) > 0) for s in sigma):
        raise UsageError(f"sigma must be two positive numbers (lateral axial), got {tuple(sigma)}")
    if not (photons > 0) or not math.isfinite(photons):
        raise UsageError(f"photons must be a positive number, got {photons}")
    if read_noise < 0 or background < 0 or offset < 0:
        raise UsageError("read noise, background and offset must not be negative")
    if int(z_step) < 1 or int(z_step) != z_step:
        raise UsageError(f"z_step must be a positive integer, got {z_step}")
    if (n_tubes is not None and n_tubes < 0) or n_blobs < 0:
        raise UsageError("the numbers of tubes and blobs must not be negative")
    shape3: Shape3 = (int(shape[0]), int(shape[1]), int(shape[2]))
    lateral, axial = float(sigma[0]), float(sigma[1])
    sigma_zyx = (axial, lateral, lateral)

    rng = np.random.default_rng(seed)
    obj = render_object(shape3, rng, n_tubes=n_tubes, n_blobs=n_blobs)
    blurred = blur(obj, sigma_zyx, angle_deg)[:: int(z_step)]
    nz = int(blurred.shape[0])
    raw = np.empty(blurred.shape, dtype=np.uint16)
    # noise in fixed slabs of planes: int64/float64 temporaries stay small, and the
    # draws (hence the bytes) do not depend on the volume's memory footprint
    for z0 in range(0, nz, NOISE_SLAB):
        expected = blurred[z0:z0 + NOISE_SLAB] * np.float32(photons) + np.float32(background)
        counts = rng.poisson(expected).astype(np.float32)
        if read_noise > 0:
            noise = rng.standard_normal(size=counts.shape, dtype=np.float32)
            noise *= np.float32(read_noise)
            counts += noise
        counts += np.float32(offset)
        raw[z0:z0 + NOISE_SLAB] = _to_uint16(counts)
    del blurred
    obj *= np.float32(photons)
    obj += np.float32(background + offset)
    return Simulation(raw=raw, truth=_to_uint16(obj),
                      psf_sigma_zyx=sigma_zyx, angle_deg=float(angle_deg),
                      z_step=int(z_step), seed=int(seed))


def simulate_to_files(out: str | os.PathLike, truth: str | os.PathLike | None = None,
                      overwrite: bool = False, voxel_size: float = 1.0,
                      **kwargs: object) -> Simulation:
    """Run :func:`simulate` and write ``raw`` to ``out`` (and ``truth`` if given)."""
    from resin.errors import OutputExistsError
    from resin.io import volume_format, write_volume

    paths = [p for p in (out, truth) if p is not None]
    for p in paths:
        volume_format(p)  # reject unknown suffixes before spending time
        if not overwrite and os.path.exists(p):
            raise OutputExistsError(f"{p} exists; pass --overwrite to replace it")
    if truth is not None and os.path.abspath(str(truth)) == os.path.abspath(str(out)):
        raise UsageError("the raw and truth outputs must be different paths")
    sim = simulate(**kwargs)  # type: ignore[arg-type]
    lat = float(voxel_size)
    write_volume(out, sim.raw, voxel_size=(lat * sim.z_step, lat, lat), overwrite=overwrite,
                 attrs={"resin_simulate": _record(sim)})
    _log.log(f"wrote raw {sim.raw.shape} uint16 to {out}")
    if truth is not None:
        write_volume(truth, sim.truth, voxel_size=(lat, lat, lat), overwrite=overwrite,
                     attrs={"resin_simulate": _record(sim)})
        _log.log(f"wrote truth {sim.truth.shape} uint16 to {truth}")
    return sim


def _record(sim: Simulation) -> dict[str, object]:
    return {"psf_sigma_zyx": list(sim.psf_sigma_zyx), "angle_deg": sim.angle_deg,
            "z_step": sim.z_step, "seed": sim.seed}


__all__ = ["Simulation", "blur", "gaussian_psf", "render_object", "simulate",
           "simulate_to_files"]
