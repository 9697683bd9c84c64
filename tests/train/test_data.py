from __future__ import annotations

import numpy as np
import pytest
import tifffile

from resin.config import DataConfig, NormalizationConfig
from resin.data import Normalization, PatchSampler, compute_normalization, volume_sample
from resin.errors import VolumeError
from resin.io import open_volume


def _sampler(path, **data) -> PatchSampler:
    reader = open_volume(path)
    cfg = DataConfig(**{"patch_size": (8, 8, 8), "foreground_tries": 2, **data})
    sample = volume_sample(reader, cfg.percentile_sample_voxels)
    norm = compute_normalization(sample, NormalizationConfig())
    return PatchSampler(reader, cfg, norm, foreground_level=0.0, seed=3)


def test_normalization_is_global_percentiles(rng):
    x = rng.random(10_000).astype(np.float32) * 100
    n = compute_normalization(x, NormalizationConfig(low_percentile=1, high_percentile=99))
    lo, hi = np.percentile(x, [1, 99])
    assert (n.low, n.high) == pytest.approx((lo, hi))
    np.testing.assert_allclose(n.apply(x), (x - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n.invert(n.apply(x)), x, rtol=1e-4, atol=1e-3)


def test_constant_volume_is_refused():
    with pytest.raises(VolumeError, match="empty or constant"):
        compute_normalization(np.full(1000, 7.0, np.float32), NormalizationConfig())


def test_patches_use_the_global_normalization_not_per_patch(tmp_path, tiny_volume):
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, tiny_volume)
    s = _sampler(path, augment=False)
    patch = s.read_patch((2, 3, 4))
    expected = s.norm.apply(tiny_volume[2:10, 3:11, 4:12])
    np.testing.assert_array_equal(patch, expected)


def test_z_step_interpolates_linearly(tmp_path):
    vol = np.repeat(np.arange(10, dtype=np.float32)[:, None, None] * 10, 8, 1).repeat(8, 2)
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, vol)
    s = _sampler(path, z_step=3, augment=False)
    assert s.shape == (28, 8, 8)
    s_id = Normalization(0, 100, 0.0, 1.0)
    s.norm = s_id
    patch = s.read_patch((4, 0, 0))
    np.testing.assert_allclose(patch[:, 0, 0], (4 + np.arange(8)) / 3 * 10, rtol=1e-6)


def test_volume_smaller_than_patch_is_refused(tmp_path, tiny_volume):
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, tiny_volume)
    with pytest.raises(VolumeError, match="smaller than the training patch"):
        _sampler(path, patch_size=(32, 32, 32))


def test_sampler_state_round_trip(tmp_path, tiny_volume):
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, tiny_volume)
    s = _sampler(path)
    state = s.state()
    first = s.batch()
    s.set_state(state)
    np.testing.assert_array_equal(s.batch(), first)


def test_oblique_augmentation_keeps_the_psf_axis(tmp_path, rng):
    """Every oblique augmentation maps a line along (1, 0, 1) onto a line along (1, 0, 1)."""
    vol = rng.integers(0, 10, size=(8, 8, 8)).astype(np.uint16)
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, vol)
    reader = open_volume(path)
    s = PatchSampler(reader, DataConfig(patch_size=(8, 8, 8)), Normalization(0, 100, 0, 1), 0.0,
                     angle_deg=45.0, seed=0)
    line = np.zeros((8, 8, 8), np.float32)
    for i in range(8):
        line[i, 3, i] = 1
    for _ in range(20):
        out = s.augment(line)
        z, _, x = np.nonzero(out)
        assert np.all(z == x)


def test_foreground_filter_prefers_bright_patches(tmp_path, rng):
    vol = rng.poisson(10, size=(16, 64, 64)).astype(np.uint16)
    vol[4:12, 40:48, 40:48] += 1000
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, vol)
    reader = open_volume(path)
    cfg = DataConfig(patch_size=(8, 8, 8), foreground_tries=200, augment=False)
    norm = compute_normalization(vol.ravel().astype(np.float32), NormalizationConfig())
    s = PatchSampler(reader, cfg, norm, foreground_level=0.5, seed=1, holdout=False)
    assert all(s.sample().max() > 0.5 for _ in range(5))
