"""Every kernel against a NumPy/SciPy reference on random inputs of awkward shapes.

The same bodies run on the CPU, in the CUDA simulator (tiny shapes) and on a real GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import resin.kernels as K
import scipy.ndimage as ndi

from resin.errors import UsageError, VolumeError

DTYPES = [np.uint8, np.uint16, np.float32]
# odd sizes and single-voxel axes; small enough for the simulator
SHAPES = [(1, 1, 1), (3, 5, 7), (1, 6, 4), (4, 1, 5), (5, 3, 1), (2, 9, 6)]


def _random(rng, shape, dtype) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


# -- windows ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["gaussian", "cosine", "constant"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 8, 3), (16, 2, 33)])
def test_window_positive_separable_symmetric(mode, shape):
    w = K.tile_window(shape, mode)
    assert w.dtype == np.float32 and w.shape == shape
    assert np.all(w > 0) and np.all(np.isfinite(w))
    assert np.allclose(w, w[::-1, ::-1, ::-1])
    # separable: w == outer product of its (normalised) centre lines
    c = [s // 2 for s in shape]
    pz, py, px = w[:, c[1], c[2]], w[c[0], :, c[2]], w[c[0], c[1], :]
    outer = pz[:, None, None] * py[None, :, None] * px[None, None, :] / w[c[0], c[1], c[2]] ** 2
    np.testing.assert_allclose(w, outer, rtol=1e-5)


def test_window_values():
    g = K.tile_window((1, 1, 9), "gaussian", sigma_scale=0.25)[0, 0]
    i = np.arange(9)
    np.testing.assert_allclose(g, np.exp(-0.5 * ((i - 4) / (0.25 * 9)) ** 2), rtol=1e-6)
    c = K.tile_window((1, 1, 4), "cosine")[0, 0]
    np.testing.assert_allclose(c, np.sin(np.pi * (np.arange(4) + 0.5) / 4) ** 2, rtol=1e-6)
    tiny = K.tile_window((64, 64, 64), "gaussian", sigma_scale=0.01)
    assert tiny.min() > 0  # floored, never underflows to zero


@pytest.mark.parametrize("bad", [dict(shape=(0, 4, 4)), dict(shape=(4, 4)),
                                 dict(shape=(4, 4, 4), mode="hann"),
                                 dict(shape=(4, 4, 4), sigma_scale=0.0)])
def test_window_rejects_bad_arguments(bad):
    with pytest.raises(UsageError):
        K.tile_window(**bad)


# -- accumulate + finalize ------------------------------------------------------------------

def _accumulate_ref(acc, wsum, tile, window, offset):
    sl_acc, sl_tile = [], []
    for n, t, o in zip(acc.shape, tile.shape, offset, strict=True):
        lo, hi = max(o, 0), min(o + t, n)
        if hi <= lo:
            return
        sl_acc.append(slice(lo, hi))
        sl_tile.append(slice(lo - o, hi - o))
    acc[tuple(sl_acc)] += tile[tuple(sl_tile)] * window[tuple(sl_tile)]
    wsum[tuple(sl_acc)] += window[tuple(sl_tile)]


OFFSETS = [(0, 0, 0), (-1, 2, -3), (2, -2, 4), (-5, -5, -5), (3, 5, 7), (1, 1, 1)]


@pytest.mark.parametrize("acc_shape", [(3, 5, 7), (1, 6, 4), (4, 1, 5)])
def test_accumulate_matches_numpy(side, rng, acc_shape):
    acc = rng.random(acc_shape).astype(np.float32)
    wsum = rng.random(acc_shape).astype(np.float32)
    ref_acc, ref_wsum = acc.copy(), wsum.copy()
    d_acc, d_wsum = side.put(acc), side.put(wsum)
    for off in OFFSETS:
        tile = rng.standard_normal((2, 4, 3)).astype(np.float32)
        window = K.tile_window(tile.shape, "gaussian")
        K.accumulate(d_acc, d_wsum, side.put(tile), side.put(window), off)
        _accumulate_ref(ref_acc, ref_wsum, tile, window, off)
    if side.name == "gpu":  # the GPU may fuse tile * window + acc into one rounding
        np.testing.assert_allclose(side.get(d_acc), ref_acc, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(side.get(d_wsum), ref_wsum, rtol=1e-6)
    else:
        np.testing.assert_array_equal(side.get(d_acc), ref_acc)
        np.testing.assert_array_equal(side.get(d_wsum), ref_wsum)


def _finalize_ref(acc, wsum, dtype, low, high):
    with np.errstate(invalid="ignore", divide="ignore"):
        v = acc / wsum * np.float32(high - low) + np.float32(low)
    v = np.where(np.isnan(v), np.float32(0), v)
    if np.dtype(dtype).kind == "u":
        v = np.rint(np.clip(v, 0, np.iinfo(dtype).max))
    return v.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (2, 1, 9)])
def test_finalize_matches_numpy(side, rng, dtype, shape):
    acc = (rng.standard_normal(shape) * 2).astype(np.float32)
    wsum = rng.random(shape).astype(np.float32) + np.float32(0.1)
    wsum.ravel()[0] = 0  # 0/0 -> NaN -> 0
    acc.ravel()[0] = 0
    if acc.size > 2:
        acc.ravel()[1] = np.nan
        acc.ravel()[2] = np.float32(2.5) * wsum.ravel()[2]  # a .5 tie for the rounding
    low, high = -3.0, 100.0
    if np.dtype(dtype) == np.uint8:
        low, high = 0.0, 255.0
    got = side.get(K.finalize(side.put(acc), side.put(wsum), dtype, low, high))
    assert got.dtype == np.dtype(dtype)
    ref = _finalize_ref(acc, wsum, dtype, low, high)
    if side.name == "gpu":  # the GPU may fuse multiply-add: one unit in the last place
        np.testing.assert_allclose(got.astype(np.float64), ref, rtol=1e-6, atol=1)
    else:
        np.testing.assert_array_equal(got, ref)


def test_finalize_into_out_and_clipping(rng):
    acc = np.array([[[-5.0, 0.2, 1.0, 70000.0, np.inf]]], np.float32)
    wsum = np.ones_like(acc)
    out = np.empty(acc.shape, np.uint16)
    res = K.finalize(acc, wsum, np.uint16, 0.0, 1.0, out=out)
    assert res is out
    np.testing.assert_array_equal(out[0, 0], [0, 0, 1, 65535, 65535])


def test_accumulate_rejects_bad_arguments(rng):
    acc = np.zeros((3, 4, 5), np.float32)
    tile = np.ones((2, 2, 2), np.float32)
    with pytest.raises(UsageError):
        K.accumulate(acc.astype(np.float64), acc.copy(), tile, tile, (0, 0, 0))
    with pytest.raises(UsageError):
        K.accumulate(acc, np.zeros((3, 4, 4), np.float32), tile, tile, (0, 0, 0))
    with pytest.raises(UsageError):
        K.accumulate(acc, acc.copy(), tile, np.ones((2, 2, 3), np.float32), (0, 0, 0))
    with pytest.raises(UsageError):
        K.accumulate(acc, acc.copy(), tile, tile, (0, 0))
    with pytest.raises(UsageError):
        K.finalize(acc, acc, np.int32)
    with pytest.raises(UsageError):
        K.finalize(acc, acc, np.uint8, out=np.empty((3, 4, 5), np.uint16))


def test_accumulate_float16_tile_is_converted(rng):
    acc, wsum = np.zeros((2, 3, 4), np.float32), np.zeros((2, 3, 4), np.float32)
    tile = rng.random((2, 3, 4)).astype(np.float16)
    K.accumulate(acc, wsum, tile, np.ones((2, 3, 4), np.float32), (0, 0, 0))
    np.testing.assert_array_equal(acc, tile.astype(np.float32))


def test_tiles_outside_are_ignored():
    acc, wsum = np.zeros((2, 3, 4), np.float32), np.zeros((2, 3, 4), np.float32)
    K.accumulate(acc, wsum, np.ones((2, 2, 2), np.float32), np.ones((2, 2, 2), np.float32),
                 (0, 3, 0))
    assert not acc.any() and not wsum.any()


# -- MIP ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_mip_exact(side, rng, dtype, shape):
    vol = _random(rng, shape, dtype)
    mz, my, mx = (side.get(p) for p in K.mip(side.put(vol)))
    np.testing.assert_array_equal(mz, vol.max(axis=0))
    np.testing.assert_array_equal(my, vol.max(axis=1))
    np.testing.assert_array_equal(mx, vol.max(axis=2))
    assert mz.dtype == my.dtype == mx.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mip_streaming_chunks_equal_whole(side, rng, dtype):
    vol = _random(rng, (5, 7, 6), dtype)
    projections = K.mip_init(vol.shape, dtype, device=side.name != "cpu")
    # uneven chunks in an awkward order, covering the volume
    for z0, z1 in ((3, 5), (0, 3)):
        for y0, y1 in ((0, 4), (4, 7)):
            for x0, x1 in ((2, 6), (0, 2)):
                chunk = vol[z0:z1, y0:y1, x0:x1]
                K.mip_update(*projections, side.put(chunk), (z0, y0, x0))
    mz, my, mx = (side.get(p) for p in projections)
    np.testing.assert_array_equal(mz, vol.max(axis=0))
    np.testing.assert_array_equal(my, vol.max(axis=1))
    np.testing.assert_array_equal(mx, vol.max(axis=2))


def test_mip_ignores_nan_and_handles_views(rng):
    vol = rng.random((4, 5, 6)).astype(np.float32)
    vol[1, 2, 3] = np.nan
    mz, my, mx = K.mip(vol)
    np.testing.assert_array_equal(mz, np.fmax.reduce(vol, axis=0))
    np.testing.assert_array_equal(mx, np.fmax.reduce(vol, axis=2))
    view = vol[:, ::2, 1:]  # not contiguous
    np.testing.assert_array_equal(K.mip(view)[1], np.fmax.reduce(view, axis=1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mip_wide_rows_and_plane_blocks(rng, dtype):
    """Rows of 63-200 voxels (the float row maxima's 64 running lanes plus their tail) and
    1-9 planes (the kernel reads four planes at a time plus a remainder), negative floats,
    scattered NaNs and an all-NaN row (a line of NaNs only projects to -inf, the value
    mip_init starts from); whole volumes and streamed chunks at offsets."""
    for nz, nx in ((1, 64), (3, 63), (4, 65), (5, 128), (8, 130), (9, 200)):
        vol = _random(rng, (nz, 6, nx), dtype)
        if np.dtype(dtype).kind == "f":
            vol[rng.random(vol.shape) < 0.05] = np.nan
            vol[0, 2, :] = np.nan
        want = [np.fmax.reduce(vol, axis=a) for a in range(3)]
        for w in want if np.dtype(dtype).kind == "f" else ():
            w[np.isnan(w)] = -np.inf
        for got, ref in zip(K.mip(vol), want, strict=True):
            np.testing.assert_array_equal(got, ref)
        projections = K.mip_init(vol.shape, dtype)
        for z0, z1 in ((nz // 2, nz), (0, nz // 2)):
            for x0, x1 in ((0, nx // 3), (nx // 3, nx)):
                if z1 > z0:
                    K.mip_update(*projections, vol[z0:z1, :, x0:x1], (z0, 0, x0))
        for got, ref in zip(projections, want, strict=True):
            np.testing.assert_array_equal(got, ref)


def test_mip_float_order_is_the_floats_order(rng):
    """float32 runs on integer keys: every special value ranks as a float does. Signed
    zeros, infinities, subnormals, values on both sides of zero and NaN (never wins; a line
    of NaNs projects to -inf), against np.fmax, whole and in chunks."""
    specials = np.array([-np.inf, -3.4e38, -1.0, -1e-45, -0.0, 0.0, 1e-45, 1.0, 3.4e38,
                         np.inf, np.nan], np.float32)
    vol = rng.choice(specials, size=(6, 7, 70)).astype(np.float32)
    vol[2, 3, :] = np.nan
    vol[:, 4, 5] = np.nan
    want = [np.fmax.reduce(vol, axis=a) for a in range(3)]
    for w in want:
        w[np.isnan(w)] = -np.inf
    for got, ref in zip(K.mip(vol), want, strict=True):
        np.testing.assert_array_equal(got, ref)
        assert not np.isnan(got).any()
    projections = K.mip_init(vol.shape, np.float32)
    for z0, y0 in ((3, 0), (0, 4), (0, 0), (3, 4)):
        K.mip_update(*projections, vol[z0:z0 + 3, y0:y0 + 4 if y0 == 0 else 7], (z0, y0, 0))
    for got, ref in zip(projections, want, strict=True):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mip_update_leaves_the_projections_outside_the_chunk_alone(rng, dtype):
    """Float projections are turned into keys and back only where the chunk projects:
    every other element keeps its exact bits (a wrong region would leave keys behind)."""
    vol = _random(rng, (6, 9, 11), dtype)
    projections = K.mip_init(vol.shape, dtype)
    for p in projections:
        p[...] = _random(rng, (1, *p.shape), dtype)[0]
    before = [p.copy() for p in projections]
    z0, y0, x0 = 2, 3, 4
    chunk = vol[z0:z0 + 3, y0:y0 + 4, x0:x0 + 5]
    K.mip_update(*projections, chunk, (z0, y0, x0))
    regions = [(slice(y0, y0 + 4), slice(x0, x0 + 5)), (slice(z0, z0 + 3), slice(x0, x0 + 5)),
               (slice(z0, z0 + 3), slice(y0, y0 + 4))]
    for axis, (p, old, region) in enumerate(zip(projections, before, regions, strict=True)):
        outside = np.ones(p.shape, bool)
        outside[region] = False
        assert p[outside].tobytes() == old[outside].tobytes()
        np.testing.assert_array_equal(p[region], np.maximum(old[region], chunk.max(axis=axis)))


def test_mip_update_replaces_nan_seeded_projections_in_all_three():
    """Projections a caller seeded with NaN: every projection takes the chunk's maxima."""
    chunk = np.arange(2 * 3 * 16, dtype=np.float32).reshape(2, 3, 16)
    projections = K.mip_init(chunk.shape, np.float32)
    for p in projections:
        p[...] = np.nan
    K.mip_update(*projections, chunk, (0, 0, 0))
    for p, axis in zip(projections, (0, 1, 2), strict=True):
        np.testing.assert_array_equal(p, chunk.max(axis=axis))


def test_mip_rejects_bad_input():
    with pytest.raises(VolumeError):
        K.mip(np.zeros((4, 4), np.uint16))
    with pytest.raises(VolumeError):
        K.mip(np.zeros((2, 4, 4), np.int64))
    projections = K.mip_init((4, 5, 6), np.uint16)
    with pytest.raises(UsageError):  # sticks out of the volume
        K.mip_update(*projections, np.zeros((2, 2, 2), np.uint16), (3, 0, 0))
    with pytest.raises(UsageError):  # dtype mismatch
        K.mip_update(*projections, np.zeros((2, 2, 2), np.uint8), (0, 0, 0))
    with pytest.raises(UsageError):  # projections of different volumes
        K.mip_update(projections[0], projections[1][:3], projections[2],
                     np.zeros((2, 2, 2), np.uint16), (0, 0, 0))


# -- slanted MIP ----------------------------------------------------------------------------

def _slanted_ref(vol, angle):
    """The slanted MIP written with scipy: bilinear samples along each ray, outside skipped."""
    nz, ny, nx = vol.shape
    a = np.deg2rad(angle)
    c, s = abs(np.cos(a)), abs(np.sin(a))
    t_n = max(1, int(c * nz + s * nx + 0.5 + 1e-9))
    u_n = max(1, int(s * nz + c * nx + 0.5 + 1e-9))
    t = np.arange(t_n) - (t_n - 1) / 2
    u = np.arange(u_n) - (u_n - 1) / 2
    tt, uu = np.meshgrid(t, u, indexing="ij")
    z = (nz - 1) / 2 + tt * np.cos(a) - uu * np.sin(a)
    x = (nx - 1) / 2 + tt * np.sin(a) + uu * np.cos(a)
    inside = (z >= 0) & (z <= nz - 1) & (x >= 0) & (x <= nx - 1)
    out = np.zeros((ny, u_n), np.float32)
    for y in range(ny):
        plane = vol[:, y, :].astype(np.float64)
        samples = ndi.map_coordinates(plane, [z, x], order=1, mode="nearest")
        samples = np.where(inside, samples, -np.inf)
        best = samples.max(axis=0)
        out[y] = np.where(np.isfinite(best), best, 0)
    return out


@pytest.mark.parametrize("angle", [0.0, 17.0, -30.0, 45.0, 90.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_slanted_mip_matches_reference(side, rng, angle, dtype):
    vol = _random(rng, (4, 3, 6), dtype)
    got = side.get(K.slanted_mip(side.put(vol), angle))
    ref = _slanted_ref(vol, angle)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


def test_slanted_mip_zero_degrees_is_mip(rng):
    vol = rng.random((5, 4, 7)).astype(np.float32)
    np.testing.assert_array_equal(K.slanted_mip(vol, 0.0), vol.max(axis=0))


def test_slanted_mip_is_max_of_rotated_volume(rng):
    vol = rng.random((6, 3, 9)).astype(np.float32)
    np.testing.assert_allclose(K.slanted_mip(vol, 25.0), K.rotate_axial(vol, 25.0).max(axis=0),
                               rtol=1e-6)


# -- affine ---------------------------------------------------------------------------------

def _random_affine(rng):
    mat = np.eye(3) + rng.normal(0, 0.15, (3, 3))
    return mat, rng.normal(0, 1.0, 3)


def _interior(vol_shape, mat, off, out_shape, margin=1.0):
    """Output voxels whose source coordinates lie at least ``margin`` inside the volume."""
    grid = np.indices(out_shape).reshape(3, -1).astype(np.float64)
    coords = mat @ grid + off[:, None]
    ok = np.ones(grid.shape[1], bool)
    for d, n in enumerate(vol_shape):
        ok &= (coords[d] >= margin) & (coords[d] <= n - 1 - margin)
    return ok.reshape(out_shape)


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 5, 6), (1, 6, 5), (5, 1, 3)])
def test_affine_matches_scipy(side, rng, order, dtype, shape):
    vol = _random(rng, shape, dtype)
    mat, off = _random_affine(rng)
    out_shape = (shape[0] + 1, max(1, shape[1] - 1), shape[2])
    got = side.get(K.affine_transform(side.put(vol), mat, off, output_shape=out_shape,
                                      order=order, cval=7.0))
    ref = ndi.affine_transform(vol, mat, off, output_shape=out_shape, order=order, cval=7.0)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    inside = _interior(shape, mat, off, out_shape)
    scale = float(np.abs(vol).max()) or 1.0
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(got[inside], ref[inside], rtol=1e-5, atol=1e-5 * scale)
    else:  # integers: same rounding up to ties decided by the last bit of a double
        assert np.abs(got[inside].astype(int) - ref[inside]).max(initial=0) <= 1
    # in practice even the border agrees: the same inside/outside rule as scipy
    close = np.isclose(got.astype(np.float64), ref, rtol=1e-5, atol=max(1e-5 * scale, 1.0)
                       if np.dtype(dtype).kind == "u" else 1e-5 * scale)
    assert np.mean(close) > 0.98


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_affine_fast_span_matches_scipy(rng, dtype):
    """Rows long enough to have a checked-free span, and matrices with zero x-columns (the
    span's constant-coordinate case) and offsets landing exactly on the last plane."""
    shape = (9, 17, 23)
    vol = _random(rng, shape, dtype)
    cases = [_random_affine(rng) for _ in range(3)]
    cases += [(np.eye(3), np.zeros(3)), (np.eye(3), np.array([8.0, 0.0, 0.5])),
              (np.diag([1.0, 0.5, 2.0]), np.array([0.0, 16.0, -0.25])),
              (np.array([[0.0, 0.0, 0.3], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), np.zeros(3))]
    for mat, off in cases:
        got = K.affine_transform(vol, mat, off, order=1, cval=5.0)
        ref = ndi.affine_transform(vol, mat, off, order=1, cval=5.0)
        if np.dtype(dtype).kind == "f":
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
        else:
            assert np.abs(got.astype(int) - ref).max(initial=0) <= 1


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_affine_tiles_cover_every_output_row_once(threads):
    """The general kernel's tiles (TILE_ROWS rows by up to TILE_PLANES planes, thinner in z
    until every thread has four) cover each (z, y) output row exactly once, and the kernel
    tiled that way writes them all."""
    from resin.kernels import _cpu_resample as R

    for oz, oy in ((1, 1), (1, 40), (70, 37), (200, 3), (5, 16), (64, 17), (129, 200)):
        nyb, zb, n = R._tiles(oz, oy, threads)
        seen = np.zeros((oz, oy), int)
        for t in range(n):
            z_a, y_a = (t // nyb) * zb, (t % nyb) * R.TILE_ROWS
            seen[z_a:z_a + zb, y_a:y_a + R.TILE_ROWS] += 1
        assert (seen == 1).all()
        assert n >= min(4 * threads, oz * nyb)
        # and the kernel, tiled for this many threads, writes every row: identity = copy
        vol = np.arange(oz * oy * 3, dtype=np.float32).reshape(oz, oy, 3)
        out = np.full_like(vol, np.nan)
        R.affine(vol, np.eye(3), np.zeros(3), 1, 0.0, False, 0.0, 0.0, out, threads)
        np.testing.assert_array_equal(out, vol)


@pytest.mark.parametrize("order", [0, 1])
def test_affine_general_kernel_with_partial_tiles_matches_scipy(rng, order):
    """An output whose planes and rows split into several tiles with partial last ones
    (70 planes of 37 rows: tiles of 16 rows by 32 planes on 2 threads)."""
    vol = _random(rng, (12, 15, 9), np.float32)
    mat, off = _random_affine(rng)
    got = K.affine_transform(vol, mat, off, output_shape=(70, 37, 5), order=order, cval=2.0)
    ref = ndi.affine_transform(vol, mat, off, output_shape=(70, 37, 5), order=order,
                               cval=2.0)
    inside = _interior(vol.shape, mat, off, (70, 37, 5))
    np.testing.assert_allclose(got[inside], ref[inside], rtol=1e-5, atol=1e-5)
    assert np.mean(np.isclose(got, ref, rtol=1e-5, atol=1e-5)) > 0.98


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_affine_integer_extremes_round_without_wrapping(rng, dtype):
    """Inside a row's fast span an integer output is rounded by truncating v + 0.5 with no
    clip (a trilinear value of in-range voxels is in range): volumes at the dtype's maximum
    must stay there (a value rounded past it would wrap to 0), and 0/max volumes must agree
    with SciPy to one count, through the general and the plane kernels."""
    top = np.iinfo(dtype).max
    shape = (9, 14, 31)
    a = np.deg2rad(21.0)
    zx = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1.0, 0], [np.sin(a), 0, np.cos(a)]])
    for mat in (_random_affine(rng)[0], zx, np.diag([0.9, 0.5, 1.1])):
        off = (np.array(shape) - 1) / 2 - mat @ ((np.array(shape) - 1) / 2)
        full = np.full(shape, top, dtype)
        got = K.affine_transform(full, mat, off, order=1, cval=0.0)
        inside = _interior(shape, mat, off, shape, margin=0.0)
        assert inside.any() and (got[inside] == top).all()
        vol = (rng.random(shape) < 0.5).astype(dtype) * top
        got = K.affine_transform(vol, mat, off, order=1, cval=3.0)
        ref = ndi.affine_transform(vol, mat, off, order=1, cval=3.0)
        assert np.abs(got.astype(int) - ref).max() <= 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_zx_plane_path_matches_scipy_and_general_kernel(rng, dtype):
    """Matrices that keep y apart take the plane-blending kernel: same values as SciPy
    and as the general kernel, including output planes whose source y is outside (cval),
    exactly on the last plane, and between planes."""
    from resin.kernels import _cpu_resample

    shape = (11, 9, 19)
    vol = _random(rng, shape, dtype)
    a = np.deg2rad(33.0)
    rot = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    cases = [(rot, np.array([3.0, 0.0, -2.0]), (15, 9, 21)),
             (rot @ np.diag([0.7, 1.0, 1.3]), np.array([1.0, -2.5, 4.0]), (12, 13, 17)),
             (np.diag([1.0, 0.5, 1.0]), np.array([0.0, 4.0, 0.0]), (11, 9, 19)),  # y = 8.0
             (rot, np.array([0.0, 0.25, 0.0]), (9, 10, 16))]
    rng_int = _common_int_range(dtype)
    lo, hi = rng_int if rng_int is not None else (0.0, 0.0)
    for mat, off, out_shape in cases:
        ref = ndi.affine_transform(vol, mat, off, output_shape=out_shape, order=1, cval=6.0)
        # the plane kernel called directly (the public call takes it only when the output
        # has at least two y planes per thread), the general one, and the public call
        plane = np.empty(out_shape, dtype)
        _cpu_resample.affine_zx(vol, mat, off, 6.0, rng_int is not None, lo, hi, plane)
        general = np.empty(out_shape, dtype)
        _cpu_resample.affine(vol, mat, off, 1, 6.0, rng_int is not None, lo, hi, general,
                             2)
        public = K.affine_transform(vol, mat, off, output_shape=out_shape, order=1, cval=6.0)
        for got in (plane, public):
            if np.dtype(dtype).kind == "f":
                np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(got, general, rtol=1e-6, atol=1e-6)
            else:
                assert np.abs(got.astype(int) - ref).max(initial=0) <= 1
                assert np.abs(got.astype(int) - general).max(initial=0) <= 1


