"""Numba CUDA kernels: the same operations as ``_cpu`` and ``_cpu_resample`` on device
arrays, no host copies.

Inputs are converted with ``as_device`` (zero-copy for anything exposing
``__cuda_array_interface__``); results are Numba device arrays. Under
``NUMBA_ENABLE_CUDASIM=1`` the same kernels run in Numba's simulator (tests only).

The MIP runs as three reduction kernels, one per projection: CUDA has no atomic max for
8- and 16-bit integers, and each projection read is coalesced on the GPU's bandwidth.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda
from resin.kernels import _common

from resin.errors import UsageError

_BLOCK3 = (32, 4, 2)
_BLOCK2 = (32, 4)


def _grid3(nx: int, ny: int, nz: int) -> tuple[int, int, int]:
    return (-(-nx // _BLOCK3[0]), -(-ny // _BLOCK3[1]), -(-nz // _BLOCK3[2]))


def _grid2(nx: int, ny: int) -> tuple[int, int]:
    return (-(-nx // _BLOCK2[0]), -(-ny // _BLOCK2[1]))


def as_device(a: Any) -> Any:
    """A Numba device array viewing ``a`` (no copy)."""
    if _is_numba_device_array(a):
        return a
    return cuda.as_cuda_array(a)


def _is_numba_device_array(a: Any) -> bool:
    if hasattr(cuda, "devicearray") and hasattr(cuda.devicearray, "DeviceNDArray"):
        if isinstance(a, cuda.devicearray.DeviceNDArray):
            return True
    return type(a).__name__ == "FakeCUDAArray"


def to_device(a: np.ndarray) -> Any:
    return cuda.to_device(np.ascontiguousarray(a))


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in a.shape)


# -- blending -------------------------------------------------------------------------

@cuda.jit
def _accumulate_k(acc, wsum, tile, window, az, ay, ax, tz, ty, tx, nz, ny, nx):  # pragma: no cover
    x, y, z = cuda.grid(3)
    if x < nx and y < ny and z < nz:
        w = window[tz + z, ty + y, tx + x]
        acc[az + z, ay + y, ax + x] += tile[tz + z, ty + y, tx + x] * w
        wsum[az + z, ay + y, ax + x] += w


def accumulate(acc: Any, wsum: Any, tile: Any, window: Any, off: tuple[int, int, int]) -> None:
    acc, wsum, tile, window = (as_device(a) for a in (acc, wsum, tile, window))
    for name, a in (("acc", acc), ("wsum", wsum), ("tile", tile), ("window", window)):
        _common.check_float32(name, _shape(a), a.dtype)
    if _shape(wsum) != _shape(acc) or _shape(window) != _shape(tile):
        raise UsageError("wsum must have acc's shape and window the tile's shape.")
    region = _common.clip_region(_shape(acc), _shape(tile), off)
    if region is None:
        return
    (az, ay, ax), (tz, ty, tx), (nz, ny, nx) = region
    _accumulate_k[_grid3(nx, ny, nz), _BLOCK3](acc, wsum, tile, window, az, ay, ax, tz, ty,
                                               tx, nz, ny, nx)


@cuda.jit
def _finalize_k(acc, wsum, scale, low, top, to_int, out):  # pragma: no cover
    x, y, z = cuda.grid(3)
    if z < out.shape[0] and y < out.shape[1] and x < out.shape[2]:
        v = acc[z, y, x] / wsum[z, y, x] * scale + low
        if to_int:
            if not v >= 0:
                v = 0.0
            elif v > top:
                v = top
            r = math.floor(v + 0.5)
            if r - v == 0.5 and r % 2 != 0:  # round half to even, like np.rint
                r -= 1.0
            out[z, y, x] = r
        else:
            out[z, y, x] = v if v == v else 0.0


def finalize(acc: Any, wsum: Any, dtype: np.dtype, low: float, high: float,
             out: Any | None) -> Any:
    acc, wsum = as_device(acc), as_device(wsum)
    _common.check_float32("acc", _shape(acc), acc.dtype)
    if _shape(wsum) != _shape(acc) or np.dtype(wsum.dtype) != np.float32:
        raise UsageError("wsum must be float32 with acc's shape.")
    if out is None:
        out = cuda.device_array(_shape(acc), dtype=dtype)
    else:
        out = as_device(out)
        if _shape(out) != _shape(acc) or np.dtype(out.dtype) != dtype:
            raise UsageError(f"out must be a {dtype} device array of shape {_shape(acc)}.")
    nz, ny, nx = _shape(acc)
    top = np.float32(np.iinfo(dtype).max) if dtype.kind == "u" else np.float32(0)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 in the simulator; NaN -> 0
        _finalize_k[_grid3(nx, ny, nz), _BLOCK3](acc, wsum, np.float32(high - low),
                                                 np.float32(low), top, dtype.kind == "u", out)
    return out


# -- maximum intensity projections ------------------------------------------------------

@cuda.jit
def _mip_z_k(chunk, mz, y0, x0):  # pragma: no cover
    x, y = cuda.grid(2)
    cz, cy, cx = chunk.shape
    if x < cx and y < cy:
        m = mz[y0 + y, x0 + x]
        for z in range(cz):
            v = chunk[z, y, x]
            if v > m:
                m = v
        mz[y0 + y, x0 + x] = m


@cuda.jit
def _mip_y_k(chunk, my, z0, x0):  # pragma: no cover
    x, z = cuda.grid(2)
    cz, cy, cx = chunk.shape
    if x < cx and z < cz:
        m = my[z0 + z, x0 + x]
        for y in range(cy):
            v = chunk[z, y, x]
            if v > m:
                m = v
        my[z0 + z, x0 + x] = m


@cuda.jit
def _mip_x_k(chunk, mx, z0, y0):  # pragma: no cover
    y, z = cuda.grid(2)
    cz, cy, cx = chunk.shape
    if y < cy and z < cz:
        m = mx[z0 + z, y0 + y]
        for x in range(cx):
            v = chunk[z, y, x]
            if v > m:
                m = v
        mx[z0 + z, y0 + y] = m


def mip_update(mz: Any, my: Any, mx: Any, chunk: Any, off: tuple[int, int, int]) -> None:
    mz, my, mx, chunk = (as_device(a) for a in (mz, my, mx, chunk))
    cz, cy, cx = _shape(chunk)
    z0, y0, x0 = off
    _mip_z_k[_grid2(cx, cy), _BLOCK2](chunk, mz, y0, x0)
    _mip_y_k[_grid2(cx, cz), _BLOCK2](chunk, my, z0, x0)
    _mip_x_k[_grid2(cy, cz), _BLOCK2](chunk, mx, z0, y0)


_ray_max = cuda.jit(device=True)(_common.slanted_ray_max)


@cuda.jit
def _slanted_k(vol, cos_a, sin_a, t_n, out):  # pragma: no cover
    j, y = cuda.grid(2)
    ny = vol.shape[1]
    u_n = out.shape[1]
    if j < u_n and y < ny:
        out[y, j] = _ray_max(vol, y, j - (u_n - 1) / 2.0, cos_a, sin_a, t_n)


def slanted_mip(volume: Any, angle: float) -> Any:
    vol = as_device(volume)
    shape = _shape(vol)
    _common.check_volume("volume", shape, vol.dtype)
    t_n, u_n, cos_a, sin_a = _common.slanted_grid((shape[0], shape[1], shape[2]), angle)
    out = cuda.device_array((shape[1], u_n), dtype=np.float32)
    _slanted_k[_grid2(u_n, shape[1]), _BLOCK2](vol, cos_a, sin_a, t_n, out)
    return out


# -- resampling ---------------------------------------------------------------------------

@cuda.jit
def _affine_k(vol, m00, m01, m02, m10, m11, m12, m20, m21, m22, o0, o1, o2, order, cval,
              to_int, lo, hi, out):  # pragma: no cover
    x, y, z = cuda.grid(3)
    oz, oy, ox = out.shape
    if x >= ox or y >= oy or z >= oz:
        return
    nz, ny, nx = vol.shape
    cz = m00 * z + m01 * y + o0 + m02 * x
    cy = m10 * z + m11 * y + o1 + m12 * x
    cx = m20 * z + m21 * y + o2 + m22 * x
    if (cz >= 0.0 and cz <= nz - 1 and cy >= 0.0 and cy <= ny - 1
            and cx >= 0.0 and cx <= nx - 1):
        if order == 0:
            v = float(vol[min(int(cz + 0.5), nz - 1), min(int(cy + 0.5), ny - 1),
                          min(int(cx + 0.5), nx - 1)])
        else:
            iz = min(int(cz), nz - 1)
            iy = min(int(cy), ny - 1)
            ix = min(int(cx), nx - 1)
            fz = cz - iz
            fy = cy - iy
            fx = cx - ix
            jz = min(iz + 1, nz - 1)
            jy = min(iy + 1, ny - 1)
            jx = min(ix + 1, nx - 1)
            gx = 1.0 - fx
            c00 = gx * vol[iz, iy, ix] + fx * vol[iz, iy, jx]
            c01 = gx * vol[iz, jy, ix] + fx * vol[iz, jy, jx]
            c10 = gx * vol[jz, iy, ix] + fx * vol[jz, iy, jx]
            c11 = gx * vol[jz, jy, ix] + fx * vol[jz, jy, jx]
            v = ((1.0 - fz) * ((1.0 - fy) * c00 + fy * c01)
                 + fz * ((1.0 - fy) * c10 + fy * c11))
    else:
        v = cval
    if to_int:
        v = math.floor(v + 0.5)
        v = lo if v < lo else (hi if v > hi else v)
    out[z, y, x] = v


def affine(vol: Any, mat: np.ndarray, off: np.ndarray, shape: tuple[int, int, int],
           order: int, cval: float) -> Any:
    dt = np.dtype(vol.dtype)
    out = cuda.device_array(shape, dtype=dt)
    rng = _common.int_range(dt)
    lo, hi = rng if rng is not None else (0.0, 0.0)
    m = [float(v) for v in mat.ravel()]
    o = [float(v) for v in off]
    _affine_k[_grid3(shape[2], shape[1], shape[0]), _BLOCK3](
        vol, *m, *o, order, float(cval), rng is not None, lo, hi, out)
    return out
