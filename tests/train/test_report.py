"""The ground-truth-free report (resin.report): anisotropy per axis pair, consistency, identity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from resin.report import IDENTITY_CHANGE, INCONSISTENT_RESIDUAL, make_report, write_report

ndimage = pytest.importorskip("scipy.ndimage")


def _volume(rng, sigma_zyx=(3.0, 1.0, 1.0), shape=(48, 48, 48)) -> np.ndarray:
    v = ndimage.gaussian_filter(rng.random(shape).astype(np.float32) ** 8, sigma_zyx)
    return (v / v.max()).astype(np.float32)


def test_anisotropy_ratios_follow_the_blur(rng):
    base = rng.random((48, 48, 48)).astype(np.float32) ** 8
    raw = ndimage.gaussian_filter(base, (3.0, 1.0, 1.0))
    iso = ndimage.gaussian_filter(base, (1.0, 1.0, 1.0))
    rep = make_report(raw, iso, degraded=raw)
    before, after = rep.ratios("before"), rep.ratios("after")
    assert before["y/z"] > 1.8 and before["x/z"] > 1.8           # blurred 3x along z
    assert abs(after["y/z"] - 1) < 0.2 and abs(after["x/z"] - 1) < 0.2
    assert rep.residual == 0.0 and not rep.notes


def test_identity_model_is_flagged(rng):
    raw = _volume(rng)
    rep = make_report(raw, raw * 1.001)
    assert rep.change < IDENTITY_CHANGE
    assert any("identity" in n for n in rep.notes)
    assert any("identity" in line for line in rep.lines())


def test_a_model_that_hardly_restores_is_flagged(rng):
    """A model that changes the volume (here: smooths it laterally) but leaves its axial
    blur gets a warning; one that closes most of the anisotropy does not."""
    base = rng.random((48, 48, 48)).astype(np.float32) ** 8
    raw = ndimage.gaussian_filter(base, (3.0, 1.0, 1.0))
    little = ndimage.gaussian_filter(base, (2.9, 1.0, 1.0)) * 1.05
    rep = make_report(raw, little)
    assert rep.change >= IDENTITY_CHANGE
    assert any("hardly more isotropic" in n for n in rep.notes)
    good = make_report(raw, ndimage.gaussian_filter(base, (1.5, 1.0, 1.0)))
    assert not any("isotropic" in n for n in good.notes)


def test_an_output_much_sharper_along_z_than_across_is_flagged(rng):
    """Sharper along z than across by 2x (lateral / axial cut-off ~0.5) is the over-sharpening
    seen on noise-limited data; a restored output (~1) and a mild overshoot (~0.8) are not."""
    base = rng.random((48, 48, 48)).astype(np.float32) ** 8
    raw = ndimage.gaussian_filter(base, (3.0, 1.0, 1.0))
    over = make_report(raw, ndimage.gaussian_filter(base, (0.5, 1.0, 1.0)))
    assert 0.5 * (over.ratios("after")["y/z"] + over.ratios("after")["x/z"]) < 0.65
    assert any("much sharper along z than across" in n for n in over.notes)
    for sigma_z in (1.0, 0.8):
        fine = make_report(raw, ndimage.gaussian_filter(base, (sigma_z, 1.0, 1.0)))
        assert 0.5 * (fine.ratios("after")["y/z"] + fine.ratios("after")["x/z"]) > 0.65
        assert not any("sharper along z" in n for n in fine.notes)


def test_an_output_that_explains_nothing_has_a_large_residual(rng):
    raw = _volume(rng)
    rep = make_report(raw, raw, degraded=np.roll(raw, 7, axis=2))
    assert rep.residual > 0.01


def test_an_output_that_does_not_explain_its_input_is_a_warning(rng):
    # a model applied to data unlike its training data: F(y) many times too bright, D(F(y))
    # far from y (the bundled tubes model on dense nuclei: mean residual 1.06)
    raw = _volume(rng)
    consistent = make_report(raw, raw * 2, degraded=raw + 0.004)
    assert not any("does not explain" in n for n in consistent.notes)
    rep = make_report(raw, raw * 20, degraded=raw * 5)
    assert rep.residual > INCONSISTENT_RESIDUAL
    assert any("does not explain the input" in line and "resin train" in line
               for line in rep.lines())


def test_written_report_has_json_and_picture(rng, tmp_path):
    raw = _volume(rng)
    rep = make_report(raw, raw, degraded=raw + 0.01)
    files = write_report(tmp_path / "model", rep, raw, raw + 0.01)
    assert [f.name for f in files] == ["model.report.json", "model.report.png"]
    data = json.loads(files[0].read_text())
    assert set(data["ratios_before"]) == {"y/z", "x/z", "y/x"}
    assert files[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shapes_must_agree(rng):
    with pytest.raises(ValueError):
        make_report(np.zeros((16, 16, 16)), np.zeros((16, 16, 17)))


def _tubes(shape=(32, 48, 48), along_z=True) -> np.ndarray:
    """Thin tubes along y and x, and (``along_z``) one along z, on zeros."""
    base = np.zeros(shape, np.float32)
    base[16, 30, 4:44] = 1.0   # along x
    base[10, 4:44, 38] = 1.0   # along y
    if along_z:
        base[4:28, 12, 12] = 1.0
    return base


def _normalized(raw: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    lo, hi = np.percentile(raw, [0.5, 99.9])
    return [(v - lo) / (hi - lo) for v in (raw, *others)]


def test_the_report_warns_when_the_output_lost_a_structure_along_z():
    """A tube running along z looks like blur: an output without it dims the input's MIP
    along z there, which the report counts and warns about; a restoration that keeps it
    (sharper along z, every MIP pixel as bright or brighter) reads 0."""
    from resin.report import LOST_LATERAL

    raw = ndimage.gaussian_filter(_tubes(), (5.0, 1.0, 1.0))
    kept = ndimage.gaussian_filter(_tubes(), 1.0)
    lost = ndimage.gaussian_filter(_tubes(along_z=False), 1.0)
    raw, kept, lost = _normalized(raw, kept, lost)
    good = make_report(raw, kept)
    assert good.lateral_lost == 0.0 and not any("lost structure" in n for n in good.notes)
    assert not good.retry
    bad = make_report(raw, lost)
    assert bad.lateral_lost > LOST_LATERAL and bad.retry  # another seed may fix it
    assert any("lost structure" in n and "--seed" in n for n in bad.notes)
    assert any(line.startswith("structure kept: ") for line in bad.lines())
    assert json.loads(bad.to_json())["lateral_lost"] == pytest.approx(bad.lateral_lost)
    from resin.report import lateral_lost

    assert lateral_lost(np.zeros((16, 16, 16)), np.zeros((16, 16, 16))) is None


def test_structure_lost_is_measured_along_a_tilted_psf_axis():
    """Blur tilted 45 degrees widens a tube in the MIP along z, so a restoration dims the
    flanks there; along the PSF's own axis it keeps every bright pixel."""
    from resin.report import LOST_LATERAL, lateral_lost
    from resin.simulate import gaussian_psf

    base = _tubes(shape=(40, 48, 48), along_z=False)
    raw = ndimage.convolve(base, gaussian_psf((5.0, 1.0, 1.0), 45.0), mode="constant")
    restored = ndimage.gaussian_filter(base, 1.0)
    raw, restored = _normalized(raw, restored)
    assert lateral_lost(raw, restored, 45.0) == 0.0
    assert lateral_lost(raw, restored, 0.0) > LOST_LATERAL
    assert make_report(raw, restored, angle_deg=45.0).lateral_lost == 0.0


