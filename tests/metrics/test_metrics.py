"""resin.metrics against direct NumPy / scikit-image references, blockwise against direct."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.morphology import skeletonize

from resin import metrics
from resin.errors import VolumeError
from resin.simulate import simulate


def _minmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.min()) / (x.max() - x.min())


@pytest.fixture
def pair(rng) -> tuple[np.ndarray, np.ndarray]:
    """A structured uint16 truth and a float32 prediction (different dtypes on purpose)."""
    truth = ndimage.gaussian_filter(rng.random((16, 32, 32)), 1.0) * 60000
    pred = truth / 60000 * 3.5 + rng.normal(0, 0.05, truth.shape) - 1.0
    return pred.astype(np.float32), truth.astype(np.uint16)


def test_rmse_matches_direct_formula(pair):
    pred, truth = pair
    want = 255.998 * np.sqrt(np.mean((_minmax(pred) - _minmax(truth)) ** 2))
    assert metrics.rmse(pred, truth) == pytest.approx(want, rel=1e-5)


def test_psnr_matches_skimage(pair):
    pred, truth = pair
    want = peak_signal_noise_ratio(_minmax(truth), _minmax(pred), data_range=1)
    assert metrics.psnr(pred, truth) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("smooth", [0.0, 1.0, 2.5])
def test_ssim_matches_skimage(rng, smooth):
    a = rng.random((16, 24, 28))
    b = a + rng.normal(0, 0.3, a.shape)
    if smooth:
        a, b = ndimage.gaussian_filter(a, smooth), ndimage.gaussian_filter(b, smooth * 0.5)
    want = structural_similarity(_minmax(a), _minmax(b), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1)
    got = metrics.ssim(b.astype(np.float32), a.astype(np.float32))
    assert got == pytest.approx(want, abs=2e-6)


def test_ssim_on_a_simulated_pair_matches_skimage():
    s = simulate((16, 40, 40), seed=2)
    want = structural_similarity(_minmax(s.raw), _minmax(s.truth), gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False, data_range=1)
    assert metrics.ssim(s.raw, s.truth) == pytest.approx(want, abs=2e-6)


def test_identical_volumes_score_perfectly(pair):
    _, truth = pair
    assert metrics.rmse(truth, truth) == 0.0
    assert metrics.ssim(truth, truth) == pytest.approx(1.0, abs=1e-6)
    assert metrics.psnr(truth, truth) == math.inf


def test_blockwise_equals_direct(monkeypatch):
    s = simulate((48, 56, 56), seed=4, n_tubes=8)
    direct = metrics.evaluate(s.raw, s.truth)
    # a slab budget of 2 planes forces many slabs, each with its halo
    monkeypatch.setattr(metrics, "SLAB_VOXELS", 2 * 56 * 56)
    assert len(list(metrics._slabs(48, 56 * 56))) == 24
    blockwise = metrics.evaluate(s.raw, s.truth)
    assert blockwise.keys() == direct.keys()
    for key in direct:
        assert blockwise[key] == pytest.approx(direct[key], rel=1e-6, abs=1e-7), key


def test_memmap_input_gives_the_same_numbers(tmp_path):
    s = simulate((24, 40, 40), seed=6)
    mm = np.lib.format.open_memmap(tmp_path / "raw.npy", mode="w+", dtype=np.uint16,
                                   shape=s.raw.shape)
    mm[:] = s.raw
    mm.flush()
    ro = np.load(tmp_path / "raw.npy", mmap_mode="r")
    assert metrics.rmse(ro, s.truth) == metrics.rmse(s.raw, s.truth)
    assert metrics.ssim(ro, s.truth) == metrics.ssim(s.raw, s.truth)


# ---------------------------------------------------------------- isotropy ratio


def _line_pair(sig_z: float, sig_y: float, shape=(40, 40, 48)):
    """A one-voxel line along x (truth) and that line blurred by (sig_z, sig_y, 0)."""
    truth = np.zeros(shape, dtype=np.uint16)
    truth[shape[0] // 2, shape[1] // 2, :] = 1000
    pred = ndimage.gaussian_filter(truth.astype(np.float64), (sig_z, sig_y, 0.0), truncate=6.0)
    return pred.astype(np.float32), truth


def _gauss_fwhm_voxel(sigma: float) -> int:
    return 2 * int(math.floor(sigma * math.sqrt(2 * math.log(2))))


def _gauss_fwhm_interp(sigma: float) -> float:
    m = math.floor(sigma * math.sqrt(2 * math.log(2)))
    g = [math.exp(-d * d / (2 * sigma * sigma)) for d in (m, m + 1)]
    return 2 * (m + (g[0] - 0.5) / (g[0] - g[1]))


@pytest.mark.parametrize("sig_z,sig_y", [(3.0, 1.5), (4.2, 1.0), (2.2, 2.2)])
def test_isotropy_ratio_on_a_blurred_line(sig_z, sig_y):
    pred, truth = _line_pair(sig_z, sig_y)
    fz, fy, fx = _gauss_fwhm_voxel(sig_z), _gauss_fwhm_voxel(sig_y), 19  # flat along x
    want = 0.5 * (fz / fy + fz / fx)
    assert metrics.isotropy_ratio(pred, truth) == pytest.approx(want, rel=1e-12)
    fz, fy = _gauss_fwhm_interp(sig_z), _gauss_fwhm_interp(sig_y)
    want_sub = 0.5 * (fz / fy + fz / 19)
    assert metrics.isotropy_ratio_subvoxel(pred, truth) == pytest.approx(want_sub, rel=1e-4)
    # the same data with the optical axis along x gives the same numbers
    p2, t2 = np.moveaxis(pred, 0, 2), np.moveaxis(truth, 0, 2)
    assert metrics.isotropy_ratio(p2, t2, axial_axis=2) == pytest.approx(want, rel=1e-12)


def test_isotropy_ratio_points_follow_the_notebook_rules():
    _, truth = _line_pair(3.0, 1.5)
    pts = metrics.skeleton_points(truth)
    assert len(pts) == 48 - 2 * 16  # x in [16, 31]
    assert set(pts[:, 0]) == {20} and set(pts[:, 1]) == {20}
    assert pts[:, 2].min() == 16 and pts[:, 2].max() == 48 - 17


def _notebook_isotropy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Straight per-point transcription of the definition in docs/metrics.md (the reference)."""

    def u16(v):
        v = v.astype(np.float64)
        return ((v - v.min()) / (v.max() - v.min()) * 65535).astype(np.uint16)

    t, p = u16(truth), u16(pred)
    skel = skeletonize(t >= 11000)
    sums = [0, 0, 0]
    for c in np.argwhere(skel):
        if t[tuple(c)] <= 10000 or any(c[a] < 16 or c[a] > t.shape[a] - 17 for a in range(3)):
            continue
        for a in range(3):
            sl = list(map(int, c))
            prof = []
            for i in range(c[a] - 10, c[a] + 10):
                sl[a] = i
                prof.append(p[tuple(sl)])
            idx = [i for i, v in enumerate(prof) if v >= max(prof) / 2]
            sums[a] += idx[-1] - idx[0]
    return 0.5 * (sums[0] / sums[1] + sums[0] / sums[2])


