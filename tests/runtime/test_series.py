"""`resin-run --time all` (``Enhancer.run_series``): every time point of a series into its
own output, each the bytes of a single-time-point run; everything checked before the first
output exists; an interrupted series resumes, keeping the outputs it finished."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr
from conftest import assert_one_line_error
from resin.runtime import Enhancer

from resin.io import read_volume

TILE = ("--tile", "8", "16", "16")


@pytest.fixture
def series(tmp_path, rng):
    """A 3-time-point ImageJ TZYX stack and its data."""
    data = rng.integers(0, 4000, size=(3, 16, 20, 24)).astype(np.uint16)
    data[1] //= 3  # time points differ in level, so their normalizations differ
    path = tmp_path / "series.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZYX"})
    return path, data


def _singles(model, data):
    with Enhancer(model, device="cpu", tile=(8, 16, 16)) as enh:
        return [enh.enhance(v) for v in data]


def test_every_time_point_gives_the_bytes_of_its_own_run(cli, fast_model, series):
    path, data = series
    proc = cli("resin-run", "--engine", str(fast_model), str(path), "--time", "all",
               "--device", "cpu", *TILE, "--mip", str(path.parent / "mips"))
    assert proc.returncode == 0, proc.stderr
    assert "time point 2 (3 of 3)" in proc.stderr and "enhanced 3 time points" in proc.stderr
    assert "2 time points enhanced, 1 to go: about" in proc.stderr
    for t, want in enumerate(_singles(fast_model, data)):
        out = path.parent / f"series_t{t}_resin.ome.zarr"
        np.testing.assert_array_equal(read_volume(out), want)
        assert dict(zarr.open_group(out, mode="r").attrs["resin"])["input_time"] == t
        mip = tifffile.imread(path.parent / "mips" / f"series_t{t}_resin_mip_z.tif")
        np.testing.assert_array_equal(mip, want.max(axis=0))


def test_output_pattern_and_reports(cli, fast_model, series):
    path, data = series
    pattern = str(path.parent / "out" / "t{t}.zarr")
    proc = cli("resin-run", "--engine", str(fast_model), str(path), "--time", "all", "-o",
               pattern, "--device", "cpu", *TILE, "--report")
    assert proc.returncode == 0, proc.stderr
    for t, want in enumerate(_singles(fast_model, data)):
        np.testing.assert_array_equal(read_volume(path.parent / "out" / f"t{t}.zarr"), want)
    single = path.parent / "single.zarr"  # each report is the one a run of its time point gives
    proc = cli("resin-run", "--engine", str(fast_model), str(path), "--time", "1", "-o",
               str(single), "--device", "cpu", *TILE, "--report")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((path.parent / "out" / "t1.zarr.report.json").read_text())
    assert report == json.loads((path.parent / "single.zarr.report.json").read_text())
    assert report != json.loads((path.parent / "out" / "t0.zarr.report.json").read_text())


def test_an_output_without_the_time_field_is_one_line(cli, fast_model, series):
    path, _ = series
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--device", "cpu"))
    assert "--time T (0 to 2), or every one with --time all" in line
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "all", "-o", str(path.parent / "o.zarr"),
                                     "--device", "cpu"))
    assert "{t}" in line
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "every", "--device", "cpu"))
    assert "or all" in line
    assert not list(path.parent.glob("*.zarr"))


def test_an_existing_output_is_refused_before_any_time_point_runs(cli, fast_model, series):
    path, _ = series
    (path.parent / "series_t2_resin.ome.zarr").mkdir()  # the last one is in the way
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "all", "--device", "cpu", *TILE))
    assert "series_t2_resin.ome.zarr exists" in line
    assert not (path.parent / "series_t0_resin.ome.zarr").exists()


def test_mips_of_outputs_with_one_name_are_refused(cli, fast_model, series):
    path, _ = series
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "all", "-o", str(path.parent / "{t}" / "o.zarr"),
                                     "--mip", str(path.parent / "mips"), "--device", "cpu"))
    assert "would both write o_mip_z.tif" in line
    assert not list(path.parent.glob("*/o.zarr"))


class _Stop(Exception):
    pass


def test_an_interrupted_series_resumes_keeping_the_finished_outputs(cli, fast_model, series):
    path, data = series
    pattern = str(path.parent / "o_t{t}.zarr")
    runs = set()

    def stop(p):  # all of time point 0, then part of time point 1
        runs.add(p.started)
        if len(runs) == 2 and p.blocks_done >= 1:
            raise _Stop

    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(8, 20, 24)) as enh:
        with pytest.raises(_Stop):
            enh.run_series(path, pattern, progress=stop)
    first = path.parent / "o_t0.zarr"
    assert first.exists() and (path.parent / "o_t1.zarr.partial").exists()
    stamp = (first / "zarr.json").stat().st_mtime_ns
    args = ["resin-run", "--engine", str(fast_model), str(path), "--time", "all", "-o",
            pattern, "--device", "cpu", *TILE, "--block", "8", "20", "24"]
    line = assert_one_line_error(cli(*args))  # without --resume nothing is replaced
    assert "--resume" in line
    proc = cli(*args, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "o_t0.zarr is complete; kept" in proc.stderr
    assert (first / "zarr.json").stat().st_mtime_ns == stamp
    for t, want in enumerate(_singles(fast_model, data)):
        np.testing.assert_array_equal(read_volume(path.parent / f"o_t{t}.zarr"), want)


def test_resume_does_not_keep_an_output_another_run_wrote(cli, fast_model, series, tmp_path):
    path, data = series
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, data, imagej=True, metadata={"axes": "TZYX"})
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        enh.run(other, tmp_path / "o_t0.zarr", time=0)  # same data, another input file
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--time", "all", "-o", str(tmp_path / "o_t{t}.zarr"),
                                     "--device", "cpu", *TILE, "--resume"))
    assert "o_t0.zarr is complete but was not written by this run (input differ)" in line


def test_a_plain_volume_is_its_own_series(fast_model, tmp_path, rng):
    data = rng.integers(0, 4000, size=(16, 20, 24)).astype(np.uint16)
    src = tmp_path / "vol.tif"
    tifffile.imwrite(src, data)
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        reports = enh.run_series(src)
        assert [r.output for r in reports] == [str(tmp_path / "vol_resin.ome.zarr")]
        np.testing.assert_array_equal(read_volume(reports[0].output), enh.enhance(data))
