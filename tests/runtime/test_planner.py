"""Tile planner: coverage, alignment, bounds, face padding (property-tested)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resin.runtime.planner import face_indices, plan_axis, plan_tiles, read_padded

from resin.errors import UsageError


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 300), halo=st.integers(0, 20), m=st.sampled_from([1, 2, 4, 8]),
       extra_tile=st.integers(0, 120), overlap=st.integers(0, 30))
def test_axis_plan_covers_aligned_in_bounds(n, halo, m, extra_tile, overlap):
    tile = 2 * halo + m + extra_tile
    ax = plan_axis(n, tile, halo, m, overlap)
    padded = n + 2 * halo + ax.extra
    assert padded % m == 0 and 0 <= ax.extra < m
    assert ax.tile % m == 0 and ax.tile <= padded
    cover = np.zeros(n, dtype=int)
    for s in ax.starts:
        rel = s + halo  # start relative to the padded origin
        assert rel % m == 0, "tile not aligned to the pooling grid of one-tile inference"
        assert s >= -halo and s + ax.tile <= n + halo + ax.extra, "tile outside padded volume"
        lo, hi = max(0, s + halo), min(n, s + ax.tile - halo)
        cover[lo:hi] += 1
    assert (cover >= 1).all(), "some voxel has no tile core"
    assert ax.starts[-1] + ax.tile == n + halo + ax.extra, "last tile not flush with the border"
    assert list(ax.starts) == sorted(set(ax.starts))


@settings(max_examples=500, deadline=None)
@given(n=st.integers(1, 300), halo=st.integers(0, 20), m=st.sampled_from([1, 2, 4, 8]),
       extra_tile=st.integers(0, 120), pad_share=st.floats(0, 1))
def test_partition_keeps_every_voxel_once_with_context(n, halo, m, extra_tile, pad_share):
    """Without overlap, for any face padding from 0 to the halo: the kept regions partition
    the axis on multiples of the step, every tile lies in the padded volume on the pooling
    grid, and each kept region has a halo of context on every side not on a padded face."""
    pad = int(round(pad_share * halo))
    tile = 2 * halo + m + extra_tile
    try:
        ax = plan_axis(n, tile, halo, m, 0, pad)
    except UsageError:  # a tile too small for this halo and padding: must be small indeed
        assert tile < 3 * halo + 2 * m
        return
    assert ax.pad == pad and ax.padded % m == 0 and 0 <= ax.extra < m
    end = n + pad + ax.extra  # the padded end, in volume coordinates
    cover = np.zeros(n, dtype=int)
    for k, s in enumerate(ax.starts):
        assert (s + pad) % m == 0, "tile not on the pooling grid of one-tile inference"
        assert -pad <= s and s + ax.tile <= end, "tile outside the padded volume"
        lo, hi = ax.kept(k, True)
        assert lo < hi, "a tile that keeps nothing"
        cover[lo:hi] += 1
        if s != -pad:
            assert lo - s >= halo, "kept region without its context before it"
        if s + ax.tile != end:
            assert s + ax.tile - hi >= halo, "kept region without its context after it"
        if 0 < k:
            assert lo % ax.step == 0, "an inner kept boundary off the step"
    assert (cover == 1).all(), "kept regions do not partition the axis"
    assert list(ax.starts) == sorted(set(ax.starts))


def test_zero_faces_compute_nothing_outside_a_volume_on_the_size_multiple():
    plan = plan_tiles((96, 256, 256), (96, 136, 136), (29, 21, 21), 8, faces="zeros")
    assert plan.faces == "zeros" and plan.pad == (0, 0, 0)
    assert plan.axes[0].starts == (0,)
    for a in plan.axes[1:]:
        assert a.starts[0] == 0 and a.starts[-1] + a.tile == 256
    repeat = plan_tiles((96, 256, 256), (96, 136, 136), (29, 21, 21), 8)
    assert repeat.faces == "repeat" and repeat.axes[0].starts[0] == -29
    # the same tile computes the faces' context too: more calls for the same volume
    assert repeat.n_tiles > plan.n_tiles


def test_zero_faces_refuse_overlap_and_unknown_modes():
    with pytest.raises(UsageError, match="--faces repeat"):
        plan_tiles((64, 64, 64), (32, 32, 32), (4, 4, 4), 4, overlap=4, faces="zeros")
    with pytest.raises(UsageError, match="repeat, zeros or a number of voxels"):
        plan_tiles((64, 64, 64), (32, 32, 32), (4, 4, 4), 4, faces="mirror")
    with pytest.raises(UsageError, match="--faces repeat"):  # less padding than the halo
        plan_tiles((64, 64, 64), (32, 32, 32), (4, 4, 4), 4, overlap=4, faces="2")
    plan = plan_tiles((64, 64, 64), (32, 32, 32), (4, 4, 4), 4, overlap=4, faces="9")
    assert plan.pad == (4, 4, 4) and plan.faces == "repeat"  # N past the halo: the halo


@settings(max_examples=100, deadline=None)
@given(shape=st.tuples(st.integers(1, 40), st.integers(1, 60), st.integers(1, 60)),
       halo=st.integers(0, 6), overlap=st.integers(0, 8))
def test_window_weight_positive_everywhere(shape, halo, overlap):
    """Every output voxel receives positive blending weight from some tile core."""
    from resin.runtime.planner import Tile

    plan = plan_tiles(shape, (2 * halo + 8, 2 * halo + 12, 2 * halo + 16), (halo,) * 3, 4,
                      overlap)
    weight = np.zeros(shape)
    cz, cy, cx = plan.core
    for t in plan.tiles():
        assert isinstance(t, Tile)
        z, y, x = plan.out_core_start(t)
        weight[max(z, 0):z + cz, max(y, 0):y + cy, max(x, 0):x + cx] += 1.0
    assert (weight > 0).all()


def test_small_volume_is_one_padded_tile():
    plan = plan_tiles((5, 7, 3), (64, 64, 64), (4, 4, 4), 4)
    assert plan.n_tiles == 1
    assert plan.tile == (16, 16, 12)  # n + 2*halo rounded up to the size multiple
    assert plan.axes[0].starts == (-4,)


def test_tile_smaller_than_halo_is_a_usage_error():
    with pytest.raises(UsageError, match="tile"):
        plan_tiles((64, 64, 64), (8, 8, 8), (6, 6, 6), 4)


@given(start=st.integers(-50, 50), size=st.integers(1, 60), n=st.integers(1, 20))
def test_face_indices_match_numpy_edge_pad(start, size, n):
    a = np.arange(n)
    pad = 200
    ref = np.pad(a, pad, mode="edge")
    np.testing.assert_array_equal(face_indices(start, size, n), ref[start + pad:start + pad + size])


def test_read_padded_equals_numpy_pad(rng):
    vol = rng.integers(0, 1000, size=(5, 9, 7)).astype(np.uint16)
    padded = np.pad(vol, 6, mode="edge")
    calls = []

    def read(region):
        calls.append(region)
        return vol[region]

    box = read_padded(read, vol.shape, (-3, 4, -6), (10, 8, 16))
    np.testing.assert_array_equal(box, padded[3:13, 10:18, 0:16])
    for region in calls:  # only in-bounds reads
        for sl, n in zip(region, vol.shape, strict=True):
            assert 0 <= sl.start < sl.stop <= n


def test_export_and_runtime_do_not_import_each_other():
    """The artifact rules they share (metadata record, default tile) live in resin.metadata."""
    import subprocess
    import sys

    code = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
            "bad = [m for m in sys.modules if m.startswith(sys.argv[2])]; "
            "assert not bad, bad")
    for mod, other in (("resin.export._model", "resin.runtime"),
                       ("resin.runtime.runner", "resin.export"),
                       ("resin.tensorrt_plan", "resin.export"),  # plans load without export
                       ("resin.tensorrt_plan", "torch")):
        proc = subprocess.run([sys.executable, "-c", code, mod, other], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr[-500:]


@pytest.mark.parametrize("faces", ["repeat", "zeros"])
@pytest.mark.parametrize(("halo", "m"), [((29, 21, 21), 8), ((3, 3, 3), 8), ((12, 12, 12), 2)])
def test_out_of_memory_shrinking_stays_plannable(faces, halo, m):
    """Each smaller tile an out-of-memory retry asks for is one the planner accepts."""
    from resin.runtime.pipeline import shrink_tile

    shape = (300, 700, 700)
    plan = plan_tiles(shape, (200, 400, 400), halo, m, faces=faces)
    steps = 0
    while (smaller := shrink_tile(plan, m)) is not None:
        assert smaller != plan.tile
        plan = plan_tiles(shape, smaller, halo, m, faces=faces)  # raises if not
        steps += 1
    assert steps >= 6


def test_a_refused_tile_is_quoted_as_given():
    from resin.runtime.planner import plan_axis

    from resin.errors import UsageError

    with pytest.raises(UsageError, match=r"tile 1 \(rounded to 4\) leaves too small a core"):
        plan_axis(64, 1, 3, 4)
