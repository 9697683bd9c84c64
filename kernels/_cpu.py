"""Numba CPU kernels for blending and MIPs (``parallel=True``, cached, compiled eagerly
for uint8/uint16/float32).

These are the raw loops; argument checking, clipping and dispatch live in
``resin.kernels``. Every kernel takes C-contiguous arrays. The resampling kernels live in
``_cpu_resample``, compiled only when first used: a cold compile of the whole set takes
over a minute on a 2-core machine, and axial models never resample.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload
from resin.kernels._common import numba_signatures as _sigs

# -- blending -------------------------------------------------------------------------

@njit("void(float32[:,:,::1], float32[:,:,::1], float32[:,:,::1], float32[:,:,::1],"
      " int64, int64, int64, int64, int64, int64, int64, int64, int64)",
      parallel=True, cache=True, nogil=True)
def accumulate(acc, wsum, tile, window, az, ay, ax, tz, ty, tx, nz, ny, nx):  # pragma: no cover
    # one flat loop over (z, y) rows keeps both cores busy when the tile is thin in z
    for r in prange(nz * ny):
        z = r // ny
        y = r - z * ny
        # slices starting at the offsets keep every index a bare loop counter (vectorises)
        a_row = acc[az + z, ay + y, ax:]
        w_row = wsum[az + z, ay + y, ax:]
        t_row = tile[tz + z, ty + y, tx:]
        k_row = window[tz + z, ty + y, tx:]
        for x in range(nx):
            w = k_row[x]
            a_row[x] += t_row[x] * w
            w_row[x] += w


@njit(["void(float32[:,:,::1], float32[:,:,::1], float32, float32, float32,"
       " uint8[:,:,::1])",
       "void(float32[:,:,::1], float32[:,:,::1], float32, float32, float32,"
       " uint16[:,:,::1])"],
      parallel=True, cache=True, nogil=True)
def finalize_int(acc, wsum, scale, low, top, out):  # pragma: no cover
    nz, ny, nx = acc.shape
    for r in prange(nz * ny):
        z = r // ny
        y = r - z * ny
        a_row = acc[z, y]
        w_row = wsum[z, y]
        o_row = out[z, y]
        for x in range(nx):
            v = a_row[x] / w_row[x] * scale + low
            if not v >= 0:  # NaN and negatives
                v = np.float32(0)
            elif v > top:
                v = top
            o_row[x] = np.rint(v)


@njit("void(float32[:,:,::1], float32[:,:,::1], float32, float32, float32[:,:,::1])",
      parallel=True, cache=True, nogil=True)
def finalize_float(acc, wsum, scale, low, out):  # pragma: no cover
    nz, ny, nx = acc.shape
    for r in prange(nz * ny):
        z = r // ny
        y = r - z * ny
        a_row = acc[z, y]
        w_row = wsum[z, y]
        o_row = out[z, y]
        for x in range(nx):
            v = a_row[x] / w_row[x] * scale + low
            o_row[x] = v if v == v else np.float32(0)


# -- maximum intensity projections ------------------------------------------------------

def _vmax(a, b):  # pragma: no cover
    """max(a, b) for the MIP loops where a NaN never wins: np.fmax for floats (returns the
    other operand), ``max`` for integers (which have no NaN)."""
    return max(a, b)


def _not_nan(m):  # pragma: no cover
    """A running float value that is NaN (only if the caller seeded it so) becomes -inf."""
    return m


@overload(_not_nan)
def _not_nan_impl(m):  # pragma: no cover
    if isinstance(m, types.Float):
        return lambda m: m if m == m else -np.inf
    return lambda m: m


@overload(_vmax, inline="always")
def _vmax_impl(a, b):  # pragma: no cover
    # Floats: np.fmax (LLVM maxnum) vectorises to vmaxps; ``max`` and a select both become a
    # masked store, which is microcoded on AMD (the float32 MIP ran 2.6x slower than this).
    # Integers: ``max`` vectorises as is and is faster than fmax.
    if isinstance(a, types.Float):
        return lambda a, b: np.fmax(a, b)
    return lambda a, b: max(a, b)


LANES = 64  # float row maxima: independent running maxima, one vectorised np.fmax per step


@njit(cache=True, inline="always")
def _row_max(row, m, lanes, scratch):  # pragma: no cover
    """max(m, max(row)), a NaN never winning. Integers vectorise as is. A NaN-ignoring float
    max reduction does not (without fast-math), so floats keep ``LANES`` running maxima in
    ``scratch`` and update them with element-wise np.fmax, which does (2x the former eight
    scalar lanes); ``max`` keeps ``m`` first, so an all-NaN lane never replaces it."""
    n = row.shape[0]
    if not lanes:
        for x in range(n):
            m = max(m, row[x])
        return m
    w = scratch.shape[0]
    nw = n - n % w
    if nw > 0:
        for k in range(w):
            scratch[k] = row[k]
        for s in range(1, nw // w):
            seg = row[s * w:]
            for k in range(w):
                scratch[k] = _vmax(scratch[k], seg[k])
        for k in range(w):
            m = max(m, scratch[k])
    tail = row[nw:]
    for x in range(n - nw):
        m = max(m, tail[x])
    return m


ZB = 4  # z planes read together: the along-z projection row is loaded and stored once per ZB


@njit(_sigs("void(V[:,:,::1], V[:,::1], V[:,::1], V[:,::1], int64, int64, int64, int64,"
            " boolean)"),
      parallel=True, cache=True, nogil=True)
def mip_update(chunk, mz, my, mx, z0, y0, x0, n_blocks, lanes):  # pragma: no cover
    """One streaming read of the chunk updates all three projections. Blocks of y rows run
    in parallel; each keeps its own partial along-y projection, merged at the end.

    Each block reads the rows of ``ZB`` consecutive planes at once and folds their maximum
    into the along-z row with one load and store: that row (the whole along-z projection
    is megabytes) was the traffic that kept the kernel at 2.7-4x NumPy; reading four planes
    at once made it 5x for integers.

    Rows are indexed through slices that start at the offset so that every index is a bare
    loop counter: that lets LLVM drop the negative-index checks and vectorise. A NaN voxel
    never wins: the element-wise updates use ``_vmax`` (np.fmax for floats) and the row
    maxima keep the running value first in ``max``. A NaN the caller put in a running
    projection is replaced by the chunk's maximum in all three.
    """
    cz, cy, cx = chunk.shape
    nb = max(1, min(n_blocks, cy))
    part = np.empty((nb, cz, cx), dtype=chunk.dtype)
    for b in prange(nb):
        ya = b * cy // nb
        yb = (b + 1) * cy // nb
        scratch = np.empty(LANES, dtype=chunk.dtype)
        for z in range(cz):
            p_row = part[b, z]
            start = my[z0 + z, x0:]
            for x in range(cx):
                p_row[x] = start[x]
        z = 0
        while z + ZB <= cz:
            p0 = part[b, z]
            p1 = part[b, z + 1]
            p2 = part[b, z + 2]
            p3 = part[b, z + 3]
            for y in range(ya, yb):
                r0 = chunk[z, y]
                r1 = chunk[z + 1, y]
                r2 = chunk[z + 2, y]
                r3 = chunk[z + 3, y]
                z_row = mz[y0 + y, x0:]
                for x in range(cx):
                    v0 = r0[x]
                    v1 = r1[x]
                    v2 = r2[x]
                    v3 = r3[x]
                    z_row[x] = _vmax(z_row[x], _vmax(_vmax(v0, v1), _vmax(v2, v3)))
                    p0[x] = _vmax(p0[x], v0)
                    p1[x] = _vmax(p1[x], v1)
                    p2[x] = _vmax(p2[x], v2)
                    p3[x] = _vmax(p3[x], v3)
                for k in range(ZB):
                    mx[z0 + z + k, y0 + y] = _row_max(
                        chunk[z + k, y], _not_nan(mx[z0 + z + k, y0 + y]), lanes, scratch)
            z += ZB
        for zr in range(z, cz):
            p_row = part[b, zr]
            for y in range(ya, yb):
                row = chunk[zr, y]
                z_row = mz[y0 + y, x0:]
                for x in range(cx):
                    v = row[x]
                    z_row[x] = _vmax(z_row[x], v)
                    p_row[x] = _vmax(p_row[x], v)
                mx[z0 + zr, y0 + y] = _row_max(row, _not_nan(mx[z0 + zr, y0 + y]), lanes,
                                               scratch)
    for z in prange(cz):
        y_row = my[z0 + z, x0:]
        for b in range(nb):
            p_row = part[b, z]
            for x in range(cx):
                y_row[x] = _vmax(y_row[x], p_row[x])


__all__ = ["accumulate", "finalize_float", "finalize_int", "mip_update"]