def _common_int_range(dtype):
    from resin.kernels import _common

    return _common.int_range(np.dtype(dtype))


def test_affine_rejects_axes_beyond_int32_coordinates():
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=(1, 1, 2**31),
                                           strides=(0, 0, 0))  # no memory behind it
    with pytest.raises(VolumeError, match="int32"):
        K.affine_transform(huge, np.eye(3))


def test_affine_matrix_forms(rng):
    vol = rng.random((5, 6, 7)).astype(np.float32)
    mat, off = _random_affine(rng)
    ref = ndi.affine_transform(vol, mat, off, order=1)
    homog = np.eye(4)
    homog[:3, :3], homog[:3, 3] = mat, off
    np.testing.assert_allclose(K.affine_transform(vol, homog), ref, atol=1e-6)
    np.testing.assert_allclose(K.affine_transform(vol, homog[:3]), ref, atol=1e-6)
    diag = np.array([0.9, 1.1, 0.8])
    np.testing.assert_allclose(K.affine_transform(vol, diag, 0.5),
                               ndi.affine_transform(vol, diag, 0.5, order=1), atol=1e-6)
    with pytest.raises(UsageError):
        K.affine_transform(vol, mat, order=3)
    with pytest.raises(UsageError):
        K.affine_transform(vol, np.eye(2))
    with pytest.raises(VolumeError):
        K.affine_transform(vol[0], np.eye(3))


