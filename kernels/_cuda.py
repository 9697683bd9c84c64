"""Numba CUDA kernels: the same operations as ``_cpu`` and ``_cpu_resample`` on device
arrays, no host copies.

Inputs are converted with ``as_device`` (zero-copy for anything exposing
``__cuda_array_interface__``); results are Numba device arrays. Under
``NUMBA_ENABLE_CUDASIM=1`` the same kernels run in Numba's simulator (tests only).

The MIP runs as three launches of one reduction kernel, one per projection: CUDA has no
atomic max for 8- and 16-bit integers, and each projection read is coalesced on the GPU's
bandwidth.

Every kernel loops grid-stride over its output, so a launch is correct for any size: CUDA
allows at most 65535 blocks along grid y and z, and :func:`_grid` caps the grid there
(the threads then take several voxels each). Nothing is launched for an empty output,
which CUDA would refuse as an invalid configuration.
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
#: the most blocks a CUDA grid may have along x, y and z
MAX_GRID = (2**31 - 1, 65535, 65535)


def _grid(sizes: tuple[int, ...], block: tuple[int, ...]) -> tuple[int, ...] | None:
    """Blocks per grid axis (x first) covering ``sizes``, capped at :data:`MAX_GRID`.

    None when there is nothing to do (an axis of size 0).
    """
    if min(sizes) <= 0:
        return None
    caps = MAX_GRID[:len(sizes)]
    return tuple(min(-(-int(n) // b), cap) for n, b, cap in zip(sizes, block, caps, strict=True))


def _launch(kernel: Any, sizes: tuple[int, ...], block: tuple[int, ...], *args: Any,
            stream: Any = 0) -> None:
    """Launch ``kernel`` over ``sizes`` (x first) on ``stream`` (0: the default stream);
    nothing for an empty output."""
    grid = _grid(sizes, block)
    if grid is not None:
        kernel[grid, block, stream](*args)


def as_device(a: Any) -> Any:
    """A Numba device array viewing ``a`` (no copy)."""
    if _is_numba_device_array(a):
        return a
    return cuda.as_cuda_array(a)


def _is_numba_device_array(a: Any) -> bool:
    if hasattr(cuda, "devicearray") and hasattr(cuda.devicearray, "DeviceNDArray"):
        if isinstance(a, cuda.devicearray.DeviceNDArray):
            return True
    return any(c.__name__ == "FakeCUDAArray" for c in type(a).__mro__)


def to_device(a: np.ndarray) -> Any:
    return cuda.to_device(np.ascontiguousarray(a))


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in a.shape)


# -- blending -------------------------------------------------------------------------

@cuda.jit
def _accumulate_k(acc, wsum, tile, window, az, ay, ax, tz, ty, tx, nz, ny, nx):  # pragma: no cover
    x0, y0, z0 = cuda.grid(3)
    sx, sy, sz = cuda.gridsize(3)
    for z in range(z0, nz, sz):
        for y in range(y0, ny, sy):
            for x in range(x0, nx, sx):
                w = window[tz + z, ty + y, tx + x]
                acc[az + z, ay + y, ax + x] += tile[tz + z, ty + y, tx + x] * w
                wsum[az + z, ay + y, ax + x] += w


def accumulate(acc: Any, wsum: Any, tile: Any, window: Any, off: tuple[int, int, int],
               stream: Any = 0) -> None:
    acc, wsum, tile, window = (as_device(a) for a in (acc, wsum, tile, window))
    for name, a in (("acc", acc), ("wsum", wsum), ("tile", tile), ("window", window)):
        _common.check_float32(name, _shape(a), a.dtype)
    if _shape(wsum) != _shape(acc) or _shape(window) != _shape(tile):
        raise UsageError("wsum must have acc's shape and window the tile's shape.")
    region = _common.clip_region(_shape(acc), _shape(tile), off)
    if region is None:
        return
    (az, ay, ax), (tz, ty, tx), (nz, ny, nx) = region
    _launch(_accumulate_k, (nx, ny, nz), _BLOCK3, acc, wsum, tile, window, az, ay, ax, tz, ty,
            tx, nz, ny, nx, stream=stream)


_BLOCK1 = (256,)


@cuda.jit
def _fill_k(flat, value):  # pragma: no cover
    for i in range(cuda.grid(1), flat.shape[0], cuda.gridsize(1)):
        flat[i] = value


def zeros(shape: tuple[int, int, int], stream: Any = 0) -> Any:
    """A float32 device array of ``shape`` set to 0 on the device (no host buffer)."""
    out = cuda.device_array(shape, dtype=np.float32, stream=stream)
    clear(out, stream)
    return out


def clear(a: Any, stream: Any = 0) -> None:
    """Set a C-contiguous float32 device array to 0, in stream order."""
    flat = a.reshape(math.prod(_shape(a)))
    _launch(_fill_k, (int(flat.shape[0]),), _BLOCK1, flat, np.float32(0), stream=stream)


@cuda.jit
def _keep_k(src, dst, z0, y0, x0, bad, slot):  # pragma: no cover
    # one flat index per voxel of dst (x fastest, so reads and writes coalesce)
    plane = dst.shape[1] * dst.shape[2]
    for i in range(cuda.grid(1), dst.shape[0] * plane, cuda.gridsize(1)):
        z = i // plane
        y = (i - z * plane) // dst.shape[2]
        x = i - z * plane - y * dst.shape[2]
        v = src[z0 + z, y0 + y, x0 + x]
        if math.isnan(v) or math.isinf(v):
            cuda.atomic.add(bad, slot, 1)
        dst[z, y, x] = v


def keep_core(src: Any, dst: Any, start: tuple[int, int, int], bad: Any, slot: int,
              stream: Any = 0) -> None:
    """Copy the box of ``dst``'s shape at ``start`` in the 3-D tile output ``src`` (float16
    or float32) into float32 ``dst``, adding the number of NaN/infinite voxels it held to
    ``bad[slot]`` (an int32 device array): the device side of the runtime's tile check."""
    src, dst = as_device(src), as_device(dst)
    _common.check_float32("dst", _shape(dst), dst.dtype)
    if any(s + n > m or s < 0 for s, n, m in zip(start, _shape(dst), _shape(src),
                                                 strict=True)):
        raise UsageError(f"a core of shape {_shape(dst)} at {start} does not fit in a tile "
                         f"of shape {_shape(src)}.")
    with np.errstate(invalid="ignore"):  # the simulator computes on NumPy scalars
        _launch(_keep_k, (math.prod(_shape(dst)),), _BLOCK1, src, dst, start[0], start[1],
                start[2], bad, slot, stream=stream)


