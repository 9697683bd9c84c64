"""resin.simulate: PSF, blur, noise model, determinism, and the `resin simulate` CLI."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_one_line_error
from scipy import ndimage, signal

from resin.errors import UsageError
from resin.io import read_volume
from resin.simulate import blur, gaussian_psf, simulate

SMALL = (16, 32, 32)


def _gauss1d(sigma: float) -> np.ndarray:
    r = int(4.0 * sigma + 0.5)
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return g / g.sum()


def test_psf_axis_aligned_is_separable_gaussian():
    k = gaussian_psf((5.0, 1.0, 1.5), 0.0)
    ref = np.einsum("i,j,k->ijk", _gauss1d(5.0), _gauss1d(1.0), _gauss1d(1.5))
    assert k.dtype == np.float32 and k.shape == ref.shape
    np.testing.assert_allclose(k, ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("angle", [20.0, 45.0, -60.0])
def test_psf_tilted_has_the_rotated_covariance(angle):
    sz, sl = 4.0, 1.0
    k = gaussian_psf((sz, sl, sl), angle, truncate=6.0).astype(np.float64)
    assert all(n % 2 == 1 for n in k.shape)
    assert k.sum() == pytest.approx(1.0, abs=1e-5)
    z, y, x = (np.arange(n) - n // 2 for n in k.shape)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    cov = np.array([[np.sum(k * a * b) for b in (zz, yy, xx)] for a in (zz, yy, xx)])
    a = np.radians(angle)
    u = np.array([np.cos(a), 0.0, np.sin(a)])  # long axis: z tilted towards x
    want = sz**2 * np.outer(u, u) + sl**2 * (np.eye(3) - np.outer(u, u))
    np.testing.assert_allclose(cov, want, atol=0.02 * sz**2)


def test_psf_90_degrees_swaps_z_and_x():
    k0 = gaussian_psf((3.0, 1.0, 1.0), 0.0)
    k90 = gaussian_psf((3.0, 1.0, 1.0), 90.0)
    np.testing.assert_allclose(k90, np.transpose(k0, (2, 1, 0)), atol=1e-7)


def test_blur_paths_agree_with_direct_convolution(rng):
    vol = rng.random(SMALL).astype(np.float32)
    # axis-aligned path (gaussian_filter) against FFT convolution with the sampled kernel
    got = blur(vol, (2.0, 1.0, 1.0), 0.0)
    ref = signal.fftconvolve(vol, gaussian_psf((2.0, 1.0, 1.0), 0.0), mode="same")
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # oblique path against scipy.ndimage.convolve with zero padding
    k = gaussian_psf((2.0, 1.0, 1.0), 30.0)
    got = blur(vol, (2.0, 1.0, 1.0), 30.0)
    ref = ndimage.convolve(vol.astype(np.float64), k.astype(np.float64), mode="constant")
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_deterministic_per_seed():
    a = simulate(SMALL, seed=7)
    b = simulate(SMALL, seed=7)
    c = simulate(SMALL, seed=8)
    assert np.array_equal(a.raw, b.raw) and np.array_equal(a.truth, b.truth)
    assert not np.array_equal(a.truth, c.truth)


def test_shapes_dtypes_and_z_step():
    s = simulate(SMALL, seed=1)
    assert s.raw.dtype == np.uint16 and s.truth.dtype == np.uint16
    assert s.raw.shape == SMALL and s.truth.shape == SMALL
    assert s.psf_sigma_zyx == (5.0, 1.0, 1.0)
    sub = simulate((17, 32, 32), seed=1, z_step=3)
    assert sub.truth.shape == (17, 32, 32) and sub.raw.shape == (6, 32, 32)
    assert sub.psf().shape == gaussian_psf((5.0, 1.0, 1.0)).shape


def test_noise_model_matches_poisson_plus_read_noise():
    photons, bg, offset, rn = 1000.0, 20.0, 100.0, 3.0
    s = simulate((24, 48, 48), photons=photons, background=bg, offset=offset, read_noise=rn,
                 seed=3)
    obj = (s.truth.astype(np.float64) - bg - offset) / photons
    assert obj.min() >= -1e-3 and obj.max() == pytest.approx(1.0, abs=1e-3)
    expected = blur(obj, s.psf_sigma_zyx) * photons + bg
    resid = s.raw.astype(np.float64) - offset - expected
    assert abs(resid.mean()) < 0.1
    # Poisson variance = mean counts, plus read noise variance (rounding adds 1/12)
    ratio = resid.var() / (expected.mean() + rn**2 + 1 / 12)
    assert ratio == pytest.approx(1.0, abs=0.05)


def test_truth_has_tubes_above_the_isotropy_threshold():
    s = simulate((32, 64, 64), seed=0)
    t = s.truth.astype(np.float64)
    norm = (t - t.min()) / (t.max() - t.min()) * 65535
    frac = (norm >= 11000).mean()
    assert 0.003 < frac < 0.2


@pytest.mark.parametrize("kwargs", [dict(shape=(4, 32, 32)), dict(sigma=(0.0, 5.0)),
                                    dict(photons=-1.0), dict(z_step=0), dict(read_noise=-1.0)])
def test_bad_parameters_raise_usage_error(kwargs):
    with pytest.raises(UsageError):
        simulate(**{"shape": SMALL, **kwargs})


def test_cli_writes_raw_and_truth(cli, tmp_path):
    raw, truth = tmp_path / "raw.tif", tmp_path / "truth.tif"
    proc = cli("resin", "simulate", str(raw), "--truth", str(truth), "--shape", "16", "32", "32",
               "--seed", "5", "--angle", "20", "--z-step", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    ref = simulate(SMALL, seed=5, angle_deg=20.0, z_step=2)
    assert np.array_equal(read_volume(raw), ref.raw)
    assert np.array_equal(read_volume(truth), ref.truth)
    # nothing is overwritten without --overwrite
    again = cli("resin", "simulate", str(raw), "--shape", "16", "32", "32")
    assert "exists" in assert_one_line_error(again)
    ok = cli("resin", "simulate", str(raw), "--shape", "16", "32", "32", "--overwrite", "-q")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("args", [("--shape", "16", "32"), ("--sigma", "1", "-5"),
                                  ("--shape", "4", "32", "32"), ("--z-step", "0")])
def test_cli_bad_arguments_exit_2(cli, tmp_path, args):
    proc = cli("resin", "simulate", str(tmp_path / "raw.tif"), *args)
    assert_one_line_error(proc)


def test_cli_unknown_suffix_exit_2(cli, tmp_path):
    assert_one_line_error(cli("resin", "simulate", str(tmp_path / "raw.png"), "--shape",
                              "16", "32", "32"))


def test_blobs_add_round_bright_objects():
    plain = simulate((24, 48, 48), seed=9, n_tubes=0)
    assert plain.truth.min() == plain.truth.max()  # no tubes, no blobs: empty field
    blobs = simulate((24, 48, 48), seed=9, n_tubes=0, n_blobs=3)
    lit = blobs.truth > blobs.truth.min()
    # each blob is a ball of radius 2-5: between ~30 and ~3 x 520 voxels in total
    assert 30 < lit.sum() < 3 * 4 / 3 * np.pi * 5.5**3
    assert blobs.raw.mean() > plain.raw.mean()