def test_rotate_axial_brings_tilted_axis_to_z():
    shape = (21, 5, 31)
    angle = 30.0
    a = np.deg2rad(angle)
    centre = (np.array(shape) - 1) / 2
    point = centre + 6 * np.array([np.cos(a), 0, np.sin(a)])  # 6 voxels along the axis
    zz, yy, xx = np.indices(shape)
    vol = np.exp(-((zz - point[0]) ** 2 + (yy - point[1]) ** 2 + (xx - point[2]) ** 2) / 2)
    rot = K.rotate_axial(vol.astype(np.float32), angle)
    peak = np.array(np.unravel_index(np.argmax(rot), rot.shape))
    expect = (np.array(rot.shape) - 1) / 2 + np.array([6, 0, 0])
    assert np.all(np.abs(peak - expect) <= 0.5 + 1e-9), (peak, expect)


def test_rotate_axial_round_trip(rng):
    zz, yy, xx = np.indices((12, 4, 14)).astype(np.float32)
    vol = (np.sin(zz / 3) + np.cos(xx / 4) + yy / 10).astype(np.float32)  # smooth
    there = K.rotate_axial(vol, 20.0)
    back = K.rotate_axial(there, 20.0, inverse=True, output_shape=vol.shape)
    assert back.shape == vol.shape
    inner = (slice(3, -3), slice(None), slice(3, -3))
    assert np.abs(back[inner] - vol[inner]).max() < 0.05


