"""`resin info --check`: NaN or infinity in a float volume fails the check (resin-run and
resin train refuse such data); Zarr chunks that are not stored are counted and warned of."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr
from conftest import assert_one_line_error

from resin.errors import VolumeError
from resin.io import read_volume
from resin.io._info import format_info, volume_info


def test_an_all_nan_volume_fails_the_check(cli, tmp_path):
    path = tmp_path / "allnan.tif"
    tifffile.imwrite(path, np.full((8, 16, 16), np.nan, np.float32))
    line = assert_one_line_error(cli("resin", "info", "--check", str(path)))
    assert "2048 of 2048 voxels are NaN or infinite" in line and "z, y, x = 0, 0, 0" in line
    assert cli("resin", "info", str(path)).returncode == 0  # without --check: no read-through


def test_the_check_counts_non_finite_voxels_and_names_the_first(tmp_path):
    data = np.ones((12, 16, 16), np.float32)
    data[9, 2, 3] = np.inf
    data[5, 6, 7] = -np.inf
    data[11, 0, 0] = np.nan
    path = tmp_path / "some.tif"
    tifffile.imwrite(path, data)
    with pytest.raises(VolumeError, match=r"3 of 3072 voxels .* first at z, y, x = 5, 6, 7"):
        volume_info(path, check=True)


def test_a_finite_float_volume_passes(tmp_path):
    path = tmp_path / "ok.tif"
    tifffile.imwrite(path, np.linspace(0, 1, 8 * 16 * 16, dtype=np.float32).reshape(8, 16, 16))
    assert volume_info(path, check=True)["check"].startswith("ok")


def test_the_first_bad_voxel_names_its_channel(tmp_path):
    data = np.ones((8, 2, 16, 16), np.float32)  # z, c, y, x
    data[4, 1, 5, 6] = np.nan
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(VolumeError, match=r"z, y, x = 4, 5, 6 in channel 1"):
        volume_info(path, check=True)


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "z.zarr"
    a = zarr.create_array(path, shape=(32, 64, 64), chunks=(16, 32, 32), dtype="uint16")
    a[:] = np.arange(1, 32 * 64 * 64 + 1, dtype=np.uint32).reshape(32, 64, 64) % 60000 + 1
    return path


def test_a_complete_store_has_no_absent_chunks(store):
    info = volume_info(store, check=True)
    assert info["chunks_absent"] == 0 and info["chunks_total"] == 8
    assert "warning" not in format_info(info)


def test_absent_chunks_are_counted_and_warned_of(cli, store):
    before = read_volume(store)
    (store / "c" / "1" / "1" / "0").unlink()  # a partial copy
    proc = cli("resin", "info", "--check", str(store))
    assert proc.returncode == 0, proc.stderr
    assert "check:        ok" in proc.stdout
    assert "1 of the array's 8 chunks (all its channels and time points) is not stored and read as the fill value" in proc.stdout
    info = json.loads(cli("resin", "info", "--check", "--json", str(store)).stdout)
    assert (info["chunks_absent"], info["chunks_total"]) == (1, 8)
    # reading is unchanged: the absent chunk reads as the fill value, the rest as before
    after = read_volume(store)
    assert (after[16:, 32:, :32] == 0).all()
    after[16:, 32:, :32] = before[16:, 32:, :32]
    np.testing.assert_array_equal(after, before)


def test_absent_shards_are_counted_in_chunks(tmp_path):
    path = tmp_path / "s.zarr"
    a = zarr.create_array(path, shape=(32, 64, 64), chunks=(16, 32, 32), shards=(32, 64, 32),
                          dtype="uint16")
    a[:] = 7
    (path / "c" / "0" / "0" / "1").unlink()
    info = volume_info(path, check=True)
    assert (info["chunks_absent"], info["chunks_total"]) == (4, 8)
