"""Synthetic microscopy volumes with a known ground truth.

Two kinds of object, both on an isotropic grid and in [0, 1]:

* ``tubes`` (neurite-like): random smooth 3D curves drawn as tubes whose radius and
  brightness vary along their length, plus optional round blobs.
* ``nuclei`` (a confocal stack of dense tissue or an organoid): touching ellipsoidal
  cell nuclei of random size and orientation, each with its own brightness, chromatin-like
  texture, a few bright spots and a slightly brighter rim, in a weak smooth cytoplasmic
  background.

The raw volume is that object blurred by an anisotropic Gaussian PSF (long axis along z,
or tilted by ``angle_deg`` from z towards x), optionally subsampled along z, then
Poisson shot noise, Gaussian read noise and a camera offset are added, as a camera
would; ``noise=False`` leaves the blur only (the RESIN paper's setting). Both volumes
are uint16 in the same units (camera counts), so min-max normalised metrics compare
like with like.

Everything is drawn from one ``numpy.random.Generator(seed)`` in a fixed order: the
same arguments give the same bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from resin import _log
from resin._optional import require
from resin.errors import ResinError, UsageError

Shape3 = tuple[int, int, int]

#: Defaults chosen so the blurred input scores in the paper's regime
#: (RMSE ~10-15, SSIM ~0.6-0.7 against the truth); see docs/metrics.md.
DEFAULT_SHAPE: Shape3 = (64, 256, 256)
DEFAULT_SIGMA: tuple[float, float] = (1.0, 5.0)
DEFAULT_PHOTONS = 3000.0
DEFAULT_READ_NOISE = 2.0
DEFAULT_OFFSET = 100
DEFAULT_BACKGROUND = 2.0
KINDS = ("tubes", "nuclei")
NOISE_SLAB = 16  # planes per noise-drawing slab
BIG_VOLUME = 1 << 25  # voxels; bigger volumes show progress while objects are drawn
#: peak bytes per truth voxel while simulating (float32 object and blur, uint16 outputs,
#: scipy's temporaries), measured on 96x256x256: tubes, nuclei, and a tilted PSF (blurred
#: by FFT, complex spectra of the padded volume)
BYTES_PER_VOXEL = {"tubes": 18, "nuclei": 26, "tilted": 38}

#: Nuclei: a confocal-like PSF (2.5x longer along z) and z sampled every 2nd plane.
NUCLEI_SIGMA: tuple[float, float] = (1.2, 3.0)
NUCLEI_Z_STEP = 2
NUCLEI_DEPTH_FALLOFF = 0.2
NUCLEI_FILL = 0.33  # fraction of voxels inside a nucleus when n_nuclei is not given
NUCLEI_SEMI_AXIS = (5.0, 9.0)  # longest semi-axis, voxels; the other two are 55-100 % of it
NUCLEI_CONTACT = 0.9  # centres at least this times the sum of the radii facing each other
NUCLEI_CYTOPLASM = 0.08  # mean cytoplasm level, relative to a nucleus of brightness 1


@dataclass(frozen=True)
class KindDefaults:
    """What ``simulate`` uses for an argument left at ``None``, per kind of object."""

    sigma: tuple[float, float]
    """PSF sigma (lateral, axial) in voxels."""
    z_step: int
    """raw keeps every ``z_step``-th plane."""
    depth_falloff: float
    """fraction of the brightness lost from the first to the last plane."""


KIND_DEFAULTS: dict[str, KindDefaults] = {
    "tubes": KindDefaults(sigma=DEFAULT_SIGMA, z_step=1, depth_falloff=0.0),
    "nuclei": KindDefaults(sigma=NUCLEI_SIGMA, z_step=NUCLEI_Z_STEP,
                           depth_falloff=NUCLEI_DEPTH_FALLOFF),
}


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
    kind: str = "tubes"
    """``tubes`` or ``nuclei``."""
    noise: bool = True
    """False: ``raw`` is the blurred object without shot or read noise."""
    photons: float = DEFAULT_PHOTONS
    """expected photons at the brightest object voxel (of the first plane), before blurring."""
    read_noise: float = DEFAULT_READ_NOISE
    """camera read noise sigma, counts."""
    offset: float = DEFAULT_OFFSET
    """camera offset, counts (in ``raw`` and ``truth``)."""
    background: float = DEFAULT_BACKGROUND
    """background photons per voxel (in ``raw`` and ``truth``)."""
    depth_falloff: float = 0.0
    """fraction of the object's brightness lost from the first to the last plane."""
    labels: np.ndarray | None = None
    """``nuclei`` only: int32 ZYX on the truth grid, nucleus number (from 1) per voxel
    inside a nucleus, 0 elsewhere."""

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