def test_isotropy_ratio_matches_a_per_point_reference():
    s = simulate((48, 56, 56), seed=11, n_tubes=8)
    want = _notebook_isotropy(s.raw, s.truth)
    assert metrics.isotropy_ratio(s.raw, s.truth) == pytest.approx(want, rel=1e-12)
    assert want > 1.2  # the blurred input is clearly anisotropic


def test_isotropy_needs_skeleton_points():
    truth = np.zeros((40, 40, 40), dtype=np.uint16)
    truth[0, 0, 0] = 10  # only structure is at the border
    with pytest.raises(VolumeError, match="skeleton"):
        metrics.isotropy_ratio(truth, truth)


# ---------------------------------------------------------------- Fourier isotropy


@pytest.mark.parametrize("sigmas,want", [((3.0, 1.0, 1.0), 3.0), ((1.5, 1.5, 1.5), 1.0),
                                         ((4.0, 2.0, 2.0), 2.0)])
def test_isotropy_fourier_on_blurred_noise(rng, sigmas, want):
    vol = ndimage.gaussian_filter(rng.standard_normal((128, 96, 96)), sigmas)
    noisy = vol + 0.05 * vol.std() * rng.standard_normal(vol.shape)
    assert metrics.isotropy_fourier(vol) == pytest.approx(want, rel=0.05)
    assert metrics.isotropy_fourier(noisy.astype(np.float32)) == pytest.approx(want, rel=0.05)
    # the lateral cut-off itself is the Gaussian's e^-2 point 1 / (sqrt(2) pi s)
    cz, cy, cx = metrics.cutoff_frequencies(vol)
    assert cy == pytest.approx(1 / (math.sqrt(2) * math.pi * sigmas[1]), rel=0.05)
    moved = np.moveaxis(vol, 0, 1)  # optical axis now y
    assert metrics.isotropy_fourier(moved, axial_axis=1) == pytest.approx(want, rel=0.05)


