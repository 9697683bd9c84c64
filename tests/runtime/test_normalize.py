"""Global percentile levels: exact on small volumes, close on sampled ones, NaN refused."""

from __future__ import annotations

import numpy as np
import pytest
from resin.runtime.normalize import normalize_tile, sample_levels

from resin.errors import VolumeError


def _reader(vol):
    return lambda region: vol[region]


def test_small_volume_levels_are_exact(tiny_volume):
    lv = sample_levels(_reader(tiny_volume), tiny_volume.shape, 0.5, 99.9)
    lo, hi = np.percentile(tiny_volume.astype(np.float64), [0.5, 99.9])
    assert lv.low == pytest.approx(lo) and lv.high == pytest.approx(hi)
    assert lv.samples == tiny_volume.size


def test_sampled_levels_close_to_exact(rng):
    vol = rng.gamma(2.0, 300.0, size=(40, 200, 200)).astype(np.float32)
    reads = []

    def read(region):
        reads.append(region)
        return vol[region]

    lv = sample_levels(read, vol.shape, 1.0, 99.0, max_voxels=400_000)
    lo, hi = np.percentile(vol, [1.0, 99.0])
    assert lv.samples <= 400_000 and len(reads) > 1
    # bounded blocks, never whole planes: memory stays flat however wide the volume is
    assert all(r[1].stop - r[1].start <= 64 and r[2].stop - r[2].start <= 64 for r in reads)
    assert abs(lv.low - lo) / (hi - lo) < 0.02 and abs(lv.high - hi) / (hi - lo) < 0.02
    again = sample_levels(read, vol.shape, 1.0, 99.0, max_voxels=400_000)
    assert again == lv  # deterministic: a resumed run normalizes identically


def test_runtime_levels_are_the_training_normalization(rng):
    """One levels rule for training and inference, sparse data (percentiles equal) included."""
    from resin.config import DataConfig, NormalizationConfig
    from resin.data import SAMPLE_VOXELS, compute_normalization, volume_sample

    assert DataConfig().percentile_sample_voxels == SAMPLE_VOXELS
    vol = np.zeros((20, 40, 40), np.uint16)
    vol[5, 10:12, 10:12] = 900  # 0.03 % bright: p99.8 is still background
    cfg = NormalizationConfig(low_percentile=0.5, high_percentile=99.8)

    class Reader:
        shape, path = vol.shape, "v"

        def read(self, region=None):
            return vol if region is None else vol[region]

    train = compute_normalization(volume_sample(Reader()), cfg)
    lv = sample_levels(lambda r: vol[r], vol.shape, 0.5, 99.8)
    assert (lv.low, lv.high) == (train.low, train.high) == (0.0, 900.0)


def test_nan_and_empty_are_volume_errors():
    vol = np.ones((4, 5, 6), np.float32)
    vol[2, 1, 1] = np.nan
    with pytest.raises(VolumeError, match="NaN"):
        sample_levels(_reader(vol), vol.shape, 1, 99)
    with pytest.raises(VolumeError, match="NaN"):
        normalize_tile(vol, sample_levels(_reader(np.ones((2, 2, 2))), (2, 2, 2), 1, 99))
    with pytest.raises(VolumeError, match="empty"):
        sample_levels(_reader(vol), (0, 5, 6), 1, 99)


def test_constant_volume_stays_finite():
    vol = np.full((3, 4, 4), 7, np.uint16)
    lv = sample_levels(_reader(vol), vol.shape, 1, 99)
    assert lv.high > lv.low
    assert np.isfinite(normalize_tile(vol, lv)).all()


def test_normalize_tile_formula(tiny_volume):
    lv = sample_levels(_reader(tiny_volume), tiny_volume.shape, 2, 98)
    ref = (tiny_volume.astype(np.float64) - lv.low) / (lv.high - lv.low)
    np.testing.assert_allclose(normalize_tile(tiny_volume, lv), ref, rtol=1e-5, atol=1e-6)


def test_levels_never_touch_the_callers_volume(rng):
    """The percentiles reorder their sample in place; the sample must never be the input."""
    vol = rng.integers(0, 4000, size=(8, 20, 20)).astype(np.uint16)
    before = vol.copy()
    sample_levels(lambda r: vol[r], vol.shape, 1.0, 99.0)
    np.testing.assert_array_equal(vol, before)
