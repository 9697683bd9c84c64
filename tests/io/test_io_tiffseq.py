"""A volume stored as one 2-D TIFF per plane: read from a folder or a glob pattern, in the
planes' natural name order, by region; bad folders are one-line VolumeErrors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile
from resin.runtime.runner import default_output
from resin.runtime.runstate import input_fingerprint

from resin.errors import UsageError, VolumeError
from resin.io import create_volume, open_volume, read_volume, volume_format

REGION = (slice(1, 4), slice(2, 9), slice(3, 17))


def _planes(folder, volume: np.ndarray, name="z{z}.tif", **kw) -> None:
    folder.mkdir()
    for z, plane in enumerate(volume):
        tifffile.imwrite(folder / name.format(z=z), plane, **kw)


@pytest.mark.parametrize("kw", [{}, {"compression": "zlib"}, {"byteorder": ">"}])
def test_planes_read_in_natural_order_by_region(tmp_path, rng, kw):
    v = rng.integers(0, 4000, (12, 20, 24)).astype(np.uint16)
    _planes(tmp_path / "planes", v, **kw)  # z0 ... z11: z10 sorts after z9
    for path in (tmp_path / "planes", f"{tmp_path}/planes/z*.tif"):
        assert volume_format(path) == "tiffseq"
        with open_volume(path) as r:
            assert (r.shape, r.dtype, r.chunks, r.voxel_size) == ((12, 20, 24), np.uint16,
                                                                  (1, 20, 24), None)
            np.testing.assert_array_equal(r.read(REGION), v[REGION])
            np.testing.assert_array_equal(r.read(), v)


def test_float_planes_and_only_the_pattern_s_files(tmp_path, rng):
    v = rng.normal(0, 1, (3, 8, 8)).astype(np.float64)
    _planes(tmp_path / "p", v, name="ch0_{z:03d}.tif")
    tifffile.imwrite(tmp_path / "p" / "ch1_000.tif", np.zeros((8, 8)))  # another channel
    a = read_volume(f"{tmp_path}/p/ch0_*.tif")
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, v.astype(np.float32))


def test_bad_plane_folders_are_one_line_errors(tmp_path, rng):
    v = rng.integers(0, 250, (3, 8, 8)).astype(np.uint8)
    _planes(tmp_path / "mixed", v)
    tifffile.imwrite(tmp_path / "mixed" / "z3.tif", np.zeros((8, 9), np.uint8))
    with open_volume(tmp_path / "mixed") as r, pytest.raises(VolumeError, match="every plane"):
        r.read()
    (tmp_path / "one").mkdir()
    tifffile.imwrite(tmp_path / "one" / "z0.tif", v[0])
    with pytest.raises(VolumeError, match="holds one TIFF plane"):
        open_volume(tmp_path / "one")
    (tmp_path / "stacks").mkdir()
    for i in range(2):
        tifffile.imwrite(tmp_path / "stacks" / f"s{i}.tif", v, photometric="minisblack")
    with pytest.raises(VolumeError, match="one 2-D image per file"):
        open_volume(tmp_path / "stacks")
    _planes(tmp_path / "cut", v)
    data = (tmp_path / "cut" / "z1.tif").read_bytes()
    (tmp_path / "cut" / "z1.tif").write_bytes(data[:40])
    with open_volume(tmp_path / "cut") as r, pytest.raises(VolumeError, match="z1.tif"):
        r.read()
    with pytest.raises(VolumeError, match="no TIFF planes found"):
        open_volume(f"{tmp_path}/nothing/*.tif")
    with pytest.raises(VolumeError, match="has no channel 1"):
        open_volume(tmp_path / "one", channel=1)
    with pytest.raises(VolumeError, match="unknown volume format"):
        open_volume(tmp_path / "nothing-here")


def test_planes_are_read_not_written(tmp_path, rng):
    _planes(tmp_path / "planes", rng.integers(0, 9, (2, 4, 4)).astype(np.uint16))
    for out in (tmp_path / "planes", f"{tmp_path}/new/*.tif"):
        with pytest.raises(UsageError, match="reads folders of TIFF planes"):
            create_volume(out, (2, 4, 4), np.uint16)
    assert sorted(os.listdir(tmp_path / "planes")) == ["z0.tif", "z1.tif"]


def test_output_name_and_fingerprint_of_planes(tmp_path, rng):
    v = rng.integers(0, 9, (3, 4, 4)).astype(np.uint16)
    _planes(tmp_path / "scan", v)
    expected = str(tmp_path / "scan_resin.ome.zarr")
    assert default_output(tmp_path / "scan") == expected
    assert default_output(f"{tmp_path}/scan/z*.tif") == expected
    before = input_fingerprint(tmp_path / "scan")
    stat = os.stat(tmp_path / "scan" / "z1.tif")
    tifffile.imwrite(tmp_path / "scan" / "z1.tif", v[1] + 1)  # one plane rewritten in place
    os.utime(tmp_path / "scan", ns=(stat.st_atime_ns, os.stat(tmp_path / "scan").st_mtime_ns))
    assert input_fingerprint(tmp_path / "scan") != before
