"""Argument checking and geometry shared by the CPU and CUDA paths (pure NumPy, no Numba)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from resin.errors import UsageError, VolumeError

#: volume dtypes the kernels are compiled for
VOLUME_DTYPES: tuple[np.dtype, ...] = (np.dtype(np.uint8), np.dtype(np.uint16),
                                       np.dtype(np.float32))
WINDOW_MODES = ("gaussian", "cosine", "constant")


def numba_signatures(template: str, dtypes: Sequence[Any] = VOLUME_DTYPES) -> list[str]:
    """One Numba signature per dtype (the volume dtypes unless given): ``V`` in
    ``template`` becomes each dtype."""
    return [template.replace("V", np.dtype(dt).name) for dt in dtypes]


def check_volume(name: str, shape: tuple[int, ...], dtype: Any) -> np.dtype:
    """A ZYX volume of a supported dtype, or a VolumeError naming what is wrong."""
    dt = np.dtype(dtype)
    if len(shape) != 3:
        raise VolumeError(f"{name} must be a 3-D ZYX array, got {len(shape)} dimensions "
                          f"(shape {tuple(shape)}).")
    if dt not in VOLUME_DTYPES:
        raise VolumeError(f"{name} has dtype {dt}; the kernels support uint8, uint16 and "
                          f"float32, so convert it first.")
    if min(shape) < 1:
        raise VolumeError(f"{name} is empty (shape {tuple(shape)}).")
    return dt


def check_float32(name: str, shape: tuple[int, ...], dtype: Any) -> None:
    if len(shape) != 3 or np.dtype(dtype) != np.float32:
        raise UsageError(f"{name} must be a 3-D float32 array, got {np.dtype(dtype)} with "
                         f"shape {tuple(shape)}.")


def int_triple(name: str, value: Sequence[int] | np.ndarray) -> tuple[int, int, int]:
    try:
        vals = tuple(int(v) for v in value)
        if any(float(v) != int(v) for v in value):
            raise ValueError
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be three integers (z, y, x), got {value!r}.") from None
    if len(vals) != 3:
        raise UsageError(f"{name} must be three integers (z, y, x), got {value!r}.")
    return vals[0], vals[1], vals[2]


def tile_window(shape: Sequence[int], mode: str = "gaussian",
                sigma_scale: float = 0.125) -> np.ndarray:
    """Separable blend weights for one tile: float32 ZYX, strictly positive everywhere."""
    dims = int_triple("tile shape", shape)
    if min(dims) < 1:
        raise UsageError(f"tile shape must be positive, got {dims}.")
    if mode not in WINDOW_MODES:
        raise UsageError(f"blend mode must be one of {', '.join(WINDOW_MODES)}, got {mode!r}.")
    if not (math.isfinite(sigma_scale) and sigma_scale > 0):
        raise UsageError(f"sigma_scale must be a positive number, got {sigma_scale!r}.")
    profiles = [window_profile(n, mode, float(sigma_scale)) for n in dims]
    return (profiles[0][:, None, None] * profiles[1][None, :, None]
            * profiles[2][None, None, :]).astype(np.float32)


#: floor of each 1-D profile, so the product of three stays a normal float32 (> 1e-38)
PROFILE_FLOOR = 1e-6


def window_profile(n: int, mode: str, sigma_scale: float) -> np.ndarray:
    """One axis of the window (float64, peak 1, floored at PROFILE_FLOOR)."""
    i = np.arange(n, dtype=np.float64)
    if mode == "constant":
        w = np.ones(n)
    elif mode == "cosine":
        # Hann window sampled at voxel centres: zero only half a voxel outside the tile
        w = np.sin(np.pi * (i + 0.5) / n) ** 2
    else:
        sigma = sigma_scale * n
        w = np.exp(-0.5 * ((i - (n - 1) / 2.0) / sigma) ** 2)
    return np.maximum(w, PROFILE_FLOOR)


def clip_region(acc_shape: tuple[int, ...], tile_shape: tuple[int, ...],
                offset: tuple[int, int, int]) -> tuple[tuple[int, ...], tuple[int, ...],
                                                       tuple[int, ...]] | None:
    """(start in acc, start in tile, extent) of a tile at ``offset`` clipped to acc; None if
    the tile lies entirely outside."""
    a0, t0, n = [], [], []
    for dim, tdim, off in zip(acc_shape, tile_shape, offset, strict=True):
        lo, hi = max(off, 0), min(off + tdim, dim)
        if hi <= lo:
            return None
        a0.append(lo)
        t0.append(lo - off)
        n.append(hi - lo)
    return tuple(a0), tuple(t0), tuple(n)


def int_range(dtype: np.dtype) -> tuple[float, float] | None:
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return None


def dtype_floor(dtype: np.dtype) -> Any:
    """The smallest value of ``dtype``: the neutral start of a running maximum."""
    if dtype.kind == "f":
        return -np.inf
    return np.iinfo(dtype).min


def affine_parts(matrix: Any, offset: Any, ndim: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """scipy.ndimage.affine_transform's matrix/offset forms -> (3x3 float64, 3 float64)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (ndim,):
        mat = np.diag(m)
        off_from_matrix = None
    elif m.shape == (ndim, ndim):
        mat, off_from_matrix = m, None
    elif m.shape in ((ndim, ndim + 1), (ndim + 1, ndim + 1)):
        if m.shape[0] == ndim + 1 and not np.allclose(m[ndim], [0] * ndim + [1]):
            raise UsageError("a homogeneous 4x4 matrix must have 0 0 0 1 as its last row.")
        mat, off_from_matrix = m[:ndim, :ndim], m[:ndim, ndim]
    else:
        raise UsageError(f"matrix must have shape (3,), (3, 3), (3, 4) or (4, 4), got "
                         f"{m.shape}.")
    if off_from_matrix is not None:
        off = off_from_matrix
    else:
        o = np.asarray(offset, dtype=np.float64)
        if o.ndim == 0:
            off = np.full(ndim, float(o))
        elif o.shape == (ndim,):
            off = o
        else:
            raise UsageError(f"offset must be a number or three numbers, got shape {o.shape}.")
    if not (np.all(np.isfinite(mat)) and np.all(np.isfinite(off))):
        raise UsageError("matrix and offset must be finite.")
    return np.ascontiguousarray(mat), np.ascontiguousarray(off, dtype=np.float64)


