"""D's noise: the Poisson-Gaussian model measured from the raw volume and added to D's outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from resin.simulate import simulate
from resin.train.noise import NoiseModel, estimate_noise, interpolation_scale

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import tiny_config  # noqa: E402


def _smooth_volume(rng, shape=(48, 64, 64)) -> np.ndarray:
    """A smooth positive signal in [0.05, 0.95] (no structure at the voxel scale)."""
    from scipy import ndimage

    v = ndimage.gaussian_filter(rng.random(shape), 4.0)
    v = (v - v.min()) / np.ptp(v)
    return 0.05 + 0.9 * v


@pytest.mark.parametrize("gain,floor", [(2e-3, 1e-4), (0.0, 4e-4), (5e-3, 0.0)])
def test_estimate_recovers_a_poisson_gaussian_model(rng, gain, floor):
    clean = _smooth_volume(rng)
    noisy = clean + rng.normal(size=clean.shape) * np.sqrt(gain * clean + floor)
    est = estimate_noise([noisy])
    for mean in (0.3, 0.5, 0.9):  # the bulk of the signal; sparse extremes scatter more
        truth = gain * mean + floor
        assert float(est.variance(np.float64(mean))) == pytest.approx(truth, rel=0.15)


def test_a_noise_free_volume_measures_nearly_silent(rng):
    est = estimate_noise([_smooth_volume(rng)])
    assert float(est.variance(np.float64(1.0))) < 1e-5  # sigma < 0.3 % of the range


def test_sharp_lateral_structure_does_not_count_as_noise():
    """Tubes with the 45-degree PSF: sharp along some grid axes, blurred along none exactly;
    the smallest direction's figure stays near the simulated noise."""
    sim = simulate((48, 64, 64), angle_deg=45.0, seed=3)
    raw = sim.raw.astype(np.float64)
    lo, hi = np.percentile(raw, [0.5, 99.9])
    est = estimate_noise([(raw - lo) / (hi - lo)])
    s = hi - lo
    # shot noise in normalized units: variance (counts above the offset) / s^2
    true_gain = 1.0 / s
    assert 0.7 * true_gain < est.gain < 1.6 * true_gain


def test_interpolated_planes_carry_less_noise():
    assert interpolation_scale(1) == 1.0
    assert interpolation_scale(2) == pytest.approx(0.75)  # planes at t = 0 and 1/2
    assert interpolation_scale(3) == pytest.approx((1 + 5 / 9 + 5 / 9) / 3)
    assert estimate_noise([], z_step=2).scale == pytest.approx(0.75)


def test_model_round_trips_through_its_record():
    m = NoiseModel(1e-3, 2e-5, 0.75)
    assert NoiseModel(**m.record()) == m
    assert NoiseModel().silent and not m.silent


def test_degraded_patches_carry_the_raw_noise(rng):
    """D's fakes must look like raw patches noise and all: the rotational-equivariance
    discriminator would otherwise tell them apart by their missing noise."""
    torch = pytest.importorskip("torch")
    from resin.train.trainer import Trainer

    tr = Trainer(tiny_config(degrader={"init_sigma": 2.0, "kernel_size": 13}))
    tr.nets.D.reset_to_gaussian(2.0, (1.0, 0.0, 0.0))
    flat = torch.full((1, 1, 16, 32, 32), 0.5)
    with torch.no_grad():
        assert torch.equal(tr._noisy(tr.nets.D(flat)), tr.nets.D(flat))  # silent by default
        tr.noise = NoiseModel(2e-3, 1e-4)
        out = tr._noisy(tr.nets.D(flat))
    kept = float((tr.nets.D.blur_kernel().detach() ** 2).sum())
    want = (2e-3 * 0.5 + 1e-4) * (1.0 - kept)
    assert float(out.var()) == pytest.approx(want, rel=0.1)
    assert float(out.mean()) == pytest.approx(0.5, abs=0.01)


def test_training_records_the_measured_noise(tmp_path, tiny_volume):
    pytest.importorskip("torch")
    import tifffile

    from resin.checkpoint import load_checkpoint
    from resin.train import train

    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, tiny_volume)
    train(raw, tmp_path / "m.pt", tiny_config(degrader={"noise": "measured"}), device="cpu",
          previews=False, stop_after=1)
    state = load_checkpoint(tmp_path / "m.last.pt")
    assert state["noise"]["gain"] > 0 or state["noise"]["floor"] > 0
    off = tmp_path / "off"
    off.mkdir()
    train(raw, off / "m.pt", tiny_config(), device="cpu", previews=False, stop_after=1)
    assert NoiseModel(**load_checkpoint(off / "m.last.pt")["noise"]).silent  # the default


def test_training_says_how_noisy_the_raw_volume_is_and_warns_when_noise_limits_it(
        tmp_path, caplog):
    """The start of a run gives the raw volume's signal-to-noise, and a warning only where
    it is low (150 photons at the brightest voxel: ~8; 3000: ~30)."""
    pytest.importorskip("torch")
    import logging

    from resin.io import write_volume
    from resin.train import train

    caplog.set_level(logging.INFO, logger="resin")
    said = {}
    for photons in (150.0, 3000.0):
        raw = tmp_path / f"raw{photons:.0f}.tif"
        write_volume(raw, simulate(shape=(32, 64, 64), seed=1, photons=photons).raw)
        caplog.clear()
        train(raw, tmp_path / f"m{photons:.0f}.pt", tiny_config(), device="cpu",
              previews=False, stop_after=1)
        said[photons] = caplog.text
    snr = {p: float(text.split("signal-to-noise about ")[1].split(")")[0])
           for p, text in said.items()}
    assert snr[150.0] < 15 < snr[3000.0]
    assert "noise-limited" in said[150.0] and "noise-limited" not in said[3000.0]
