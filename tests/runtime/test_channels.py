"""`resin-run --channel` / `--time` (``Enhancer.run(channel=, time=)``): one channel or time
point of a file with several gives the bytes of that volume on its own, with the choice in
the name, attributes, run record and report; without a choice such a file is one line,
exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr
from conftest import assert_one_line_error
from resin.runtime import Enhancer

from resin.io import read_volume, write_volume

TILE = ("--tile", "8", "16", "16")


@pytest.fixture
def two_channels(tmp_path, rng):
    """A 2-channel ImageJ hyperstack (Z, C, Y, X) and each channel as its own file."""
    data = rng.integers(0, 4000, size=(16, 2, 20, 24)).astype(np.uint16)
    data[:, 1] //= 3  # the channels differ in level too, so their normalizations differ
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX", "spacing": 2.0,
                                                        "unit": "um"},
                     resolution=(2.0, 2.0))
    singles = []
    for c in range(2):
        single = tmp_path / f"single{c}.tif"
        write_volume(single, np.ascontiguousarray(data[:, c]), voxel_size=(2.0, 0.5, 0.5))
        singles.append(single)
    return path, singles


def test_channel_run_gives_the_bytes_of_that_channel_alone(cli, fast_model, two_channels):
    path, singles = two_channels
    proc = cli("resin-run", "--engine", str(fast_model), str(path), "--channel", "1",
               "--device", "cpu", *TILE, "--mip", str(path.parent / "mips"))
    assert proc.returncode == 0, proc.stderr
    assert "enhancing stack.tif (channel 1)" in proc.stderr
    out = path.parent / "stack_c1_resin.ome.zarr"  # the default name says the channel
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        alone = enh.run(singles[1], path.parent / "alone.ome.zarr")
    np.testing.assert_array_equal(read_volume(out), read_volume(alone.output))
    attrs = dict(zarr.open_group(out, mode="r").attrs["resin"])
    assert attrs["input_channel"] == 1 and attrs["input"] == "stack.tif"
    mip = tifffile.imread(path.parent / "mips" / "stack_c1_resin_mip_z.tif")
    np.testing.assert_array_equal(mip, read_volume(out).max(axis=0))


def test_a_multi_channel_input_without_a_channel_is_one_line(cli, fast_model, two_channels):
    path, _ = two_channels
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--device", "cpu"))
    assert "has 2 channels" in line and "--channel N (0 to 1)" in line
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(path),
                                     "--channel", "2", "--device", "cpu"))
    assert "has no channel 2" in line
    assert not list(path.parent.glob("*resin*"))  # nothing was created


class _Stop(Exception):
    pass


def test_resume_on_another_channel_is_refused(cli, fast_model, two_channels):
    path, singles = two_channels
    out = path.parent / "out.zarr"

    def stop(p):
        if p.tiles_done >= 3:
            raise _Stop

    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(4, 20, 24)) as enh:
        with pytest.raises(_Stop):
            enh.run(path, out, progress=stop, channel=0)
        alone = enh.run(singles[0], path.parent / "alone.zarr")
    args = ["resin-run", "--engine", str(fast_model), str(path), "-o", str(out), "--device",
            "cpu", *TILE, "--block", "4", "20", "24", "--resume"]
    line = assert_one_line_error(cli(*args, "--channel", "1"))
    assert "cannot resume" in line
    proc = cli(*args, "--channel", "0")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(read_volume(out), read_volume(alone.output))


def test_the_report_measures_the_chosen_channel(cli, fast_model, two_channels):
    path, singles = two_channels
    for src, out, channel in ((path, "r.ome.zarr", ["--channel", "1"]),
                              (singles[1], "a.ome.zarr", [])):
        proc = cli("resin-run", "--engine", str(fast_model), str(src), *channel, "-o",
                   str(path.parent / out), "--device", "cpu", *TILE, "--report")
        assert proc.returncode == 0, proc.stderr
    report = json.loads((path.parent / "r.ome.zarr.report.json").read_text())
    alone = json.loads((path.parent / "a.ome.zarr.report.json").read_text())
    assert report["cutoff_before"] == alone["cutoff_before"]
    assert report == alone


def test_report_on_a_volume_too_thin_to_measure_is_refused_before_the_run(cli, fast_model,
                                                                          tmp_path, rng):
    src = tmp_path / "thin.tif"
    write_volume(src, rng.integers(0, 4000, size=(12, 20, 24)).astype(np.uint16))
    out = tmp_path / "thin.ome.zarr"
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(src), "-o",
                                     str(out), "--device", "cpu", *TILE, "--report"))
    assert "at least 16 voxels per axis" in line and "(12, 20, 24)" in line
    assert not out.exists() and not list(tmp_path.glob("thin.ome.zarr*"))


def test_time_point_run_gives_the_bytes_of_that_time_point_alone(cli, fast_model, tmp_path,
                                                                  rng):
    data = rng.integers(0, 4000, size=(3, 16, 20, 24)).astype(np.uint16)  # (T, Z, Y, X)
    src = tmp_path / "series.tif"
    tifffile.imwrite(src, data, imagej=True, metadata={"axes": "TZYX"})
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(src),
                                     "--device", "cpu"))
    assert "has 3 time points" in line and "--time T (0 to 2)" in line
    proc = cli("resin-run", "--engine", str(fast_model), str(src), "--time", "2", "--device",
               "cpu", *TILE)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "series_t2_resin.ome.zarr"
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        np.testing.assert_array_equal(read_volume(out), enh.enhance(data[2]))
    assert dict(zarr.open_group(out, mode="r").attrs["resin"])["input_time"] == 2
