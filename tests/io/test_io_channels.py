"""Multi-channel files and time series: one channel / time point read at a time, by region,
in every layout resin reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from resin.errors import ChannelsError, TimePointsError, UsageError, VolumeError
from resin.io import open_volume, read_volume, volume_info, write_volume

REGION = (slice(1, 4), slice(2, 9), slice(3, 17))


def _channels(rng, dtype=np.uint16) -> np.ndarray:
    """(C, Z, Y, X) = (3, 5, 16, 20), each channel different."""
    return rng.integers(0, 250, (3, 5, 16, 20)).astype(dtype)


def _write(path, layout: str, data: np.ndarray) -> None:
    """``data`` (C, Z, Y, X) stored as ``layout``."""
    if layout in ("imagej", "imagej_zlib"):
        kw = {"compression": "zlib"} if layout.endswith("zlib") else {}
        tifffile.imwrite(path, data.transpose(1, 0, 2, 3), imagej=True,
                         metadata={"axes": "ZCYX"}, **kw)
    elif layout in ("ome", "ome_zlib"):
        kw = {"compression": "zlib"} if layout.endswith("zlib") else {}
        tifffile.imwrite(path, data, metadata={"axes": "CZYX"}, **kw)
    elif layout in ("rgb", "rgb_zlib"):
        kw = {"compression": "zlib"} if layout.endswith("zlib") else {}
        tifffile.imwrite(path, data.transpose(1, 2, 3, 0).astype(np.uint8), photometric="rgb",
                         **kw)
    elif layout == "imagej_tzcyx":
        tifffile.imwrite(path, data.transpose(1, 0, 2, 3)[None], imagej=True,
                         metadata={"axes": "TZCYX"})
    elif layout == "zarr_czyx":
        zarr.create_array(path, data=data, chunks=(1, 2, 8, 8))
    elif layout == "zarr_named":  # dimension names put the channel last
        zarr.create_array(path, data=np.ascontiguousarray(data.transpose(1, 2, 3, 0)),
                          chunks=(2, 8, 8, 3), dimension_names=("z", "y", "x", "c"))
    elif layout == "ome_zarr":
        _ome_zarr(path, data, "c")
    else:
        raise AssertionError(layout)


def _ome_zarr(path, data: np.ndarray, leading: str) -> None:
    """An OME-Zarr 0.5 image of ``data``, axes ``leading`` (t, c) then z, y, x."""
    kinds = {"t": "time", "c": "channel"}
    g = zarr.open_group(path, mode="w", zarr_format=3)
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": a, "type": kinds[a]} for a in leading] + [
            {"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0] * len(leading) + [2.0, 0.5, 0.5]}]}]}]}
    g.create_array("0", data=data, chunks=(1,) * len(leading) + (2, 8, 8))


LAYOUTS = {
    "imagej": "c.tif", "imagej_zlib": "c.tif", "ome": "c.ome.tif", "ome_zlib": "c.ome.tif",
    "rgb": "c.tif", "rgb_zlib": "c.tif", "imagej_tzcyx": "c.tif", "zarr_czyx": "c.zarr",
    "zarr_named": "c.zarr", "ome_zarr": "c.ome.zarr",
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_channel_reads_as_its_own_volume(tmp_path, rng, layout):
    data = _channels(rng)
    path = tmp_path / LAYOUTS[layout]
    _write(path, layout, data)
    for c in range(3):
        with open_volume(path, channel=c) as r:
            assert (r.shape, r.channels, r.channel) == ((5, 16, 20), 3, c)
            assert f"channel {c} of 3" in r.format
            np.testing.assert_array_equal(r.read(), data[c])
            np.testing.assert_array_equal(r.read(REGION), data[c][REGION])
    np.testing.assert_array_equal(read_volume(path, 2), data[2])


@pytest.mark.parametrize("layout", ["imagej", "ome_zlib", "zarr_czyx", "ome_zarr"])
def test_a_multi_channel_file_needs_a_channel_in_range(tmp_path, rng, layout):
    path = tmp_path / LAYOUTS[layout]
    _write(path, layout, _channels(rng))
    with pytest.raises(ChannelsError, match=r"has 3 channels; .*--channel N \(0 to 2\)"):
        open_volume(path)
    with pytest.raises(VolumeError, match=r"has no channel 3; it has 3 channels \(0 to 2\)"):
        open_volume(path, channel=3)


def test_a_one_channel_file_takes_channel_0_only(tmp_path, rng):
    data = rng.integers(0, 250, (5, 16, 20)).astype(np.uint16)
    write_volume(tmp_path / "one.tif", data)
    with open_volume(tmp_path / "one.tif", channel=0) as r:
        assert (r.channels, r.channel) == (1, None)
        np.testing.assert_array_equal(r.read(), data)
    with pytest.raises(VolumeError, match=r"has no channel 1; it has one channel \(0\)"):
        open_volume(tmp_path / "one.tif", channel=1)
    with pytest.raises(UsageError, match="channel must be an int"):
        open_volume(tmp_path / "one.tif", channel="1")  # type: ignore[arg-type]


def test_channels_along_two_axes_are_refused(tmp_path):
    path = tmp_path / "two.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 4, 8, 8, 3), np.uint8), photometric="rgb",
                     metadata={"axes": "CZYXS"})
    with pytest.raises(VolumeError, match="two axes"):
        open_volume(path, channel=0)


def test_info_describes_a_multi_channel_file_and_checks_every_channel(tmp_path, rng):
    path = tmp_path / "c.tif"
    _write(path, "imagej_zlib", _channels(rng))
    info = volume_info(path, check=True)
    assert (info["channels"], info["channel"], info["shape"]) == (3, None, [5, 16, 20])
    assert info["check"] == "ok: every chunk was read in all 3 channels"
    assert volume_info(path, channel=1)["channel"] == 1
    # a damaged last channel is found by the check of every channel
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(VolumeError, match="truncated|corrupt"):
        volume_info(path, check=True)


def test_info_cli_names_the_channels(cli, tmp_path, rng):
    path = tmp_path / "c.ome.zarr"
    _write(path, "ome_zarr", _channels(rng))
    proc = cli("resin", "info", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "channels:     3 (resin processes one: choose it with --channel N" in proc.stdout
    proc = cli("resin", "info", "--json", "--channel", "2", str(path))
    assert json.loads(proc.stdout)["channel"] == 2
    proc = cli("resin", "info", "--channel", "7", str(path))
    assert proc.returncode == 2 and "has no channel 7" in proc.stderr


def _series(rng) -> np.ndarray:
    """(T, Z, C, Y, X) = (3, 5, 2, 16, 20)."""
    return rng.integers(0, 4000, (3, 5, 2, 16, 20)).astype(np.uint16)


SERIES = {"imagej": "t.tif", "imagej_zlib": "t.tif", "zarr_tczyx": "t.zarr",
          "ome_zarr": "t.ome.zarr"}


def _write_series(path, layout: str, data: np.ndarray) -> None:
    if layout.startswith("imagej"):
        kw = {"compression": "zlib"} if layout.endswith("zlib") else {}
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"}, **kw)
    elif layout == "zarr_tczyx":  # five unnamed dimensions are read as TCZYX
        zarr.create_array(path, data=np.ascontiguousarray(data.transpose(0, 2, 1, 3, 4)),
                          chunks=(1, 1, 2, 8, 8))
    else:
        _ome_zarr(path, np.ascontiguousarray(data.transpose(0, 2, 1, 3, 4)), "tc")


@pytest.mark.parametrize("layout", list(SERIES))
def test_each_time_point_and_channel_reads_as_its_own_volume(tmp_path, rng, layout):
    data = _series(rng)
    path = tmp_path / SERIES[layout]
    _write_series(path, layout, data)
    for t in range(3):
        for c in range(2):
            with open_volume(path, channel=c, time=t) as r:
                assert (r.shape, r.time_points, r.time) == ((5, 16, 20), 3, t)
                assert f"time point {t} of 3" in r.format
                np.testing.assert_array_equal(r.read(REGION), data[t, :, c][REGION])
    with pytest.raises(TimePointsError, match=r"has 3 time points; .*--time T \(0 to 2\)"):
        open_volume(path, channel=0)
    with pytest.raises(VolumeError, match=r"has no time point 3; it has 3 time points"):
        open_volume(path, channel=0, time=3)


def test_a_tyx_stack_is_still_one_volume(tmp_path, rng):
    data = rng.integers(0, 4000, (4, 16, 20)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "tyx.tif", data, imagej=True, metadata={"axes": "TYX"})
    with open_volume(tmp_path / "tyx.tif") as r:
        assert (r.shape, r.time_points, r.time) == ((4, 16, 20), 1, None)
        np.testing.assert_array_equal(r.read(), data)


def test_info_checks_every_time_point(tmp_path, rng):
    path = tmp_path / "t.tif"
    _write_series(path, "imagej_zlib", _series(rng))
    info = volume_info(path, check=True)
    assert (info["time_points"], info["time"], info["channels"]) == (3, None, 2)
    assert info["check"] == "ok: every chunk was read in all 2 channels x 3 time points"
    assert volume_info(path, channel=1, time=2)["time"] == 2
