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


@overload(_not_nan, inline="always")
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


@njit(cache=True, inline="always")
def _row_max(row, m, lanes):  # pragma: no cover
    """max(m, max(row)). Integers vectorise as is; a NaN-safe float max reduction does not
    (without fast-math), so floats use eight independent running maxima (4x faster)."""
    n = row.shape[0]
    if not lanes:
        for x in range(n):
            m = max(m, row[x])
        return m
    n8 = n - n % 8
    if n8 > 0:
        m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = m
        for s in range(n8 // 8):
            seg = row[s * 8:]
            m0 = max(m0, seg[0])
            m1 = max(m1, seg[1])
            m2 = max(m2, seg[2])
            m3 = max(m3, seg[3])
            m4 = max(m4, seg[4])
            m5 = max(m5, seg[5])
            m6 = max(m6, seg[6])
            m7 = max(m7, seg[7])
        m = max(max(max(m, m0), max(m1, m2)), max(max(m3, m4), max(m5, max(m6, m7))))
    tail = row[n8:]
    for x in range(n - n8):
        m = max(m, tail[x])
    return m


@njit(_sigs("void(V[:,:,::1], V[:,::1], V[:,::1], V[:,::1], int64, int64, int64, int64,"
            " boolean)"),
      parallel=True, cache=True, nogil=True)
def mip_update(chunk, mz, my, mx, z0, y0, x0, n_blocks, lanes):  # pragma: no cover
    """One streaming read of the chunk updates all three projections. Blocks of y rows run
    in parallel; each keeps its own partial along-y projection, merged at the end.

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
        for z in range(cz):
            p_row = part[b, z]
            start = my[z0 + z, x0:]
            for x in range(cx):
                p_row[x] = start[x]
            for y in range(ya, yb):
                row = chunk[z, y]
                z_row = mz[y0 + y, x0:]
                for x in range(cx):
                    v = row[x]
                    z_row[x] = _vmax(z_row[x], v)
                    p_row[x] = _vmax(p_row[x], v)
                mx[z0 + z, y0 + y] = _row_max(row, _not_nan(mx[z0 + z, y0 + y]), lanes)
    for z in prange(cz):
        y_row = my[z0 + z, x0:]
        for b in range(nb):
            p_row = part[b, z]
            for x in range(cx):
                y_row[x] = _vmax(y_row[x], p_row[x])


__all__ = ["accumulate", "finalize_float", "finalize_int", "mip_update"]