def _rotations(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (N x 3 x 3) from N raw quaternions (uniform if q is Gaussian)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


@dataclass(frozen=True)
class _Nuclei:
    """The accepted ellipsoids; row ``i`` is nucleus ``i + 1``."""

    centre: np.ndarray  # N x 3, zyx
    semi: np.ndarray  # N x 3, semi-axes along the columns of ``rot``
    rot: np.ndarray  # N x 3 x 3
    level: np.ndarray  # N


def _place_nuclei(shape: Shape3, rng: np.random.Generator, n_nuclei: int | None,
                  depth: np.ndarray, owner: np.ndarray) -> _Nuclei:
    """Random sequential addition of ellipsoids that overlap at most slightly.

    Each voxel goes to the nucleus it lies deepest in (``depth``: distance to that
    nucleus' surface along the ray from its centre, positive inside), so slightly
    overlapping neighbours meet at a flat contact, as squeezed nuclei in tissue do.
    Stops at ``n_nuclei`` nuclei, or when ``NUCLEI_FILL`` of the voxels are inside one,
    or when candidates keep being rejected. Each accepted one is stamped at once.
    """
    extent = np.asarray(shape, dtype=np.float64)
    lo_r, hi_r = NUCLEI_SEMI_AXIS
    target = NUCLEI_FILL * float(np.prod(extent))
    # a rough mean nucleus volume; it only sizes the budget of candidates
    mean_volume = 4.0 / 3.0 * math.pi * ((lo_r + hi_r) / 2) ** 3 * 0.85 * 0.72
    expect = n_nuclei if n_nuclei is not None else max(1, int(target / mean_volume))
    limit = n_nuclei if n_nuclei is not None else np.inf
    max_attempts = 40 * expect + 2000
    cell = 2.0 * hi_r  # no two nuclei further apart than this touch
    grid: dict[tuple[int, int, int], list[int]] = {}
    cap = 1024
    centre = np.empty((cap, 3))
    form = np.empty((cap, 3, 3))  # quadratic forms M: x is inside iff x'Mx <= 1
    semi_ax = np.empty((cap, 3))
    rot_m = np.empty((cap, 3, 3))
    brightness = np.empty(cap)
    n = 0
    filled = 0
    attempts = 0
    chunk = 256
    show = owner.size >= BIG_VOLUME
    if n_nuclei is None:
        bar_cm = _log.progress(target, "simulate: placing nuclei", unit="voxels") if show \
            else nullcontext(None)
    else:
        bar_cm = _log.progress(n_nuclei, "simulate: placing nuclei", unit="nuclei") if show \
            else nullcontext(None)
    with bar_cm as bar:
        while attempts < max_attempts and n < limit and filled < target:
            # candidates drawn in chunks (vectorised); the rest of the last chunk is unused.
            # Centres up to 0.3 radii outside, so the faces of the volume are filled too
            cen = rng.random((chunk, 3)) * (extent + 0.6 * hi_r) - 0.3 * hi_r
            major = rng.uniform(lo_r, hi_r, size=chunk)
            ratio = rng.uniform(0.55, 1.0, size=(chunk, 2))
            rot = _rotations(rng.standard_normal((chunk, 4)))
            level = rng.uniform(0.4, 1.0, size=chunk)
            semi = np.stack([major, major * ratio.max(1), major * ratio.min(1)], axis=1)
            forms = np.einsum("nij,nj,nkj->nik", rot, 1.0 / semi**2, rot)
            for i in range(chunk):
                attempts += 1
                if attempts > max_attempts or n >= limit or filled >= target:
                    break
                c, m = cen[i], forms[i]
                kz, ky, kx = (int(v) for v in np.floor(c / cell))
                near = [j for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                        for j in grid.get((kz + dz, ky + dy, kx + dx), ())]
                if near:
                    d = centre[near] - c
                    dist = np.maximum(np.linalg.norm(d, axis=1), 1e-9)
                    u = d / dist[:, None]
                    # radius of each ellipsoid along the line joining the two centres
                    r_new = 1.0 / np.sqrt(np.einsum("ni,ij,nj->n", u, m, u))
                    r_old = 1.0 / np.sqrt(np.einsum("ni,nij,nj->n", u, form[near], u))
                    if np.any(dist < NUCLEI_CONTACT * (r_new + r_old)):
                        continue
                if n == cap:
                    cap *= 2
                    centre, form, semi_ax, rot_m, brightness = (
                        np.resize(a, (cap, *a.shape[1:]))
                        for a in (centre, form, semi_ax, rot_m, brightness))
                centre[n], form[n], semi_ax[n], rot_m[n] = c, m, semi[i], rot[i]
                brightness[n] = level[i]
                n += 1
                new = _stamp_nucleus(depth, owner, n, c, m, semi[i], rot[i])
                filled += new
                grid.setdefault((kz, ky, kx), []).append(n - 1)
                if bar is not None:
                    bar.advance(1 if n_nuclei is not None else min(new, target - bar.done))
    return _Nuclei(centre=centre[:n].copy(), semi=semi_ax[:n].copy(), rot=rot_m[:n].copy(),
                   level=brightness[:n].copy())


def _stamp_nucleus(depth: np.ndarray, owner: np.ndarray, label: int, c: np.ndarray,
                   m: np.ndarray, semi: np.ndarray, rot: np.ndarray) -> int:
    """Claim the voxels lying deeper in this ellipsoid than in any earlier one.

    Returns how many voxels became inside a nucleus for the first time.
    """
    # half-extents of the ellipsoid's bounding box, plus a voxel for the soft edge
    half = np.sqrt((rot**2) @ semi**2) + 1.5
    shape = np.asarray(depth.shape)
    lo = np.maximum(np.floor(c - half).astype(int), 0)
    hi = np.minimum(np.ceil(c + half).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return 0
    z = np.arange(lo[0], hi[0], dtype=np.float32)[:, None, None] - np.float32(c[0])
    y = np.arange(lo[1], hi[1], dtype=np.float32)[None, :, None] - np.float32(c[1])
    x = np.arange(lo[2], hi[2], dtype=np.float32)[None, None, :] - np.float32(c[2])
    mf = m.astype(np.float32)
    q2 = (mf[0, 0] * z * z + mf[1, 1] * y * y + mf[2, 2] * x * x
          + 2 * mf[0, 1] * z * y + 2 * mf[0, 2] * z * x + 2 * mf[1, 2] * y * x)
    q = np.sqrt(q2)
    dist = np.sqrt(z * z + y * y + x * x)
    # distance to the surface along the ray from the centre: dist / q is the radius there
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(q > 1e-6, dist / q - dist, np.float32(semi.min()))
    region_d = depth[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    region_o = owner[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    claim = d > region_d
    new = int(np.count_nonzero(claim & (d >= 0) & (region_d < 0)))
    region_d[claim] = d[claim]
    region_o[claim] = label
    return new


def _smooth_field(rng: np.random.Generator, shape: Shape3, sigma: float,
                  coarse: int = 1) -> np.ndarray:
    """Gaussian noise smoothed by ``sigma`` voxels, unit variance (float32, ``shape``).

    With ``coarse`` > 1 the noise is drawn and smoothed on a grid ``coarse`` times coarser
    and interpolated up: the same look for a fraction of the work.
    """
    ndimage = require("scipy.ndimage", "resin simulate")
    small = tuple(-(-n // coarse) + 2 for n in shape) if coarse > 1 else shape
    noise = rng.standard_normal(small, dtype=np.float32)
    field = ndimage.gaussian_filter(noise, sigma / coarse, mode="wrap")
    if coarse > 1:
        scale = [(s - 2) / n for s, n in zip(small, shape, strict=True)]
        field = ndimage.affine_transform(field, scale, output_shape=shape, order=1,
                                         mode="nearest")
    field -= field.mean()
    std = float(field.std())
    if std > 0:
        field /= np.float32(std)
    return np.asarray(field, dtype=np.float32)


def render_nuclei(shape: Shape3, rng: np.random.Generator,
                  n_nuclei: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dense textured nuclei in a weak cytoplasm: (object in [0, 1] float32, labels int32).

    Nuclei are ellipsoids (longest semi-axis ``NUCLEI_SEMI_AXIS`` voxels, the other two
    55-100 % of it, random orientation) placed until ``NUCLEI_FILL`` of the volume is
    inside one (or ``n_nuclei`` are placed). Inside, brightness = the nucleus' level
    (0.4-1) x chromatin texture (smoothed noise, sigma 1.2 voxels, +-35 %) x a rim 25 %
    brighter within about a voxel of the surface, plus 1-3 bright spots of the nucleus'
    level; outside, a smooth cytoplasm ``NUCLEI_CYTOPLASM`` (+-50 %). Edges are
    anti-aliased over one voxel. ``labels`` numbers the nuclei from 1 (0 outside).
    """
    ndimage = require("scipy.ndimage", "resin simulate")
    depth = np.full(shape, -1.0, dtype=np.float32)
    owner = np.zeros(shape, dtype=np.int32)
    nuc = _place_nuclei(shape, rng, n_nuclei, depth, owner)
    n = len(nuc.level)

    # bright spots (nucleoli, chromocentres): 1-3 per nucleus, within half its radius
    n_spots = rng.integers(1, 4, size=n)
    which = np.repeat(np.arange(n), n_spots)
    local = rng.uniform(-0.5, 0.5, size=(len(which), 3)) * nuc.semi[which]
    pos = nuc.centre[which] + np.einsum("nij,nj->ni", nuc.rot[which], local)
    amp = nuc.level[which] * rng.uniform(0.5, 1.0, size=len(which))
    idx = np.rint(pos).astype(int)
    keep = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
    spots = np.zeros(shape, dtype=np.float32)
    np.add.at(spots, tuple(idx[keep].T), amp[keep].astype(np.float32))
    spot_sigma = 1.0
    spots = ndimage.gaussian_filter(spots, spot_sigma, mode="constant")
    spots *= np.float32((2 * math.pi) ** 1.5 * spot_sigma**3)  # a lone spot peaks at amp

    # every step in place: a handful of float32 volumes at most, as for the tubes
    obj = _smooth_field(rng, shape, 1.2)  # chromatin texture
    obj *= np.float32(0.35)
    obj += np.float32(1.0)
    np.clip(obj, 0.3, None, out=obj)
    rim = np.square(depth)
    rim *= np.float32(-0.5)
    np.exp(rim, out=rim)
    rim *= np.float32(0.25)
    rim += np.float32(1.0)
    obj *= rim
    del rim
    levels = np.concatenate([[0.0], nuc.level]).astype(np.float32)
    obj *= levels[owner]
    obj += spots
    del spots
    inside = depth
    inside += np.float32(0.5)
    np.clip(inside, 0.0, 1.0, out=inside)  # depth is reused as the anti-aliased mask
    owner[inside < 0.5] = 0  # the labels: voxels at or within a surface
    obj *= inside
    cytoplasm = _smooth_field(rng, shape, 12.0, coarse=6)
    cytoplasm *= np.float32(0.5)
    cytoplasm += np.float32(1.0)
    np.clip(cytoplasm, 0.0, None, out=cytoplasm)
    cytoplasm *= np.float32(NUCLEI_CYTOPLASM)
    outside = inside
    outside *= np.float32(-1.0)
    outside += np.float32(1.0)
    cytoplasm *= outside
    obj += cytoplasm
    del cytoplasm, inside, outside, depth
    peak = float(obj.max())
    if peak > 0:
        obj /= np.float32(peak)
    return obj, owner


def _to_uint16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 65535).astype(np.uint16)


def memory_needed(shape: Shape3, kind: str = "tubes", angle_deg: float = 0.0) -> int:
    """About the most bytes :func:`simulate` holds at once for a truth of ``shape``."""
    per_voxel = BYTES_PER_VOXEL["tilted" if float(angle_deg) % 180.0 else kind]
    return per_voxel * math.prod(int(s) for s in shape)


def check_simulation_shape(shape: Sequence[int], kind: str = "tubes",
                           angle_deg: float = 0.0) -> Shape3:
    """The truth shape as three ints, refused before any work when a side is below 8
    voxels or the volume cannot fit in the available memory (:func:`memory_needed`)."""
    from resin import _memory
    from resin.io import format_bytes

    if len(shape) != 3 or any(int(s) < 8 for s in shape):
        raise UsageError(f"shape must be three sizes of at least 8 voxels (Z Y X), got "
                         f"{tuple(shape)}")
    shape3: Shape3 = (int(shape[0]), int(shape[1]), int(shape[2]))
    needed, available = memory_needed(shape3, kind, angle_deg), _memory.available_memory()
    if available is not None and needed > available:
        raise UsageError(f"--shape {' '.join(map(str, shape3))} needs about "
                         f"{format_bytes(needed)} of memory to simulate, "
                         f"{format_bytes(available)} is available; choose a smaller --shape")
    return shape3


def simulate(shape: Shape3 = DEFAULT_SHAPE, sigma: tuple[float, float] | None = None,
             angle_deg: float = 0.0, photons: float = DEFAULT_PHOTONS,
             read_noise: float | None = None, offset: float | None = None,
             seed: int = 0, z_step: int | None = None, background: float | None = None,
             n_tubes: int | None = None, n_blobs: int = 0, *, kind: str = "tubes",
             noise: bool = True, n_nuclei: int | None = None,
             depth_falloff: float | None = None) -> Simulation:
    """Simulate one acquisition of random tubes (``kind="tubes"``) or nuclei (``"nuclei"``).

    ``shape`` is the truth's (isotropic) ZYX shape; ``sigma`` = (lateral, axial) PSF sigma
    in voxels; ``photons`` is the expected photon count at the brightest object voxel
    before blurring; ``background`` photons per voxel are added everywhere;
    ``read_noise`` is the Gaussian camera noise sigma (counts); ``offset`` the camera
    baseline (counts). ``raw`` keeps every ``z_step``-th plane of the blurred object.
    ``depth_falloff`` dims the object from none at the first plane to that fraction at
    the last (exponentially), in truth and raw alike. ``n_tubes``/``n_blobs`` are for
    tubes, ``n_nuclei`` for nuclei (default: as many as fill ``NUCLEI_FILL`` of the volume).

    Arguments left at ``None`` take the kind's :data:`KIND_DEFAULTS` (tubes: sigma 1/5,
    z_step 1, no fall-off; nuclei: sigma 1.2/3, z_step 2, fall-off 0.2) and otherwise
    read noise ``DEFAULT_READ_NOISE``, offset ``DEFAULT_OFFSET``, background
    ``DEFAULT_BACKGROUND``.

    ``noise=False`` is the RESIN paper's setting: no shot or read noise, and background
    and offset 0 unless given; then ``raw = rint(blur(obj) * photons + background +
    offset)`` and ``truth = rint(obj * photons + background + offset)`` exactly, with
    ``obj`` the object in [0, 1]. Read noise must then be 0 or left out.
    """
    if kind not in KINDS:
        raise UsageError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    defaults = KIND_DEFAULTS[kind]
    if read_noise is not None and read_noise > 0 and not noise:
        raise UsageError("read noise needs noise; leave it out (or 0) for a noise-free volume")
    if sigma is None:
        sigma = defaults.sigma
    if z_step is None:
        z_step = defaults.z_step
    if depth_falloff is None:
        depth_falloff = defaults.depth_falloff
    if read_noise is None:
        read_noise = DEFAULT_READ_NOISE if noise else 0.0
    if offset is None:
        offset = DEFAULT_OFFSET if noise else 0.0
    if background is None:
        background = DEFAULT_BACKGROUND if noise else 0.0
    if not -90.0 <= float(angle_deg) <= 90.0:  # as training's angle_deg
        raise UsageError(f"--angle must be between -90 and 90 degrees, got {angle_deg:g}")
    if len(sigma) != 2 or any(not (float(s) > 0) for s in sigma):
        raise UsageError(f"sigma must be two positive numbers (lateral axial), got {tuple(sigma)}")
    if not (photons > 0) or not math.isfinite(photons):
        raise UsageError(f"photons must be a positive number, got {photons}")
    if read_noise < 0 or background < 0 or offset < 0:
        raise UsageError("read noise, background and offset must not be negative")
    if int(z_step) < 1 or int(z_step) != z_step:
        raise UsageError(f"z_step must be a positive integer, got {z_step}")
    if not 0.0 <= depth_falloff < 1.0:
        raise UsageError(f"depth fall-off must be at least 0 and below 1, got {depth_falloff}")
    if (n_tubes is not None and n_tubes < 0) or n_blobs < 0 or \
            (n_nuclei is not None and n_nuclei < 0):
        raise UsageError("the numbers of tubes, blobs and nuclei must not be negative")
    if kind == "nuclei" and (n_tubes is not None or n_blobs):
        raise UsageError("tubes and blobs are for kind tubes; use n_nuclei with kind nuclei")
    if kind == "tubes" and n_nuclei is not None:
        raise UsageError("the number of nuclei is for kind nuclei; use n_tubes with kind tubes")
    shape3 = check_simulation_shape(shape, kind, angle_deg)
    lateral, axial = float(sigma[0]), float(sigma[1])
    sigma_zyx = (axial, lateral, lateral)

    rng = np.random.default_rng(seed)
    labels = None
    if kind == "nuclei":
        obj, labels = render_nuclei(shape3, rng, n_nuclei=n_nuclei)
    else:
        obj = render_object(shape3, rng, n_tubes=n_tubes, n_blobs=n_blobs)
    if depth_falloff > 0:
        z = np.arange(shape3[0], dtype=np.float64) / max(shape3[0] - 1, 1)
        obj *= ((1.0 - depth_falloff) ** z).astype(np.float32)[:, None, None]
    blurred = blur(obj, sigma_zyx, angle_deg)[:: int(z_step)]
    nz = int(blurred.shape[0])
    raw = np.empty(blurred.shape, dtype=np.uint16)
    # noise in fixed slabs of planes: int64/float64 temporaries stay small, and the
    # draws (hence the bytes) do not depend on the volume's memory footprint
    for z0 in range(0, nz, NOISE_SLAB):
        expected = blurred[z0:z0 + NOISE_SLAB] * np.float32(photons) + np.float32(background)
        if not noise:
            expected += np.float32(offset)
            raw[z0:z0 + NOISE_SLAB] = _to_uint16(expected)
            continue
        counts = rng.poisson(expected).astype(np.float32)
        if read_noise > 0:
            rn = rng.standard_normal(size=counts.shape, dtype=np.float32)
            rn *= np.float32(read_noise)
            counts += rn
        counts += np.float32(offset)
        raw[z0:z0 + NOISE_SLAB] = _to_uint16(counts)
    del blurred
    obj *= np.float32(photons)
    obj += np.float32(background + offset)
    return Simulation(raw=raw, truth=_to_uint16(obj),
                      psf_sigma_zyx=sigma_zyx, angle_deg=float(angle_deg),
                      z_step=int(z_step), seed=int(seed), kind=kind, noise=bool(noise),
                      photons=float(photons), read_noise=float(read_noise),
                      offset=float(offset), background=float(background),
                      depth_falloff=float(depth_falloff), labels=labels)


def simulate_to_files(out: str | os.PathLike, truth: str | os.PathLike | None = None,
                      overwrite: bool = False, voxel_size: float = 1.0,
                      **kwargs: object) -> Simulation:
    """Run :func:`simulate` and write ``raw`` to ``out`` (and ``truth`` if given)."""
    from resin.errors import OutputExistsError
    from resin.io import output_format, write_volume

    paths = [p for p in (out, truth) if p is not None]
    for p in paths:
        output_format(p)  # reject unknown suffixes before spending time
        if not overwrite and os.path.exists(p):
            raise OutputExistsError(f"{p} exists; pass --overwrite to replace it")
    if truth is not None and os.path.abspath(str(truth)) == os.path.abspath(str(out)):
        raise UsageError("the raw and truth outputs must be different paths")
    try:
        sim = simulate(**kwargs)  # type: ignore[arg-type]
    except MemoryError:
        raise ResinError(f"out of memory simulating a volume of shape "
                         f"{kwargs.get('shape', DEFAULT_SHAPE)}; choose a smaller --shape"
                         ) from None
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
    record: dict[str, object] = {
        "kind": sim.kind, "noise": sim.noise, "psf_sigma_zyx": list(sim.psf_sigma_zyx),
        "angle_deg": sim.angle_deg, "z_step": sim.z_step, "seed": sim.seed,
        "photons": sim.photons, "read_noise": sim.read_noise, "offset": sim.offset,
        "background": sim.background, "depth_falloff": sim.depth_falloff}
    if sim.labels is not None:
        record["n_nuclei"] = int(sim.labels.max())
        record["fill_fraction"] = float(np.count_nonzero(sim.labels)) / sim.labels.size
    return record


__all__ = ["KIND_DEFAULTS", "KINDS", "KindDefaults", "Simulation", "blur",
           "check_simulation_shape", "gaussian_psf", "memory_needed", "render_nuclei", "render_object", "simulate", "simulate_to_files"]
