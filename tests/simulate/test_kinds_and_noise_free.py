"""resin.simulate: the noise-free (paper) setting, the nuclei kind, and their CLI flags."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from conftest import assert_one_line_error

from resin.errors import UsageError
from resin.io import open_volume, read_volume
from resin.simulate import KIND_DEFAULTS, blur, render_nuclei, render_object, simulate

SHAPE = (32, 64, 64)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def test_default_tube_bytes_are_unchanged():
    # shipped models and figures were made from these bytes; a change here must be deliberate
    s = simulate((16, 32, 32), seed=7)
    assert (_sha(s.raw), _sha(s.truth)) == ("1c9359c1ae702943", "1dcfbd46ba574dca")
    s = simulate((17, 32, 32), seed=1, z_step=3, angle_deg=20.0)
    assert (_sha(s.raw), _sha(s.truth)) == ("fc6567c48911a9e7", "00b07dab19be67e5")
    assert s.kind == "tubes" and s.noise and s.labels is None


# --- noise-free: the RESIN paper's setting -------------------------------------------

@pytest.mark.parametrize("kind", ["tubes", "nuclei"])
def test_noise_free_raw_is_exactly_the_blurred_object(kind):
    s = simulate(SHAPE, seed=2, kind=kind, noise=False, depth_falloff=0.0)
    rng = np.random.default_rng(2)
    obj = render_nuclei(SHAPE, rng)[0] if kind == "nuclei" else render_object(SHAPE, rng)
    photons = np.float32(s.photons)
    want_raw = np.rint(blur(obj, s.psf_sigma_zyx)[:: s.z_step] * photons)
    assert np.array_equal(s.raw, want_raw.astype(np.uint16))
    assert np.array_equal(s.truth, np.rint(obj * photons).astype(np.uint16))
    assert (s.offset, s.background, s.read_noise) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("kind", ["tubes", "nuclei"])
def test_noise_free_raw_is_the_blurred_truth_up_to_rounding(kind):
    s = simulate(SHAPE, seed=4, kind=kind, noise=False)
    # truth and raw are each rounded once: the two sides differ by at most 1 count
    ref = blur(s.truth, s.psf_sigma_zyx)[:: s.z_step]
    assert np.abs(s.raw.astype(np.float64) - ref).max() <= 1.0
    # no noise: the same seed with more photons scales the raw, it does not redraw it
    hi = simulate(SHAPE, seed=4, kind=kind, noise=False, photons=10 * s.photons)
    assert np.abs(hi.raw.astype(np.float64) - 10 * s.raw).max() <= 5.5


def test_noise_free_tubes_leave_empty_space_at_zero():
    s = simulate(SHAPE, seed=0, noise=False)
    assert s.raw.min() == 0 and s.truth.min() == 0
    assert (s.truth == 0).mean() > 0.5  # the paper's setting: no background, no offset


def test_noise_free_applies_a_given_offset_and_background_to_both():
    plain = simulate(SHAPE, seed=1, noise=False)
    lifted = simulate(SHAPE, seed=1, noise=False, offset=100, background=5)
    assert np.abs(lifted.raw.astype(int) - plain.raw - 105).max() <= 1
    assert np.abs(lifted.truth.astype(int) - plain.truth - 105).max() <= 1


def test_noise_free_with_read_noise_is_a_usage_error():
    with pytest.raises(UsageError, match="read noise"):
        simulate(SHAPE, noise=False, read_noise=2.0)
    simulate((8, 16, 16), noise=False, read_noise=0.0)  # 0 is allowed


# --- nuclei -----------------------------------------------------------------------

def test_nuclei_deterministic_per_seed():
    a = simulate(SHAPE, kind="nuclei", seed=3)
    b = simulate(SHAPE, kind="nuclei", seed=3)
    c = simulate(SHAPE, kind="nuclei", seed=4)
    assert a.labels is not None and b.labels is not None
    assert np.array_equal(a.raw, b.raw) and np.array_equal(a.truth, b.truth)
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.truth, c.truth)


def test_nuclei_defaults_and_overrides():
    d = KIND_DEFAULTS["nuclei"]
    s = simulate((31, 64, 64), kind="nuclei", seed=0)
    assert s.kind == "nuclei" and s.z_step == d.z_step == 2
    assert s.psf_sigma_zyx == (d.sigma[1], d.sigma[0], d.sigma[0]) == (3.0, 1.2, 1.2)
    assert s.truth.shape == (31, 64, 64) and s.raw.shape == (math.ceil(31 / 2), 64, 64)
    assert s.raw.dtype == np.uint16 and s.truth.dtype == np.uint16
    assert s.labels is not None and s.labels.shape == s.truth.shape
    o = simulate((31, 64, 64), kind="nuclei", seed=0, sigma=(1.0, 2.0), z_step=1,
                 depth_falloff=0.0, photons=500.0)
    assert o.raw.shape == (31, 64, 64) and o.psf_sigma_zyx == (2.0, 1.0, 1.0)
    assert (o.depth_falloff, o.photons) == (0.0, 500.0)
    assert o.truth.max() < s.truth.max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nuclei_fill_a_quarter_to_two_fifths_of_the_volume(seed):
    s = simulate(SHAPE, kind="nuclei", seed=seed)
    assert s.labels is not None
    inside = s.labels > 0
    assert 0.25 <= inside.mean() <= 0.40
    # many separate nuclei of the stated size: 4-9 voxels semi-axes, ~250-3000 voxels each
    sizes = np.bincount(s.labels.ravel())[1:]
    assert s.labels.max() >= 40
    assert 250 < np.median(sizes) < 3000
    # nuclei stand out from the weak cytoplasm
    t = s.truth.astype(np.float64) - s.offset - s.background
    assert np.median(t[inside]) > 4 * np.median(t[~inside]) > 0


def test_nuclei_differ_in_brightness_and_have_texture():
    s = simulate(SHAPE, kind="nuclei", seed=5, depth_falloff=0.0)
    assert s.labels is not None
    t = s.truth.astype(np.float64)
    # the core of each nucleus, away from its soft edge
    n = int(s.labels.max())
    counts = np.bincount(s.labels.ravel(), minlength=n + 1)[1:]
    means = np.bincount(s.labels.ravel(), weights=t.ravel(), minlength=n + 1)[1:] / counts
    big = counts > 300
    assert means[big].std() / means[big].mean() > 0.15
    sq = np.bincount(s.labels.ravel(), weights=t.ravel() ** 2, minlength=n + 1)[1:] / counts
    within = np.sqrt(np.maximum(sq - means**2, 0))[big] / means[big]
    assert np.median(within) > 0.15


def test_nuclei_raw_is_blurred_more_along_z_than_laterally():
    s = simulate(SHAPE, kind="nuclei", seed=0, noise=False, z_step=1)

    def grad_ratio(v: np.ndarray) -> float:
        a = v.astype(np.float64)
        lateral = (np.mean(np.diff(a, axis=1) ** 2) + np.mean(np.diff(a, axis=2) ** 2)) / 2
        return float(np.mean(np.diff(a, axis=0) ** 2) / lateral)

    assert 0.8 < grad_ratio(s.truth) < 1.25  # the truth is isotropic
    assert grad_ratio(s.raw) < 0.6


def test_nuclei_count_can_be_set():
    s = simulate(SHAPE, kind="nuclei", seed=0, n_nuclei=5)
    assert s.labels is not None and s.labels.max() == 5
    assert np.count_nonzero(s.labels) / s.labels.size < 0.1


def test_nuclei_fall_off_with_depth():
    s = simulate(SHAPE, kind="nuclei", seed=6, noise=False, depth_falloff=0.5)
    flat = simulate(SHAPE, kind="nuclei", seed=6, noise=False, depth_falloff=0.0)
    ratio = s.truth[-1].astype(np.float64).sum() / flat.truth[-1].astype(np.float64).sum()
    assert ratio == pytest.approx(0.5, abs=0.01)
    assert np.array_equal(s.truth[0], flat.truth[0])


@pytest.mark.parametrize("kwargs", [dict(kind="spheres"), dict(kind="nuclei", n_tubes=3),
                                    dict(kind="nuclei", n_blobs=2), dict(n_nuclei=3),
                                    dict(kind="nuclei", n_nuclei=-1), dict(depth_falloff=1.0),
                                    dict(depth_falloff=-0.1)])
def test_bad_kind_parameters_raise_usage_error(kwargs):
    with pytest.raises(UsageError):
        simulate(**{"shape": SHAPE, **kwargs})


# --- CLI --------------------------------------------------------------------------

def test_cli_nuclei_noise_free_matches_the_library_and_records_the_setting(cli, tmp_path):
    raw, truth = tmp_path / "raw.tif", tmp_path / "truth.zarr"
    proc = cli("resin", "simulate", str(raw), "--truth", str(truth), "--kind", "nuclei",
               "--noise-free", "--shape", "16", "32", "32", "--seed", "5", "-q")
    assert proc.returncode == 0, proc.stderr
    ref = simulate((16, 32, 32), seed=5, kind="nuclei", noise=False)
    assert np.array_equal(read_volume(raw), ref.raw) and ref.raw.shape[0] == 8
    assert np.array_equal(read_volume(truth), ref.truth)
    with open_volume(raw) as r:
        rec = r.attrs["resin_simulate"]
        assert r.voxel_size[0] == pytest.approx(2.0)
    assert rec["kind"] == "nuclei" and rec["noise"] is False
    assert rec["z_step"] == 2 and rec["psf_sigma_zyx"] == [3.0, 1.2, 1.2]
    assert rec["offset"] == 0.0 and 0.25 <= rec["fill_fraction"] <= 0.4


def test_cli_overrides_reach_the_library(cli, tmp_path):
    raw = tmp_path / "raw.tif"
    proc = cli("resin", "simulate", str(raw), "--kind", "nuclei", "--shape", "16", "32", "32",
               "--sigma", "1", "2", "--z-step", "1", "--photons", "800", "--read-noise", "1",
               "--offset", "50", "--background", "3", "--depth-falloff", "0",
               "--nuclei", "4", "--seed", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    ref = simulate((16, 32, 32), kind="nuclei", sigma=(1.0, 2.0), z_step=1, photons=800.0,
                   read_noise=1.0, offset=50.0, background=3.0, depth_falloff=0.0,
                   n_nuclei=4, seed=2)
    assert np.array_equal(read_volume(raw), ref.raw)
    with open_volume(raw) as r:
        rec = r.attrs["resin_simulate"]
    assert rec["kind"] == "nuclei" and rec["noise"] is True and rec["n_nuclei"] == 4


def test_cli_default_kind_is_tubes_with_noise(cli, tmp_path):
    raw = tmp_path / "raw.tif"
    proc = cli("resin", "simulate", str(raw), "--shape", "16", "32", "32", "--seed", "7", "-q")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(read_volume(raw), simulate((16, 32, 32), seed=7).raw)
    with open_volume(raw) as r:
        rec = r.attrs["resin_simulate"]
    assert rec["kind"] == "tubes" and rec["noise"] is True and "fill_fraction" not in rec


@pytest.mark.parametrize("args", [("--kind", "spheres"), ("--depth-falloff", "1"),
                                  ("--depth-falloff", "-0.5"), ("--nuclei", "-2"),
                                  ("--noise-free", "--read-noise", "2"),
                                  ("--kind", "nuclei", "--tubes", "3"),
                                  ("--nuclei", "3")])
def test_cli_bad_kind_and_noise_arguments_exit_2(cli, tmp_path, args):
    proc = cli("resin", "simulate", str(tmp_path / "raw.tif"), "--shape", "16", "32", "32",
               *args)
    assert_one_line_error(proc)
