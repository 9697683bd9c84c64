from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skimage_metrics = pytest.importorskip("skimage.metrics")

from resin.losses import cosine_factor, cycle_loss, lsgan, ssim3d  # noqa: E402


@pytest.mark.parametrize("shape", [(16, 20, 24), (11, 13, 12)])
def test_ssim3d_matches_skimage(rng, shape):
    a = rng.random(shape).astype(np.float32)
    b = np.clip(a + 0.3 * rng.standard_normal(shape), 0, 1).astype(np.float32)
    ref = skimage_metrics.structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    got = ssim3d(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])
    assert float(got) == pytest.approx(ref, abs=1e-5)


def test_ssim3d_identical_is_one(rng):
    a = torch.from_numpy(rng.random((1, 1, 12, 12, 12)).astype(np.float32))
    assert float(ssim3d(a, a)) == pytest.approx(1.0, abs=1e-6)


def test_cycle_loss_is_weighted_l1_plus_ssim(rng):
    a = torch.from_numpy(rng.random((1, 1, 12, 14, 16)).astype(np.float32))
    b = torch.from_numpy(rng.random((1, 1, 12, 14, 16)).astype(np.float32))
    l1 = float((a - b).abs().mean())
    s = float(ssim3d(a, b))
    assert float(cycle_loss(a, b)) == pytest.approx(10 * l1 + (1 - s), rel=1e-6)
    assert float(cycle_loss(a, b, 2.0, 0.0)) == pytest.approx(2 * l1, rel=1e-6)


def test_lsgan_targets():
    s = torch.tensor([0.0, 1.0, 2.0])
    assert float(lsgan(s, real=True)) == pytest.approx((1 + 0 + 1) / 3)
    assert float(lsgan(s, real=False)) == pytest.approx((0 + 1 + 4) / 3)


def test_cosine_factor_endpoints():
    assert cosine_factor(0, 100, 0.01) == pytest.approx(1.0)
    assert cosine_factor(100, 100, 0.01) == pytest.approx(0.01)
    assert cosine_factor(50, 100, 0.0) == pytest.approx(0.5)
    assert math.isclose(cosine_factor(200, 100, 0.1), 0.1)