@cuda.jit(device=True)
def _finalize_voxel(acc, wsum, scale, low, top, to_int, out, z, y, x):  # pragma: no cover
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


@cuda.jit
def _finalize_k(acc, wsum, scale, low, top, to_int, out):  # pragma: no cover
    x0, y0, z0 = cuda.grid(3)
    sx, sy, sz = cuda.gridsize(3)
    for z in range(z0, out.shape[0], sz):
        for y in range(y0, out.shape[1], sy):
            for x in range(x0, out.shape[2], sx):
                _finalize_voxel(acc, wsum, scale, low, top, to_int, out, z, y, x)


def finalize(acc: Any, wsum: Any, dtype: np.dtype, low: float, high: float,
             out: Any | None, stream: Any = 0) -> Any:
    acc, wsum = as_device(acc), as_device(wsum)
    _common.check_float32("acc", _shape(acc), acc.dtype)
    if _shape(wsum) != _shape(acc) or np.dtype(wsum.dtype) != np.float32:
        raise UsageError("wsum must be float32 with acc's shape.")
    if out is None:
        out = cuda.device_array(_shape(acc), dtype=dtype, stream=stream)
    else:
        out = as_device(out)
        if _shape(out) != _shape(acc) or np.dtype(out.dtype) != dtype:
            raise UsageError(f"out must be a {dtype} device array of shape {_shape(acc)}.")
    nz, ny, nx = _shape(acc)
    top = np.float32(np.iinfo(dtype).max) if dtype.kind == "u" else np.float32(0)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 in the simulator; NaN -> 0
        _launch(_finalize_k, (nx, ny, nz), _BLOCK3, acc, wsum, np.float32(high - low),
                np.float32(low), top, dtype.kind == "u", out, stream=stream)
    return out


# -- maximum intensity projections ------------------------------------------------------

