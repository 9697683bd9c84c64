"""The Self-Net baseline (bench/selfnet.py) runs on a tiny volume: shape, dtype, determinism."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")

from resin.simulate import simulate  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "selfnet.py"


@pytest.fixture(scope="module")
def selfnet():
    spec = importlib.util.spec_from_file_location("bench_selfnet", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def sim():
    return simulate(shape=(32, 64, 64), seed=0)


def _quiet(_: str) -> None:
    pass


def test_budgeted_run_shape_dtype_finite(selfnet, sim):
    out = selfnet.selfnet_enhance(sim.raw, minutes=0.3, log=_quiet)
    assert out.shape == sim.raw.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    # the floor: nothing below the raw's low percentile (its background)
    assert out.min() >= np.percentile(sim.raw, 0.5) - 1e-3


def test_fixed_steps_are_deterministic(selfnet, sim):
    # one thread keeps the test quick on a busy shared CPU
    a = selfnet.selfnet_enhance(sim.raw, seed=3, steps=3, threads=1, log=_quiet)
    b = selfnet.selfnet_enhance(sim.raw, seed=3, steps=3, threads=1, log=_quiet)
    np.testing.assert_array_equal(a, b)


def test_z_step_interpolates(selfnet):
    sim = simulate(shape=(32, 64, 64), seed=1, z_step=2)
    out = selfnet.selfnet_enhance(sim.raw, z_step=2, steps=2, threads=1, log=_quiet)
    assert out.shape == ((sim.raw.shape[0] - 1) * 2 + 1, 64, 64)
    assert np.isfinite(out).all()


def test_degradation_fit_finds_the_axial_blur(selfnet):
    """The fitted blur grows with the axial sigma of the PSF, which it is never given."""
    from resin.config import NormalizationConfig
    from resin.data import compute_normalization

    sigmas = []
    for axial in (2.0, 4.0):
        raw = simulate(shape=(48, 96, 96), sigma=(1.0, axial), seed=0).raw
        vol = compute_normalization(raw.ravel(), NormalizationConfig()).apply(raw)
        noise = selfnet.estimate_noise(vol)
        deg, _ = selfnet.fit_degradation(vol, vol, 1, noise, seed=0)
        sigmas.append(deg.sigma)
    assert 0.5 < sigmas[0] < sigmas[1] < 6.0


def test_oblique_psf_is_not_supported(selfnet, sim):
    with pytest.raises(NotImplementedError):
        selfnet.selfnet_enhance(sim.raw, angle_deg=30.0, steps=1, threads=1, log=_quiet)
