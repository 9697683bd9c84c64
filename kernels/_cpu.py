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

#: the key of a NaN: below every other key, so a NaN voxel never wins a maximum
NAN_KEY = np.int32(-2147483648)
#: the bits of float32 -inf, what a line of NaNs projects to
NEG_INF_BITS = np.float32(-np.inf).view(np.int32)


def _key(v):  # pragma: no cover
    """The value a maximum compares: the voxel itself, or for float32 bits (int32) a key."""
    return v


@overload(_key)
def _key_impl(v):  # pragma: no cover
    # float32 voxels arrive as their int32 bits. Flipping the magnitude bits of negative
    # ones gives integers in the floats' order (-inf < ... < -0 < +0 < ... < +inf), and a
    # NaN becomes NAN_KEY. Integer maxima vectorise as plain max instructions; a float
    # maximum that must ignore NaN takes three (max, unordered compare, blend) and its row
    # reduction does not vectorise at all without fast-math: 1.9x the time of a read-only
    # pass against 1.3-1.5x (bench/kernels.py).
    if isinstance(v, types.Integer) and v.signed and v.bitwidth == 32:
        def impl(v):
            k = v ^ ((v >> 31) & np.int32(0x7FFFFFFF))
            if (v & np.int32(0x7FFFFFFF)) > np.int32(0x7F800000):
                k = NAN_KEY
            return k
        return impl
    return lambda v: v


ZB = 4  # z planes read together: the along-z projection row is loaded and stored once per ZB


@njit(_sigs("void(V[:,:,::1], V[:,::1], V[:,::1], V[:,::1], int64, int64, int64, int64)",
            (np.uint8, np.uint16, np.int32)),  # float32 runs as int32 keys
      parallel=True, cache=True, nogil=True)
def mip_update(chunk, mz, my, mx, z0, y0, x0, n_blocks):  # pragma: no cover
    """One streaming read of the chunk updates all three projections. Blocks of y rows run
    in parallel; each keeps its own partial along-y projection, merged at the end.

    uint8 and uint16 run as they are. float32 runs as int32 keys (:func:`_key`): the chunk
    as its bits, the projections already turned into keys by :func:`float_keys` (the
    caller turns them back with :func:`keys_to_float`), so a NaN voxel never wins.

    Each block reads the rows of ``ZB`` consecutive planes at once: their maximum folds
    into the along-z row with one load and store (that row, megabytes for the whole
    projection, was the traffic that held the kernel back), and the four rows' maxima
    along x accumulate in registers in the same pass. Rows are indexed through slices
    that start at the offset so that every index is a bare loop counter: that lets LLVM
    drop the negative-index checks and vectorise.
    """
    cz, cy, cx = chunk.shape
    nb = max(1, min(n_blocks, cy))
    part = np.empty((nb, cz, cx), dtype=mz.dtype)
    for b in prange(nb):
        ya = b * cy // nb
        yb = (b + 1) * cy // nb
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
                m0 = mx[z0 + z, y0 + y]
                m1 = mx[z0 + z + 1, y0 + y]
                m2 = mx[z0 + z + 2, y0 + y]
                m3 = mx[z0 + z + 3, y0 + y]
                for x in range(cx):
                    v0 = _key(r0[x])
                    v1 = _key(r1[x])
                    v2 = _key(r2[x])
                    v3 = _key(r3[x])
                    z_row[x] = max(z_row[x], max(max(v0, v1), max(v2, v3)))
                    p0[x] = max(p0[x], v0)
                    p1[x] = max(p1[x], v1)
                    p2[x] = max(p2[x], v2)
                    p3[x] = max(p3[x], v3)
                    m0 = max(m0, v0)
                    m1 = max(m1, v1)
                    m2 = max(m2, v2)
                    m3 = max(m3, v3)
                mx[z0 + z, y0 + y] = m0
                mx[z0 + z + 1, y0 + y] = m1
                mx[z0 + z + 2, y0 + y] = m2
                mx[z0 + z + 3, y0 + y] = m3
            z += ZB
        for zr in range(z, cz):
            p_row = part[b, zr]
            for y in range(ya, yb):
                row = chunk[zr, y]
                z_row = mz[y0 + y, x0:]
                m = mx[z0 + zr, y0 + y]
                for x in range(cx):
                    v = _key(row[x])
                    z_row[x] = max(z_row[x], v)
                    p_row[x] = max(p_row[x], v)
                    m = max(m, v)
                mx[z0 + zr, y0 + y] = m
    for z in prange(cz):
        y_row = my[z0 + z, x0:]
        for b in range(nb):
            p_row = part[b, z]
            for x in range(cx):
                y_row[x] = max(y_row[x], p_row[x])


@njit("void(int32[:,:])", parallel=True, cache=True, nogil=True)
def float_keys(bits):  # pragma: no cover
    """float32 projections (as their int32 bits, in place) -> :func:`_key` keys."""
    for i in prange(bits.shape[0]):
        row = bits[i]
        for j in range(row.shape[0]):
            row[j] = _key(row[j])


@njit("void(int32[:,:])", parallel=True, cache=True, nogil=True)
def keys_to_float(keys):  # pragma: no cover
    """:func:`float_keys` undone, in place; a NaN's key (only where every voxel of a line
    was NaN and the caller had seeded NaN) becomes -inf, as a line of NaNs projects."""
    for i in prange(keys.shape[0]):
        row = keys[i]
        for j in range(row.shape[0]):
            # the flip undoes itself; not _key, whose NaN test misreads the keys of small
            # negative floats (their flipped magnitude bits look like a NaN's)
            k = row[j]
            if k == NAN_KEY:
                row[j] = NEG_INF_BITS
            else:
                row[j] = k ^ ((k >> 31) & np.int32(0x7FFFFFFF))


__all__ = ["accumulate", "finalize_float", "finalize_int", "float_keys", "keys_to_float",
           "mip_update"]