def rotated_extent(n_z: int, n_x: int, angle_deg: float) -> tuple[int, int]:
    """(Z', X') of the z-x bounding box after rotating by angle_deg (scipy.ndimage.rotate's
    reshape rule)."""
    a = math.radians(angle_deg)
    c, s = abs(math.cos(a)), abs(math.sin(a))
    # the tiny slack keeps exact multiples (e.g. 90 degrees) from losing a voxel to rounding
    return (max(1, int(c * n_z + s * n_x + 0.5 + 1e-9)),
            max(1, int(s * n_z + c * n_x + 0.5 + 1e-9)))


def axial_rotation(in_shape: tuple[int, int, int], out_shape: tuple[int, int, int],
                   angle_deg: float, inverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pull-back matrix/offset (output voxel -> input voxel) that turns the axis tilted
    ``angle_deg`` from z towards x into the output z axis (or back, with ``inverse``)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    # columns: where the output z, y, x unit vectors point in the input (z, y, x)
    rot = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
    mat = rot.T if inverse else rot
    ci = (np.asarray(in_shape, dtype=np.float64) - 1) / 2
    co = (np.asarray(out_shape, dtype=np.float64) - 1) / 2
    return np.ascontiguousarray(mat), np.ascontiguousarray(ci - mat @ co)


def slanted_ray_max(vol, y, u, cos_a, sin_a, t_n):  # pragma: no cover
    """Max of the bilinear (z, x) samples of plane ``y`` along the ray at offset ``u`` from
    the centre, tilted from z towards x (``t_n`` samples, unit spacing, centred); samples
    outside the volume are skipped, a ray that never enters it gives 0.

    Plain Python on purpose: ``_cpu_resample`` compiles it with ``njit`` and ``_cuda`` as a
    CUDA device function, so the CPU and GPU slanted MIPs run one ray loop.
    """
    nz = vol.shape[0]
    nx = vol.shape[2]
    cz = (nz - 1) / 2.0
    cx = (nx - 1) / 2.0
    ct = (t_n - 1) / 2.0
    best = -math.inf
    for i in range(t_n):
        t = i - ct
        z = cz + t * cos_a - u * sin_a
        x = cx + t * sin_a + u * cos_a
        if z < 0.0 or z > nz - 1 or x < 0.0 or x > nx - 1:
            continue
        iz = min(int(z), nz - 1)
        ix = min(int(x), nx - 1)
        fz = z - iz
        fx = x - ix
        jz = min(iz + 1, nz - 1)
        jx = min(ix + 1, nx - 1)
        v = ((1 - fz) * ((1 - fx) * vol[iz, y, ix] + fx * vol[iz, y, jx])
             + fz * ((1 - fx) * vol[jz, y, ix] + fx * vol[jz, y, jx]))
        if v > best:
            best = v
    return best if best > -math.inf else 0.0


def slanted_grid(shape: tuple[int, int, int], angle_deg: float) -> tuple[int, int, float, float]:
    """(T samples along the ray, U output columns, cos, sin) for slanted_mip."""
    t_n, u_n = rotated_extent(shape[0], shape[2], angle_deg)
    a = math.radians(angle_deg)
    return t_n, u_n, math.cos(a), math.sin(a)