def test_resin_run_reports_structure_along_the_axis_its_output_records(tmp_path):
    """``resin-run --report`` reads the input and output files: the PSF axis is the one the
    output's attributes record (``axial_angle_deg``), as the model had it."""
    from resin.io import open_volume, write_volume
    from resin.report import LOST_LATERAL, report_on_readers
    from resin.simulate import gaussian_psf

    base = _tubes(shape=(40, 48, 48), along_z=False)
    raw = ndimage.convolve(base, gaussian_psf((5.0, 1.0, 1.0), 45.0), mode="constant")
    write_volume(tmp_path / "raw.tif", 1000 * raw)
    restored = 1000 * ndimage.gaussian_filter(base, 1.0)
    for angle, name in ((45.0, "tilted.tif"), (0.0, "axial.tif"), (float("nan"), "bad.tif")):
        write_volume(tmp_path / name, restored, attrs={"axial_angle_deg": angle})
    with open_volume(tmp_path / "raw.tif") as src, open_volume(tmp_path / "tilted.tif") as dst:
        assert report_on_readers(src, dst).lateral_lost == 0.0
    for name in ("axial.tif", "bad.tif"):  # a corrupt angle is taken as along z
        with open_volume(tmp_path / "raw.tif") as src, open_volume(tmp_path / name) as dst:
            assert report_on_readers(src, dst).lateral_lost > LOST_LATERAL


def test_report_picture_shows_the_output_between_input_and_residual():
    """The PNG's middle panel is the output's MIP on the input's scale: a structure the
    model removed is visible as missing there."""
    from resin.report import report_image

    raw = ndimage.gaussian_filter(_tubes(), (5.0, 1.0, 1.0))
    lost = ndimage.gaussian_filter(_tubes(along_z=False), 1.0)
    raw, lost = _normalized(raw, lost)
    picture = report_image(raw, np.abs(raw - raw), enhanced=lost)
    assert picture.shape == (48, 3 * 48 + 2 * 4)
    left, middle = picture[:, :48], picture[:, 52:100]
    assert left[12, 12] > 100 and middle[12, 12] < 10     # the tube along z: gone
    assert middle[30, 20] >= left[30, 20]                 # the tube along x: kept
    assert report_image(raw, raw).shape == (48, 2 * 48 + 4)
