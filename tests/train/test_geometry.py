from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ndimage = pytest.importorskip("scipy.ndimage")

from resin.train.geometry import _P, Geometry, _grid, aligned_basis  # noqa: E402


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]


@pytest.mark.parametrize("axis", ["y", "x"])
def test_axial_rotation_is_exact_and_inverted(rng, axis):
    g = Geometry((16, 32, 32), 0.0)
    v = _t(rng.random((16, 32, 32)))
    r = g.rotate(v, axis)
    # the axial axis (z, length 16) is now the lateral axis named by `axis`
    assert r.shape[2 + (1 if axis == "y" else 2)] == 16
    assert torch.equal(g.rotate_inverse(r, axis), v)
    # a real rotation: applying it four times is the identity, twice is not (a half turn)
    cube = Geometry((12, 12, 12), 0.0)
    w = _t(rng.random((12, 12, 12)))
    four = w
    for _ in range(4):
        four = cube.rotate(four, axis)
    assert torch.equal(four, w)
    assert not torch.equal(cube.rotate(cube.rotate(w, axis), axis), w)


@pytest.mark.parametrize("axis", ["y", "x"])
def test_rotation_moves_the_axial_blur_onto_a_lateral_axis(axis):
    g = Geometry((12, 12, 12), 0.0)
    v = np.zeros((12, 12, 12), np.float32)
    v[:, 5, 7] = 1.0  # a line along z
    r = g.rotate(_t(v), axis)[0, 0].numpy()
    lateral = 1 if axis == "y" else 2
    nz = np.nonzero(r)
    assert r.sum() == 12 and len(nz[0]) == 12
    for axis_index in range(3):  # the line now runs along `lateral` only
        assert np.ptp(nz[axis_index]) == (11 if axis_index == lateral else 0)


@pytest.mark.parametrize("axis", ["y", "x"])
def test_resampled_rotation_equals_exact_path_at_zero_degrees(rng, axis):
    v = _t(rng.random((10, 10, 10)))
    grid = _grid(_P[axis], (10, 10, 10), 10, torch.device("cpu"))
    resampled = torch.nn.functional.grid_sample(v, grid, mode="bilinear", align_corners=True)
    exact = Geometry((10, 10, 10), 0.0).rotate(v, axis)
    assert torch.allclose(resampled, exact, atol=1e-5)


@pytest.mark.parametrize("angle", [45.0, -30.0])
def test_oblique_rotation_inverse_on_smooth_volume(angle):
    n = 24
    zz, yy, xx = np.mgrid[0:n, 0:n, 0:n] / n
    v = _t(np.sin(3 * zz + 1) * np.cos(2 * yy) + 0.5 * xx)
    g = Geometry((n,) * 3, angle)
    for axis in ("y", "x"):
        back = g.rotate_inverse(g.rotate(v, axis), axis)
        assert float((g.crop(back) - g.crop(v)).abs().max()) < 0.01
        assert float((g.crop(g.rotate(v, axis)) - g.crop(v)).abs().max()) > 0.1


@pytest.mark.parametrize("angle", [0.0, 45.0, 20.0, -60.0])
def test_slanted_mips_match_scipy_rotation_reference(rng, angle):
    n = 20
    vol = rng.random((n, n, n)).astype(np.float32)
    g = Geometry((n,) * 3, angle)
    t = _t(vol)
    got_axial = g.axial_mip(t)[0, 0].numpy()
    got_y, got_x = (m[0, 0].numpy() for m in g.lateral_mips(t))
    # reference: resample the volume into the frame whose first axis is the PSF axis, max
    q = aligned_basis(angle)
    out_shape = g.aligned_shape if g.oblique else (n, n, n)
    c_in = np.full(3, (n - 1) / 2)
    c_out = (np.asarray(out_shape) - 1) / 2
    aligned = ndimage.affine_transform(vol.astype(np.float64), q, offset=c_in - q @ c_out,
                                       output_shape=out_shape, order=1, mode="grid-constant")
    np.testing.assert_allclose(got_axial, aligned.max(axis=0), atol=1e-5)
    np.testing.assert_allclose(got_y, aligned.max(axis=1), atol=1e-5)
    np.testing.assert_allclose(got_x, aligned.max(axis=2), atol=1e-5)
    if angle == 0.0:
        np.testing.assert_array_equal(got_axial, vol.max(axis=0))


def test_slanted_mip_follows_an_oblique_line():
    """A line along the PSF axis (45 deg from z towards x) collapses to a single bright spot."""
    n = 21
    vol = np.zeros((n, n, n), np.float32)
    for i in range(n):
        vol[i, 10, i] = 1.0  # z = x: the 45-degree direction
    g = Geometry((n,) * 3, 45.0)
    mip = g.axial_mip(_t(vol))[0, 0].numpy()
    assert mip.max() == pytest.approx(1.0, abs=1e-5)
    assert (mip > 0.5).sum() == 1  # one spot: the line is seen end-on
    # and the plain z-MIP sees a streak along x instead
    assert (vol.max(axis=0) > 0.5).sum() == n


@pytest.mark.parametrize("angle", [0.0, 45.0, -30.0])
def test_every_mip_has_the_same_depth_and_shape(angle):
    """The aniso discriminator compares the raw axial MIP with F's lateral MIPs: MIPs over
    different depths or of different shapes would tell them apart without looking at
    resolution (an oblique box once was 23 x 32 x 23: the y-MIP a max over 32 samples)."""
    g = Geometry((32,) * 3, angle)
    t = _t(np.ones((32, 32, 32), np.float32))
    shapes = {tuple(m.shape) for m in (g.axial_mip(t), *g.lateral_mips(t))}
    assert len(shapes) == 1  # (Y, X'), (Z', X'), (Z', Y) alike: a cube, so one depth
