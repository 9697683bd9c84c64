"""Global percentile levels: exact on small volumes, close on sampled ones, NaN refused."""

from __future__ import annotations

import numpy as np
import pytest
from resin.runtime import normalize
from resin.runtime.normalize import normalize_tile, sample_levels

from resin.errors import VolumeError


def _reader(vol):
    return lambda region: vol[region]


def test_small_volume_levels_are_exact(tiny_volume):
    lv = sample_levels(_reader(tiny_volume), tiny_volume.shape, 0.5, 99.9)
    lo, hi = np.percentile(tiny_volume.astype(np.float64), [0.5, 99.9])
    assert lv.low == pytest.approx(lo) and lv.high == pytest.approx(hi)
    assert lv.samples == tiny_volume.size


def test_sampled_levels_close_to_exact(rng, monkeypatch):
    monkeypatch.setattr(normalize, "MAX_PLANES", 8)
    monkeypatch.setattr(normalize, "MAX_SAMPLES", 20_000)
    vol = rng.gamma(2.0, 300.0, size=(40, 64, 64)).astype(np.float32)
    reads = []

    def read(region):
        reads.append(region)
        return vol[region]

    lv = sample_levels(read, vol.shape, 1.0, 99.0)
    lo, hi = np.percentile(vol, [1.0, 99.0])
    assert lv.samples <= 20_000 and len(reads) == 8
    assert all(r[0].stop - r[0].start == 1 for r in reads)  # one plane at a time
    assert abs(lv.low - lo) / (hi - lo) < 0.02 and abs(lv.high - hi) / (hi - lo) < 0.02
    again = sample_levels(read, vol.shape, 1.0, 99.0)
    assert again == lv  # deterministic: a resumed run normalizes identically


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
