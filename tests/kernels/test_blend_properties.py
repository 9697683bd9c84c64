"""Property: any tiling that covers the volume gives the volume back when tiles are the
identity (each tile is the volume's own crop), for every window mode."""

from __future__ import annotations

import numpy as np
import resin.kernels as K
from hypothesis import given, settings
from hypothesis import strategies as st


@st.composite
def tilings(draw):
    shape = tuple(draw(st.integers(1, 9)) for _ in range(3))
    tile = tuple(draw(st.integers(1, 6)) for _ in range(3))
    # per axis: tile starts from a step that leaves no gap, with a random start before 0
    starts = []
    for n, t in zip(shape, tile, strict=True):
        step = draw(st.integers(1, t))
        first = -draw(st.integers(0, t - 1))
        axis = list(range(first, n, step))
        starts.append(axis)
    mode = draw(st.sampled_from(["gaussian", "cosine", "constant"]))
    sigma = draw(st.floats(0.01, 1.0))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    seed = draw(st.integers(0, 2**31 - 1))
    return shape, tile, starts, mode, sigma, dtype, seed


def _crop(vol: np.ndarray, tile: tuple[int, ...], offset: tuple[int, int, int]) -> np.ndarray:
    """The tile at ``offset`` as a model that returns its input would give it (outside
    the volume: anything, here garbage that must not leak into the result)."""
    out = np.full(tile, 12345.0, np.float32)
    src, dst = [], []
    for n, t, o in zip(vol.shape, tile, offset, strict=True):
        lo, hi = max(o, 0), min(o + t, n)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - o, max(hi, lo) - o))
    out[tuple(dst)] = vol[tuple(src)]
    return out


@settings(max_examples=60, deadline=None)
@given(tilings())
def test_identity_tiles_give_the_volume_back(case):
    shape, tile, starts, mode, sigma, dtype, seed = case
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        vol = rng.random(shape).astype(np.float32)
    else:
        vol = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    norm = vol.astype(np.float32)
    low, high = 0.0, 1.0
    if np.dtype(dtype).kind == "u":  # the runtime's normalised space, then de-normalised
        high = float(np.iinfo(dtype).max)
        norm = norm / np.float32(high)
    acc = np.zeros(shape, np.float32)
    wsum = np.zeros(shape, np.float32)
    window = K.tile_window(tile, mode, sigma)
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                K.accumulate(acc, wsum, _crop(norm, tile, (z, y, x)), window, (z, y, x))
    assert np.all(wsum > 0)
    out = K.finalize(acc, wsum, dtype, low, high)
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(out, vol, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(out, vol)
