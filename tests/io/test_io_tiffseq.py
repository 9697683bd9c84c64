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
    with pytest.raises(VolumeError, match="no such file"):  # a pattern that matches nothing
        open_volume(f"{tmp_path}/nothing/*.tif")
    with pytest.raises(VolumeError, match="has no channel 1"):
        open_volume(tmp_path / "one", channel=1)
    with pytest.raises(VolumeError, match="unknown volume format"):
        open_volume(tmp_path / "nothing-here")


def test_planes_are_read_not_written(tmp_path, rng):
    _planes(tmp_path / "planes", rng.integers(0, 9, (2, 4, 4)).astype(np.uint16))
    with pytest.raises(UsageError, match="reads folders of TIFF planes"):
        create_volume(tmp_path / "planes", (2, 4, 4), np.uint16)
    for pattern in (f"{tmp_path}/planes/z*.tif", f"{tmp_path}/new/*.tif"):
        with pytest.raises(UsageError, match="names one file or store, not a pattern"):
            create_volume(pattern, (2, 4, 4), np.uint16)
    assert sorted(os.listdir(tmp_path / "planes")) == ["z0.tif", "z1.tif"]
    assert not (tmp_path / "new").exists()
    # a TIFF whose name has glob characters is a file, in and out
    create_volume(tmp_path / "cell[1].tif", (2, 4, 4), np.uint16).close()
    assert volume_format(tmp_path / "cell[1].tif") == "tiff"
    assert read_volume(tmp_path / "cell[1].tif").shape == (2, 4, 4)


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


def test_planes_of_a_multi_file_ome_tiff_read_as_planes(tmp_path):
    """Bio-Formats and Micro-Manager write one plane per file, each file's OME-XML
    describing the whole stack: tifffile sees a 3-D series in every file."""
    v = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5)
    names = [f"img_z{z}.ome.tif" for z in range(4)]
    uuids = [f"urn:uuid:00000000-0000-0000-0000-00000000000{z}" for z in range(4)]
    data = "".join(f'<TiffData FirstZ="{z}" IFD="0" PlaneCount="1"><UUID FileName="{n}">'
                   f"{u}</UUID></TiffData>"
                   for z, (n, u) in enumerate(zip(names, uuids, strict=True)))
    (tmp_path / "ome").mkdir()
    for z, name in enumerate(names):
        xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/'
               f'Schemas/OME/2016-06" UUID="{uuids[z]}"><Image ID="Image:0"><Pixels ID="Pixels:0" '
               'DimensionOrder="XYZCT" Type="uint16" SizeX="5" SizeY="6" SizeZ="4" SizeC="1" '
               f'SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>{data}</Pixels></Image>'
               "</OME>")
        tifffile.imwrite(tmp_path / "ome" / name, v[z], description=xml, metadata=None)
    with tifffile.TiffFile(tmp_path / "ome" / names[0]) as tif:
        assert tif.series[0].ndim == 3  # what a series-level reader would have refused
    np.testing.assert_array_equal(read_volume(tmp_path / "ome"), v)


def test_an_output_inside_a_pattern_s_folder_is_refused(tmp_path, rng):
    from resin.runtime.runner import check_output

    _planes(tmp_path / "planes", rng.integers(0, 9, (2, 4, 4)).astype(np.uint16))
    with pytest.raises(UsageError, match="lies inside the input"):
        check_output(f"{tmp_path}/planes/z*.tif", tmp_path / "planes" / "out.tif")
    assert sorted(os.listdir(tmp_path / "planes")) == ["z0.tif", "z1.tif"]