def test_isotropy_fourier_rejects_tiny_volumes(rng):
    with pytest.raises(VolumeError, match="too small"):
        metrics.isotropy_fourier(rng.random((8, 32, 32)))


# ---------------------------------------------------------------- bad input


def test_bad_input_raises_volume_error(pair):
    pred, truth = pair
    with pytest.raises(VolumeError, match="different shapes"):
        metrics.rmse(pred[:-1], truth)
    with pytest.raises(VolumeError, match="constant"):
        metrics.ssim(np.full_like(pred, 3.0), truth)
    bad = pred.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(VolumeError, match="NaN"):
        metrics.evaluate(bad, truth)
    with pytest.raises(VolumeError, match="3D"):
        metrics.rmse(pred[0], truth[0])
    with pytest.raises(VolumeError, match="axial axis"):
        metrics.evaluate(pred, truth, axial_axis=3)


def test_evaluate_has_exactly_the_agreed_keys():
    s = simulate((48, 56, 56), seed=1, n_tubes=8)
    result = metrics.evaluate(s.raw, s.truth)
    assert tuple(result) == ("rmse", "ssim", "psnr", "isotropy_ratio",
                             "isotropy_ratio_subvoxel", "isotropy_fourier")
    assert all(isinstance(v, float) for v in result.values())
    assert 0 < result["ssim"] < 1 and result["rmse"] > 0


def test_evaluate_small_volume_reports_nan_isotropy(caplog):
    s = simulate((16, 40, 40), seed=2)
    with caplog.at_level("WARNING", logger="resin"):
        result = metrics.evaluate(s.raw, s.truth)
    assert math.isnan(result["isotropy_ratio"]) and math.isnan(result["isotropy_ratio_subvoxel"])
    assert math.isfinite(result["isotropy_fourier"]) and math.isfinite(result["ssim"])
    assert any("isotropy_ratio is undefined" in r.getMessage() for r in caplog.records)
    tiny = simulate((12, 12, 12), seed=2, n_tubes=3)
    assert math.isnan(metrics.evaluate(tiny.raw, tiny.truth)["isotropy_fourier"])


def test_missing_scikit_image_names_the_eval_extra(monkeypatch):
    import sys

    from resin.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "skimage.morphology", None)  # import now fails
    _, truth = _line_pair(3.0, 1.5)
    with pytest.raises(MissingDependencyError, match=r"resin\[eval\]"):
        metrics.skeleton_points(truth)


def test_fourier_metrics_leave_a_float64_volume_untouched(rng):
    from resin.metrics import cutoff_frequencies, isotropy_fourier

    vol = rng.random((32, 32, 32))
    before = vol.copy()
    isotropy_fourier(vol)
    cutoff_frequencies(vol)
    assert np.array_equal(vol, before)
