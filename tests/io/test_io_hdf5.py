"""HDF5 inputs: a plain dataset, an Imaris 5.5 file and a BigDataViewer file, read by region
and compared with the arrays written into them; the bad cases are one-line VolumeErrors."""

from __future__ import annotations

import numpy as np
import pytest

from resin.errors import ChannelsError, TimePointsError, UsageError, VolumeError
from resin.io import create_volume, open_volume, read_volume, volume_format, volume_info

h5py = pytest.importorskip("h5py")

from _hdf5 import write_imaris  # noqa: E402

REGION = (slice(1, 4), slice(2, 9), slice(3, 17))


def test_a_plain_dataset_reads_by_region_with_its_voxel_size(tmp_path, rng):
    a = rng.integers(0, 4000, (6, 12, 20)).astype(np.uint16)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        ds = f.create_dataset("acq/raw", data=a, chunks=(2, 4, 8))
        ds.attrs["element_size_um"] = [2.0, 0.5, 0.5]
    for path in (tmp_path / "v.h5", tmp_path / "v.h5" / "acq" / "raw"):
        assert volume_format(path) == "hdf5"
        with open_volume(path) as r:
            assert (r.shape, r.dtype, r.chunks) == ((6, 12, 20), np.uint16, (2, 4, 8))
            assert r.voxel_size == (2.0, 0.5, 0.5)
            np.testing.assert_array_equal(r.read(REGION), a[REGION])
            np.testing.assert_array_equal(r.read(), a)


def test_other_dtypes_and_unchunked_data_read_as_the_other_formats_do(tmp_path, rng):
    a = rng.normal(0, 100, (4, 9, 11)).astype(np.int16)
    with h5py.File(tmp_path / "v.hdf5", "w") as f:
        f.create_dataset("raw", data=a)  # contiguous: no chunks
        f["raw"].attrs["voxel_size"] = [300.0, 100.0, 100.0]
        f["raw"].attrs["voxel_size_unit"] = "nanometer"
    with open_volume(tmp_path / "v.hdf5") as r:
        assert r.dtype == np.float32 and r.chunks == (1, 9, 11)
        assert r.voxel_size == pytest.approx((0.3, 0.1, 0.1))
        np.testing.assert_array_equal(r.read(REGION), a[REGION].astype(np.float32))


def test_channels_and_time_points_of_a_plain_dataset(tmp_path, rng):
    a = rng.integers(0, 250, (2, 3, 5, 16, 20)).astype(np.uint8)  # TCZYX
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=a)
    with pytest.raises(TimePointsError):
        open_volume(tmp_path / "v.h5", channel=0)
    with pytest.raises(ChannelsError):
        open_volume(tmp_path / "v.h5", time=1)
    with open_volume(tmp_path / "v.h5", channel=2, time=1) as r:
        assert (r.channels, r.channel, r.time_points, r.time) == (3, 2, 2, 1)
        np.testing.assert_array_equal(r.read(REGION), a[1, 2][REGION])


def test_dimension_labels_name_the_axes(tmp_path, rng):
    a = rng.integers(0, 250, (5, 3, 16, 20)).astype(np.uint16)  # ZCYX, labelled
    with h5py.File(tmp_path / "v.h5", "w") as f:
        ds = f.create_dataset("raw", data=a)
        for dim, label in zip(ds.dims, "zcyx", strict=True):
            dim.label = label
    with open_volume(tmp_path / "v.h5", channel=1) as r:
        assert r.shape == (5, 16, 20) and r.channels == 3
        np.testing.assert_array_equal(r.read(REGION), a[:, 1][REGION])


def test_an_imaris_file_reads_its_full_resolution_without_the_padding(tmp_path, rng):
    v = rng.integers(0, 4000, (2, 3, 5, 14, 18)).astype(np.uint16)
    write_imaris(tmp_path / "s.ims", v)
    with open_volume(tmp_path / "s.ims", channel=1, time=1) as r:
        assert r.shape == (5, 14, 18)
        assert r.voxel_size == pytest.approx((2.0, 0.5, 0.25))
        assert (r.channels, r.time_points) == (3, 2)
        assert r.format.startswith("Imaris 5.5.0 (HDF5)")
        np.testing.assert_array_equal(r.read(), v[1, 1])
        np.testing.assert_array_equal(r.read(REGION), v[1, 1][REGION])
    with pytest.raises(ChannelsError, match="3 channels"):
        open_volume(tmp_path / "s.ims", time=0)
    with pytest.raises(VolumeError, match="has no channel 3"):
        open_volume(tmp_path / "s.ims", channel=3, time=0)
    one = v[:1, :1]
    write_imaris(tmp_path / "one.ims", one)
    np.testing.assert_array_equal(read_volume(tmp_path / "one.ims"), one[0, 0])


def test_a_bigdataviewer_file_reads_setups_as_channels(tmp_path, rng):
    v = rng.integers(0, 65536, (2, 2, 5, 14, 18)).astype(np.uint16)
    with h5py.File(tmp_path / "dataset.h5", "w") as f:
        for s in range(2):
            f.create_dataset(f"s{s:02d}/resolutions", data=np.array([[1, 1, 1], [2, 2, 2]]))
        for t in range(2):
            for s in range(2):  # BigDataViewer stores uint16 data as int16
                f.create_dataset(f"t{t:05d}/s{s:02d}/0/cells", data=v[t, s].view(np.int16))
                f.create_dataset(f"t{t:05d}/s{s:02d}/1/cells",
                                 data=v[t, s, ::2, ::2, ::2].view(np.int16))
    with open_volume(tmp_path / "dataset.h5", channel=1, time=0) as r:
        assert r.format.startswith("BigDataViewer") and r.voxel_size is None  # no XML
        assert r.dtype == np.uint16 and r.read().max() > 32767
        np.testing.assert_array_equal(r.read(REGION), v[0, 1][REGION])
    setups = "".join(
        f"<ViewSetup><id>{i}</id><voxelSize><unit>{unit}</unit><size>{size}</size>"
        "</voxelSize></ViewSetup>" for i, unit, size in ((0, "micron", "1 1 1"),
                                                        (1, "nm", "200 250 1000")))
    (tmp_path / "dataset.xml").write_text(
        f"<SpimData><SequenceDescription><ViewSetups>{setups}</ViewSetups>"
        "</SequenceDescription></SpimData>")
    with open_volume(tmp_path / "dataset.h5", channel=1, time=1) as r:
        assert r.voxel_size == pytest.approx((1.0, 0.25, 0.2))  # x y z in the XML
        np.testing.assert_array_equal(r.read(REGION), v[1, 1][REGION])


