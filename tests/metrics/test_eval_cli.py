"""`resin eval`: table + JSON with exactly the agreed keys; bad input exits 2 with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error

from resin import metrics
from resin.io import write_volume
from resin.simulate import simulate


@pytest.fixture
def volumes(tmp_path):
    s = simulate((48, 56, 56), seed=3, n_tubes=8)
    raw, truth = tmp_path / "raw.tif", tmp_path / "truth.tif"
    write_volume(raw, s.raw)
    write_volume(truth, s.truth)
    return s, raw, truth


def test_eval_prints_table_and_writes_json(cli, volumes, tmp_path):
    s, raw, truth = volumes
    out = tmp_path / "m.json"
    proc = cli("resin", "eval", str(raw), str(truth), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    for key in metrics.KEYS:
        assert key in proc.stdout
    record = json.loads(out.read_text())
    assert list(record) == list(metrics.KEYS)
    want = metrics.evaluate(s.raw, s.truth)
    for key in metrics.KEYS:
        assert record[key] == pytest.approx(want[key], rel=1e-12)
    # an existing JSON is kept unless --overwrite
    again = cli("resin", "eval", str(raw), str(truth), "--json", str(out))
    assert "exists" in assert_one_line_error(again)
    ok = cli("resin", "eval", str(raw), str(truth), "--json", str(out), "--overwrite")
    assert ok.returncode == 0, ok.stderr


def test_eval_accepts_a_float_prediction_and_axial_axis(cli, volumes, tmp_path):
    s, _, truth = volumes
    pred = tmp_path / "pred.tif"
    write_volume(pred, s.raw.astype(np.float32) / 7.0)
    out = tmp_path / "m.json"
    proc = cli("resin", "eval", str(pred), str(truth), "--json", str(out), "--axial-axis", "x")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["rmse"] == pytest.approx(metrics.rmse(s.raw, s.truth), rel=1e-5)
    assert record["isotropy_ratio"] == pytest.approx(
        metrics.isotropy_ratio(s.raw, s.truth, axial_axis=2), rel=1e-12)


def test_eval_shape_mismatch_exit_2(cli, volumes, tmp_path):
    s, raw, _ = volumes
    other = tmp_path / "other.tif"
    write_volume(other, s.truth[:-2])
    assert "different shapes" in assert_one_line_error(cli("resin", "eval", str(raw), str(other)))


def test_eval_constant_volume_exit_2(cli, volumes, tmp_path):
    _, _, truth = volumes
    flat = tmp_path / "flat.tif"
    write_volume(flat, np.full((48, 56, 56), 7, dtype=np.uint16))
    assert "constant" in assert_one_line_error(cli("resin", "eval", str(flat), str(truth)))


def test_eval_nan_exit_2(cli, volumes, tmp_path):
    s, _, truth = volumes
    bad = s.raw.astype(np.float32)
    bad[20, 20, 20] = np.nan
    path = tmp_path / "nan.tif"
    write_volume(path, bad)
    assert "NaN" in assert_one_line_error(cli("resin", "eval", str(path), str(truth)))


def test_eval_missing_file_and_bad_axis_exit_2(cli, volumes, tmp_path):
    _, raw, truth = volumes
    assert_one_line_error(cli("resin", "eval", str(tmp_path / "nope.tif"), str(truth)))
    assert_one_line_error(cli("resin", "eval", str(raw), str(truth), "--axial-axis", "w"))


def test_eval_small_volume_writes_null_isotropy(cli, tmp_path):
    s = simulate((16, 32, 32), seed=1)
    raw, truth, out = tmp_path / "r.tif", tmp_path / "t.tif", tmp_path / "m.json"
    write_volume(raw, s.raw)
    write_volume(truth, s.truth)
    proc = cli("resin", "eval", str(raw), str(truth), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["isotropy_ratio"] is None and record["isotropy_ratio_subvoxel"] is None
    assert record["ssim"] == pytest.approx(metrics.ssim(s.raw, s.truth), rel=1e-12)