# -- dispatch -------------------------------------------------------------------------------

def test_mixed_host_and_device_arrays_are_refused(side):
    if side.name == "cpu":
        pytest.skip("needs a device array")
    acc = np.zeros((2, 2, 2), np.float32)
    with pytest.raises(UsageError):
        K.accumulate(side.put(acc), acc.copy(), acc, acc, (0, 0, 0))


# -- CUDA launch geometry -------------------------------------------------------------------

def test_cuda_grid_stays_within_cudas_limits():
    from resin.kernels import _cuda

    # 300000 planes in y and z need 75000 and 150000 blocks: more than CUDA's 65535
    grid = _cuda._grid((1000, 300_000, 300_000), _cuda._BLOCK3)
    assert grid == (32, 65535, 65535)
    assert _cuda._grid((10**12, 3), _cuda._BLOCK2) == (2**31 - 1, 1)
    assert _cuda._grid((7, 5, 3), _cuda._BLOCK3) == (1, 2, 2)
    assert _cuda._grid((0, 5, 3), _cuda._BLOCK3) is None


def test_cuda_kernels_cover_outputs_larger_than_the_grid(side, rng, monkeypatch):
    """With the grid capped at one block, every kernel must loop over the rest itself."""
    if side.name == "cpu":
        pytest.skip("CUDA launch geometry")
    from resin.kernels import _cuda

    monkeypatch.setattr(_cuda, "MAX_GRID", (1, 1, 1))
    shape = (5, 9, 40)  # more voxels than one (32, 4, 2) block on every axis
    acc = rng.random(shape).astype(np.float32)
    wsum = rng.random(shape).astype(np.float32) + np.float32(0.5)
    tile = rng.random(shape).astype(np.float32)
    window = rng.random(shape).astype(np.float32)
    acc_d, wsum_d = side.put(acc), side.put(wsum)
    K.accumulate(acc_d, wsum_d, side.put(tile), side.put(window), (0, 0, 0))
    _accumulate_ref(acc, wsum, tile, window, (0, 0, 0))
    np.testing.assert_allclose(side.get(acc_d), acc, rtol=1e-6)
    np.testing.assert_allclose(side.get(wsum_d), wsum, rtol=1e-6)
    got = side.get(K.finalize(acc_d, wsum_d, np.float32, 0.0, 1.0))
    np.testing.assert_allclose(got, _finalize_ref(acc, wsum, np.float32, 0.0, 1.0), rtol=1e-6)
    vol = _random(rng, shape, np.uint16)
    for got, axis in zip(K.mip(side.put(vol)), (0, 1, 2), strict=True):
        np.testing.assert_array_equal(side.get(got), vol.max(axis=axis))
    np.testing.assert_allclose(side.get(K.slanted_mip(side.put(vol), 30.0)),
                               K.slanted_mip(vol, 30.0), rtol=1e-5)
    np.testing.assert_array_equal(side.get(K.rotate_axial(side.put(vol), 20.0)),
                                  K.rotate_axial(vol, 20.0))


def test_cuda_finalize_of_nothing_launches_nothing(side, monkeypatch):
    if side.name == "cpu":
        pytest.skip("CUDA launch geometry")
    from resin.kernels import _cuda

    class Refuse:
        def __getitem__(self, config):
            raise AssertionError(f"launched a kernel with grid {config[0]}")

    monkeypatch.setattr(_cuda, "_finalize_k", Refuse())
    empty = np.zeros((0, 3, 4), np.float32)
    out = K.finalize(side.put(empty), side.put(empty), np.uint16, 0.0, 1.0)
    assert side.get(out).shape == (0, 3, 4)