def test_bad_hdf5_inputs_are_one_line_errors(tmp_path, rng):
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f.create_dataset("a", data=np.zeros((4, 8, 8), np.uint16))
        f.create_dataset("b/c", data=np.zeros((4, 8, 8), np.uint16))
        f.create_dataset("flat", data=np.zeros((8, 8), np.uint16))
        f.create_dataset("bools", data=np.zeros((4, 8, 8), bool))
    cases = {
        "two.h5": "holds 3 volumes; name one",
        "two.h5/nope": "has no 'nope'",
        "two.h5/flat": "is 2D",
        "two.h5/bools": "unsupported data type bool",
        "missing.h5": "no such file",
    }
    for name, message in cases.items():
        with pytest.raises(VolumeError, match=message) as err:
            open_volume(tmp_path / name)
        assert "\n" not in str(err.value)
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_group("nothing")
    with pytest.raises(VolumeError, match="holds no dataset of 3 or more"):
        open_volume(tmp_path / "empty.h5")
    # a file cut short: not an HDF5 file any more
    (tmp_path / "cut.h5").write_bytes((tmp_path / "two.h5").read_bytes()[:700])
    with pytest.raises(VolumeError, match="not a readable HDF5 file"):
        open_volume(tmp_path / "cut.h5")


def test_hdf5_is_read_not_written(tmp_path):
    with pytest.raises(UsageError, match="reads HDF5 but writes TIFF or Zarr"):
        create_volume(tmp_path / "out.h5", (4, 8, 8), np.uint16)
    assert not (tmp_path / "out.h5").exists()


def test_info_describes_an_hdf5_volume(tmp_path, rng):
    v = rng.integers(0, 4000, (1, 2, 5, 14, 18)).astype(np.uint16)
    write_imaris(tmp_path / "s.ims", v)
    info = volume_info(tmp_path / "s.ims")
    assert info["shape"] == [5, 14, 18] and info["channels"] == 2


def test_without_h5py_the_error_names_the_extra(tmp_path, monkeypatch):
    from resin.errors import MissingDependencyError

    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=np.zeros((4, 8, 8), np.uint16))
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"resin\[hdf5\]"):
        open_volume(tmp_path / "v.h5")


def test_paths_with_capitals_and_zarr_paths_that_look_like_hdf5(tmp_path, rng):
    a = rng.integers(0, 4000, (4, 8, 8)).astype(np.uint16)
    (tmp_path / "Data").mkdir()
    with h5py.File(tmp_path / "Data" / "Stack.H5", "w") as f:
        f.create_dataset("Raw", data=a)
    np.testing.assert_array_equal(read_volume(tmp_path / "Data" / "Stack.H5" / "Raw"), a)
    with pytest.raises(VolumeError, match="missing.h5: no such file"):
        open_volume(tmp_path / "missing.h5" / "raw")
    zarr = pytest.importorskip("zarr")
    zarr.open_group(str(tmp_path / "grp.zarr"), mode="w").create_array(
        "raw.h5", data=a, chunks=(2, 8, 8))  # an array named like an HDF5 file
    assert volume_format(tmp_path / "grp.zarr" / "raw.h5") == "zarr"
    np.testing.assert_array_equal(read_volume(tmp_path / "grp.zarr" / "raw.h5"), a)
    zarr.create_array(str(tmp_path / "vol.h5"), data=a, chunks=(2, 8, 8))  # a store so named
    assert volume_format(tmp_path / "vol.h5") == "zarr"


def test_ilastik_axistags_name_a_channel_last_dataset(tmp_path, rng):
    a = rng.integers(0, 4000, (6, 8, 10, 1)).astype(np.uint16)  # z, y, x, c
    tags = ('{"axes": [{"key": "z", "typeFlags": 2}, {"key": "y", "typeFlags": 2}, '
            '{"key": "x", "typeFlags": 2}, {"key": "c", "typeFlags": 1}]}')
    with h5py.File(tmp_path / "ilastik.h5", "w") as f:
        f.create_dataset("exported_data", data=a).attrs["axistags"] = tags
    with open_volume(tmp_path / "ilastik.h5") as r:
        assert r.shape == (6, 8, 10) and r.channels == 1
        np.testing.assert_array_equal(r.read(), a[..., 0])


def test_a_file_another_program_holds_open_for_writing_is_read(tmp_path):
    import subprocess
    import sys

    a = np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8)
    with h5py.File(tmp_path / "live.h5", "w") as f:
        f.create_dataset("raw", data=a)
    writer = subprocess.Popen(
        [sys.executable, "-c", f"import h5py, time; f = h5py.File({str(tmp_path / 'live.h5')!r}, "
         "'r+'); print('open', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        np.testing.assert_array_equal(read_volume(tmp_path / "live.h5"), a)
    finally:
        writer.kill()
        writer.wait()
