"""Zarr v2/v3 and OME-Zarr 0.4/0.5: round trips, interop with ome-zarr-py, regions, resume."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import zarr

from resin.errors import OutputExistsError, ResumeError, UsageError, VolumeError
from resin.io import create_volume, open_volume, read_volume, volume_format, write_volume

VS = (2.0, 0.5, 0.25)


@pytest.mark.parametrize("name", ["v.ome.zarr", "v.zarr"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_round_trip_keeps_data_voxel_size_and_attrs(tmp_path, rng, name, dtype):
    vol = (rng.random((16, 32, 32)) * 200).astype(dtype)
    path = tmp_path / name
    write_volume(path, vol, voxel_size=VS, attrs={"p_low": 1.5, "note": "µ"})
    with open_volume(path) as r:
        assert r.shape == (16, 32, 32) and r.dtype == np.dtype(dtype)
        assert r.voxel_size == VS
        assert r.attrs == {"p_low": 1.5, "note": "µ"}
        np.testing.assert_array_equal(r.read(), vol)
    assert volume_format(path) == "zarr"


def test_ome_zarr_layout_is_0_5_with_micrometer_axes(tmp_path, tiny_volume):
    path = tmp_path / "v.ome.zarr"
    write_volume(path, tiny_volume, voxel_size=VS, attrs={"a": 1})
    meta = json.loads((path / "zarr.json").read_text())
    ome = meta["attributes"]["ome"]
    assert ome["version"] == "0.5"
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["unit"] == "micrometer" and a["type"] == "space" for a in ms["axes"])
    assert ms["datasets"] == [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": list(VS)}]}]
    assert meta["attributes"]["resin"] == {"a": 1, "complete": True}  # the completeness marker
    arr = zarr.open_array(path / "0", mode="r")
    assert arr.metadata.zarr_format == 3 and tuple(arr.metadata.dimension_names) == ("z", "y", "x")


def test_no_voxel_size_round_trips_as_none(tmp_path, tiny_volume):
    for name in ("a.ome.zarr", "b.zarr"):
        write_volume(tmp_path / name, tiny_volume)
        assert open_volume(tmp_path / name).voxel_size is None


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_reads_ome_zarr_written_by_ome_zarr_py(tmp_path, rng, version):
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt, zarr_format = (FormatV04(), 2) if version == "0.4" else (FormatV05(), 3)
    data = (rng.random((1, 1, 16, 32, 32)) * 60000).astype(np.uint16)
    path = tmp_path / "img.ome.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    write_image(data, group, axes="tczyx", scale_factors=(2,), fmt=fmt,
                scale={"t": 1.0, "c": 1.0, "z": 2.0, "y": 0.5, "x": 250.0},
                axes_units={"z": "micrometer", "y": "micrometer", "x": "nanometer"})
    with open_volume(path) as r:
        assert r.format.startswith(f"OME-Zarr {version}")
        assert r.shape == (16, 32, 32)
        assert r.voxel_size == pytest.approx(VS)  # nanometres converted to micrometres
        np.testing.assert_array_equal(r.read(), data[0, 0])
        np.testing.assert_array_equal(r.read((slice(3, 9), slice(1, 30), slice(5, 6))),
                                      data[0, 0, 3:9, 1:30, 5:6])


def test_ome_zarr_py_reads_what_resin_writes(tmp_path, tiny_volume):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path = tmp_path / "out.ome.zarr"
    write_volume(path, tiny_volume, voxel_size=VS)
    node = list(Reader(parse_url(str(path)))())[0]
    np.testing.assert_array_equal(np.asarray(node.data[0]), tiny_volume)
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert node.metadata["axes"][0]["unit"] == "micrometer"
    assert node.metadata["coordinateTransformations"][0] == [{"type": "scale", "scale": list(VS)}]


def _ome_group(path, shape, axes, scale, version="0.4"):
    arr_shape = shape
    if version == "0.4":
        g = zarr.open_group(path, mode="w", zarr_format=2)
        g.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]
    else:
        g = zarr.open_group(path, mode="w", zarr_format=3)
        g.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
            {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]}
    data = np.arange(np.prod(arr_shape), dtype=np.uint16).reshape(arr_shape)
    g.create_array("0", data=data, chunks=arr_shape)
    return data


def test_ome_multiscale_transform_and_units_combine(tmp_path):
    path = tmp_path / "m.ome.zarr"
    axes = [{"name": n, "type": "space", "unit": "millimeter"} for n in "zyx"]
    data = _ome_group(path, (4, 5, 6), axes, [0.002, 0.001, 0.0005])
    g = zarr.open_group(path, mode="r+")
    ms = g.attrs["multiscales"]
    ms[0]["coordinateTransformations"] = [{"type": "scale", "scale": [2.0, 1.0, 1.0]}]
    g.attrs["multiscales"] = ms
    r = open_volume(path)
    assert r.voxel_size == pytest.approx((4.0, 1.0, 0.5))
    np.testing.assert_array_equal(r.read(), data)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_more_than_one_channel_is_refused(tmp_path, version):
    axes = [{"name": "c", "type": "channel"}] + [{"name": n, "type": "space"} for n in "zyx"]
    _ome_group(tmp_path / "c.ome.zarr", (3, 4, 5, 6), axes, [1, 1, 1, 1], version)
    with pytest.raises(VolumeError, match="has 3 channels"):
        open_volume(tmp_path / "c.ome.zarr")


def test_more_than_one_time_point_is_refused(tmp_path):
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + [
        {"name": n, "type": "space"} for n in "zyx"]
    _ome_group(tmp_path / "t.ome.zarr", (2, 1, 4, 5, 6), axes, [1, 1, 1, 1, 1])
    with pytest.raises(VolumeError, match="has 2 time points"):
        open_volume(tmp_path / "t.ome.zarr")


def test_plain_arrays_v2_v3_squeeze_singletons(tmp_path, rng):
    data = rng.integers(0, 255, (1, 1, 6, 7, 8), dtype=np.uint8)
    for fmt in (2, 3):
        zarr.create_array(tmp_path / f"p{fmt}.zarr", data=data, chunks=(1, 1, 3, 7, 4),
                          zarr_format=fmt)
        r = open_volume(tmp_path / f"p{fmt}.zarr")
        assert r.shape == (6, 7, 8) and r.chunks == (3, 7, 4)
        assert r.format == f"Zarr v{fmt} array"
        np.testing.assert_array_equal(r.read((slice(1, 5), slice(None), slice(2, 8))),
                                      data[0, 0, 1:5, :, 2:8])
    zarr.create_array(tmp_path / "c.zarr", data=np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(VolumeError, match="has 2 channels"):
        open_volume(tmp_path / "c.zarr")


@pytest.mark.parametrize("dtype,expected", [
    (np.int16, np.float32), (np.uint32, np.float32), (np.float64, np.float32),
    (np.uint16, np.uint16),
])
def test_dtype_conversion_rule(tmp_path, dtype, expected):
    data = np.arange(4 * 5 * 6).reshape(4, 5, 6).astype(dtype)
    zarr.create_array(tmp_path / "d.zarr", data=data)
    out = read_volume(tmp_path / "d.zarr")
    assert out.dtype == expected
    np.testing.assert_array_equal(out, data.astype(expected))


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.complex64])
def test_unsupported_dtypes_are_refused(tmp_path, dtype):
    zarr.create_array(tmp_path / "d.zarr", data=np.zeros((4, 5, 6), dtype=dtype))
    with pytest.raises(VolumeError, match="unsupported data type"):
        open_volume(tmp_path / "d.zarr")


def test_region_reads_equal_slices(tmp_path, rng):
    data = rng.random((10, 20, 30)).astype(np.float32)
    write_volume(tmp_path / "r.ome.zarr", data)
    with open_volume(tmp_path / "r.ome.zarr") as r:
        for _ in range(20):
            lo = [int(rng.integers(0, n)) for n in data.shape]
            hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, data.shape, strict=True)]
            region = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            np.testing.assert_array_equal(r.read(region), data[region])
        np.testing.assert_array_equal(r.read((slice(None), slice(-5, None), slice(0, 100))),
                                      data[:, -5:, 0:100])
        with pytest.raises(UsageError):
            r.read((slice(0, 4, 2), slice(None), slice(None)))


def test_concurrent_reads_from_threads(tmp_path, rng):
    data = rng.integers(0, 60000, (16, 32, 32), dtype=np.uint16)
    write_volume(tmp_path / "c.zarr", data)
    reader = open_volume(tmp_path / "c.zarr")
    errors: list[BaseException] = []

    def work(z):
        try:
            for _ in range(5):
                np.testing.assert_array_equal(reader.read((slice(z, z + 4), slice(None),
                                                           slice(None))), data[z:z + 4])
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(z,)) for z in range(0, 16, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_region_by_region_write_with_shards(tmp_path, rng):
    data = rng.integers(0, 255, (16, 32, 32), dtype=np.uint8)
    path = tmp_path / "s.ome.zarr"
    with create_volume(path, data.shape, np.uint8, voxel_size=VS, chunks=(4, 8, 8),
                       shards=(8, 16, 16)) as w:
        assert w.chunks == (8, 16, 16)
        for z in range(0, 16, 8):
            for y in range(0, 32, 16):
                region = (slice(z, z + 8), slice(y, y + 16), slice(0, 32))
                w.write(region, data[region])
    arr = zarr.open_array(path / "0", mode="r")
    assert arr.shards == (8, 16, 16) and arr.chunks == (4, 8, 8)
    np.testing.assert_array_equal(read_volume(path), data)


def test_existing_output_needs_overwrite(tmp_path, tiny_volume):
    path = tmp_path / "o.ome.zarr"
    write_volume(path, tiny_volume)
    with pytest.raises(OutputExistsError):
        write_volume(path, tiny_volume)
    write_volume(path, tiny_volume[::-1].copy(), overwrite=True)
    np.testing.assert_array_equal(read_volume(path), tiny_volume[::-1])
    (tmp_path / "notzarr.zarr").mkdir()
    (tmp_path / "notzarr.zarr" / "precious.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not a Zarr store"):
        write_volume(tmp_path / "notzarr.zarr", tiny_volume, overwrite=True)
    assert (tmp_path / "notzarr.zarr" / "precious.txt").exists()


@pytest.mark.parametrize("name", ["r.ome.zarr", "r.zarr"])
def test_resume_reopens_a_partial_output(tmp_path, tiny_volume, name):
    path = tmp_path / name
    w = create_volume(path, tiny_volume.shape, np.uint16, chunks=(8, 32, 32))
    w.write((slice(0, 8), slice(None), slice(None)), tiny_volume[:8])
    del w  # interrupted
    w = create_volume(path, tiny_volume.shape, np.uint16, chunks=(8, 32, 32), resume=True)
    w.write((slice(8, 16), slice(None), slice(None)), tiny_volume[8:])
    w.close()
    np.testing.assert_array_equal(read_volume(path), tiny_volume)
    with pytest.raises(ResumeError):
        create_volume(path, tiny_volume.shape, np.uint8, chunks=(8, 32, 32), resume=True)
    with pytest.raises(ResumeError):
        create_volume(path, tiny_volume.shape, np.uint16, chunks=(4, 32, 32), resume=True)
    fresh = tmp_path / ("new_" + name)
    create_volume(fresh, (2, 3, 4), np.uint8, resume=True).close()  # nothing to resume: create
    assert read_volume(fresh).shape == (2, 3, 4)


def test_write_checks_region_and_dtype(tmp_path):
    w = create_volume(tmp_path / "w.zarr", (4, 5, 6), np.uint8)
    with pytest.raises(UsageError):
        w.write((slice(0, 2), slice(0, 5), slice(0, 6)), np.zeros((3, 5, 6), np.uint8))
    with pytest.raises(UsageError):
        w.write((slice(0, 5), slice(0, 5), slice(0, 6)), np.zeros((5, 5, 6), np.uint8))
    with pytest.raises(UsageError):
        w.write((slice(0, 4), slice(0, 5), slice(0, 6)), np.zeros((4, 5, 6), np.float32))
    with pytest.raises(VolumeError):
        create_volume(tmp_path / "x.zarr", (4, 5, 6), np.int64)


def test_corrupt_zarr_metadata_and_chunks(tmp_path, tiny_volume):
    path = tmp_path / "bad.zarr"
    write_volume(path, tiny_volume)
    chunk = next(p for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:10])  # truncated compressed chunk
    with pytest.raises(VolumeError, match="truncated or corrupt"):
        read_volume(path)
    (path / "zarr.json").write_text("{not json")
    with pytest.raises(VolumeError):
        open_volume(path)
    shutil.rmtree(path)
    with pytest.raises(VolumeError, match="no such file"):
        open_volume(path)


def test_group_without_ome_metadata_names_its_arrays(tmp_path):
    g = zarr.open_group(tmp_path / "g.zarr", mode="w")
    g.create_array("raw", shape=(2, 3, 4), dtype=np.uint8)
    with pytest.raises(VolumeError, match="raw"):
        open_volume(tmp_path / "g.zarr")
    assert open_volume(tmp_path / "g.zarr" / "raw").shape == (2, 3, 4)


@pytest.mark.parametrize("name", ["w.ome.zarr", "w.tif"])
def test_concurrent_writes_of_disjoint_chunks(tmp_path, rng, name):
    data = rng.integers(0, 60000, (16, 32, 32), dtype=np.uint16)
    path = tmp_path / name
    with create_volume(path, data.shape, np.uint16, chunks=(4, 16, 32)) as w:
        cz, cy, _ = w.chunks
        regions = [(slice(z, z + cz), slice(y, y + cy), slice(0, 32))
                   for z in range(0, 16, cz) for y in range(0, 32, cy)]
        threads = [threading.Thread(target=w.write, args=(r, data[r])) for r in regions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    np.testing.assert_array_equal(read_volume(path), data)