@cuda.jit
def _mip_k(chunk, proj, axis, off_a, off_b):  # pragma: no cover
    # proj[off_a + a, off_b + b] takes the chunk's maximum along ``axis``; (a, b) are the
    # other two axes in order, b the fastest (coalesced) one
    i, j = cuda.grid(2)
    si, sj = cuda.gridsize(2)
    cz, cy, cx = chunk.shape
    if axis == 0:
        na, nb, nk = cy, cx, cz
    elif axis == 1:
        na, nb, nk = cz, cx, cy
    else:
        na, nb, nk = cz, cy, cx
    for a in range(j, na, sj):
        for b in range(i, nb, si):
            m = proj[off_a + a, off_b + b]
            for k in range(nk):
                if axis == 0:
                    v = chunk[k, a, b]
                elif axis == 1:
                    v = chunk[a, k, b]
                else:
                    v = chunk[a, b, k]
                if v > m:
                    m = v
            proj[off_a + a, off_b + b] = m


def mip_update(mz: Any, my: Any, mx: Any, chunk: Any, off: tuple[int, int, int],
               stream: Any = 0) -> None:
    mz, my, mx, chunk = (as_device(a) for a in (mz, my, mx, chunk))
    cz, cy, cx = _shape(chunk)
    z0, y0, x0 = off
    _launch(_mip_k, (cx, cy), _BLOCK2, chunk, mz, 0, y0, x0, stream=stream)
    _launch(_mip_k, (cx, cz), _BLOCK2, chunk, my, 1, z0, x0, stream=stream)
    _launch(_mip_k, (cy, cz), _BLOCK2, chunk, mx, 2, z0, y0, stream=stream)


_ray_max = cuda.jit(device=True)(_common.slanted_ray_max)


@cuda.jit
def _slanted_k(vol, cos_a, sin_a, t_n, out):  # pragma: no cover
    j0, y0 = cuda.grid(2)
    sj, sy = cuda.gridsize(2)
    ny = vol.shape[1]
    u_n = out.shape[1]
    for y in range(y0, ny, sy):
        for j in range(j0, u_n, sj):
            out[y, j] = _ray_max(vol, y, j - (u_n - 1) / 2.0, cos_a, sin_a, t_n)


def slanted_mip(volume: Any, angle: float) -> Any:
    vol = as_device(volume)
    shape = _shape(vol)
    _common.check_volume("volume", shape, vol.dtype)
    t_n, u_n, cos_a, sin_a = _common.slanted_grid((shape[0], shape[1], shape[2]), angle)
    out = cuda.device_array((shape[1], u_n), dtype=np.float32)
    _launch(_slanted_k, (u_n, shape[1]), _BLOCK2, vol, cos_a, sin_a, t_n, out)
    return out


# -- resampling ---------------------------------------------------------------------------

@cuda.jit(device=True)
def _affine_voxel(vol, m00, m01, m02, m10, m11, m12, m20, m21, m22, o0, o1, o2, order, cval,
                  to_int, lo, hi, out, z, y, x):  # pragma: no cover
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


@cuda.jit
def _affine_k(vol, m00, m01, m02, m10, m11, m12, m20, m21, m22, o0, o1, o2, order, cval,
              to_int, lo, hi, out):  # pragma: no cover
    x0, y0, z0 = cuda.grid(3)
    sx, sy, sz = cuda.gridsize(3)
    oz, oy, ox = out.shape
    for z in range(z0, oz, sz):
        for y in range(y0, oy, sy):
            for x in range(x0, ox, sx):
                _affine_voxel(vol, m00, m01, m02, m10, m11, m12, m20, m21, m22, o0, o1, o2,
                              order, cval, to_int, lo, hi, out, z, y, x)


def affine(vol: Any, mat: np.ndarray, off: np.ndarray, shape: tuple[int, int, int],
           order: int, cval: float) -> Any:
    dt = np.dtype(vol.dtype)
    out = cuda.device_array(shape, dtype=dt)
    rng = _common.int_range(dt)
    lo, hi = rng if rng is not None else (0.0, 0.0)
    m = [float(v) for v in mat.ravel()]
    o = [float(v) for v in off]
    _launch(_affine_k, (shape[2], shape[1], shape[0]), _BLOCK3,
            vol, *m, *o, order, float(cval), rng is not None, lo, hi, out)
    return out
