"""TIFF: ImageJ/OME voxel sizes, memory-mapped and plane-by-plane reads, atomic writes, resume."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
import tifffile

from resin.errors import OutputExistsError, ResumeError, VolumeError
from resin.io import create_volume, open_volume, read_volume, volume_format, write_volume

VS = (2.0, 0.5, 0.25)


@pytest.mark.parametrize("name", ["v.tif", "v.ome.tiff"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_round_trip_keeps_data_voxel_size_and_attrs(tmp_path, rng, name, dtype):
    vol = (rng.random((16, 32, 32)) * 200).astype(dtype)
    path = tmp_path / name
    write_volume(path, vol, voxel_size=VS, attrs={"p_high": 900.0})
    assert volume_format(path) == "tiff"
    assert not (tmp_path / (name + ".partial")).exists()
    with open_volume(path) as r:
        assert r.shape == (16, 32, 32) and r.dtype == np.dtype(dtype)
        assert r.voxel_size == pytest.approx(VS)
        assert r.attrs == {"p_high": 900.0}
        assert "memory-mapped" in r.format
        np.testing.assert_array_equal(r.read(), vol)
    # other readers see the voxel size too: tifffile's ImageJ / OME metadata
    with tifffile.TiffFile(path) as tif:
        if name.endswith(".ome.tiff"):
            assert tif.is_ome and 'PhysicalSizeZ="2.0"' in tif.ome_metadata
        else:
            assert tif.is_imagej and tif.imagej_metadata["spacing"] == 2.0


@pytest.mark.parametrize("unit,scale", [("micron", 1.0), ("\\u00B5m", 1.0), ("nm", 1000.0),
                                        ("mm", 0.001)])
def test_imagej_voxel_size_as_fiji_writes_it(tmp_path, tiny_volume, unit, scale):
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(path, tiny_volume, imagej=True,
                     resolution=(1 / (0.25 * scale), 1 / (0.5 * scale)),
                     metadata={"spacing": 2.0 * scale, "unit": unit, "axes": "ZYX"})
    r = open_volume(path)
    assert r.voxel_size == pytest.approx(VS)
    assert r.format.startswith("ImageJ TIFF")


def test_imagej_without_unit_and_plain_tiff_have_no_voxel_size(tmp_path, tiny_volume):
    tifffile.imwrite(tmp_path / "p.tif", tiny_volume)
    tifffile.imwrite(tmp_path / "ij.tif", tiny_volume, imagej=True, metadata={"axes": "ZYX"})
    assert open_volume(tmp_path / "p.tif").voxel_size is None
    assert open_volume(tmp_path / "ij.tif").voxel_size is None


def test_ome_tiff_voxel_size_units(tmp_path, tiny_volume):
    path = tmp_path / "x.ome.tif"
    tifffile.imwrite(path, tiny_volume, metadata={
        "axes": "ZYX", "PhysicalSizeZ": 2000.0, "PhysicalSizeZUnit": "nm",
        "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.25})
    assert open_volume(path).voxel_size == pytest.approx(VS)


@pytest.mark.parametrize("kw", [{"compression": "zlib"}, {"compression": "zlib", "tile": (16, 16)},
                                {"tile": (4, 16, 16)}, {"byteorder": ">"}, {}])
def test_region_reads_equal_slices(tmp_path, rng, kw):
    data = rng.integers(0, 60000, (12, 32, 48), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "v.tif", data, **kw)
    with open_volume(tmp_path / "v.tif") as r:
        assert r.dtype == np.uint16 and r.shape == data.shape
        for _ in range(10):
            lo = [int(rng.integers(0, n)) for n in data.shape]
            hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, data.shape, strict=True)]
            region = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            out = r.read(region)
            assert out.dtype.isnative
            np.testing.assert_array_equal(out, data[region])


def test_compressed_tiff_is_read_plane_by_plane(tmp_path, tiny_volume):
    tifffile.imwrite(tmp_path / "c.tif", tiny_volume, compression="zlib")
    r = open_volume(tmp_path / "c.tif")
    assert "plane by plane" in r.format and r.chunks == (1, 32, 32)


def test_uncompressed_region_read_never_loads_the_file(tmp_path):
    # a 1 GiB uint16 volume, sparse on disk (the writer's memmap never touches the data)
    shape = (512, 1024, 1024)
    path = tmp_path / "big.tif"
    w = create_volume(path, shape, np.uint16)
    w.write((slice(300, 301), slice(0, 4), slice(0, 4)), np.full((1, 4, 4), 7, np.uint16))
    w.close()
    tracemalloc.start()
    try:
        with open_volume(path) as r:
            assert isinstance(r._memmap, np.memmap)
            block = r.read((slice(299, 302), slice(0, 8), slice(0, 8)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert block[1, :4, :4].tolist() == [[7] * 4] * 4 and block[0].sum() == 0
    assert peak < 16 * 2**20, peak  # a loaded volume would be 1 GiB


def test_concurrent_plane_reads_from_threads(tmp_path, rng):
    data = rng.integers(0, 255, (16, 32, 32), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", data, compression="zlib")
    reader = open_volume(tmp_path / "c.tif")
    errors: list[BaseException] = []

    def work(z):
        try:
            for _ in range(5):
                np.testing.assert_array_equal(
                    reader.read((slice(z, z + 4), slice(2, 30), slice(None))), data[z:z + 4, 2:30])
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(z,)) for z in range(0, 16, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_singleton_hyperstack_axes_are_squeezed(tmp_path, rng):
    data = rng.integers(0, 255, (1, 6, 1, 32, 32), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, metadata={"axes": "TZCYX"})
    np.testing.assert_array_equal(read_volume(tmp_path / "h.tif"), data[0, :, 0])


@pytest.mark.parametrize("dtype", [np.int16, np.uint32, np.float64])
def test_converted_dtypes_read_as_float32(tmp_path, dtype):
    data = (np.arange(4 * 8 * 8).reshape(4, 8, 8) - 100).astype(dtype) if dtype != np.uint32 \
        else np.arange(4 * 8 * 8, dtype=dtype).reshape(4, 8, 8)
    tifffile.imwrite(tmp_path / "d.tif", data, photometric="minisblack")
    r = open_volume(tmp_path / "d.tif")
    assert r.dtype == np.float32
    np.testing.assert_array_equal(r.read(), data.astype(np.float32))


def test_writer_is_atomic_and_resumable(tmp_path, tiny_volume):
    path = tmp_path / "out.tif"
    partial = tmp_path / "out.tif.partial"
    with pytest.raises(RuntimeError):
        with create_volume(path, tiny_volume.shape, np.uint16, voxel_size=VS) as w:
            assert w.chunks == (1, 32, 32)
            w.write((slice(0, 8), slice(None), slice(None)), tiny_volume[:8])
            assert partial.exists() and not path.exists()
            raise RuntimeError("interrupted")
    assert partial.exists() and not path.exists()  # an interrupted run leaves only .partial
    with pytest.raises(OutputExistsError, match="--resume"):
        create_volume(path, tiny_volume.shape, np.uint16)
    with pytest.raises(ResumeError):
        create_volume(path, (16, 32, 31), np.uint16, resume=True)
    with create_volume(path, tiny_volume.shape, np.uint16, voxel_size=VS, resume=True) as w:
        w.write((slice(8, 16), slice(None), slice(None)), tiny_volume[8:])
    assert path.exists() and not partial.exists()
    r = open_volume(path)
    np.testing.assert_array_equal(r.read(), tiny_volume)
    assert r.voxel_size == pytest.approx(VS)
    with pytest.raises(ResumeError, match="already complete"):
        create_volume(path, tiny_volume.shape, np.uint16, resume=True)


def test_existing_output_needs_overwrite(tmp_path, tiny_volume):
    path = tmp_path / "o.tif"
    write_volume(path, tiny_volume)
    with pytest.raises(OutputExistsError):
        write_volume(path, tiny_volume)
    write_volume(path, tiny_volume // 2, overwrite=True)
    np.testing.assert_array_equal(read_volume(path), tiny_volume // 2)


@pytest.mark.parametrize("case,match", [
    ("2d", "is 2D"), ("rgb", "has 3 channels"), ("channels", "has 3 channels"),
    ("time", "has 2 time points"), ("int64", "unsupported data type"),
    ("truncated", "truncated"), ("truncated_zlib", "truncated"), ("garbage", "not a readable TIFF"),
    ("missing", "no such file"),
])
def test_bad_tiffs_raise_volume_error(tmp_path, case, match):
    path = make_bad_tiff(tmp_path, case)
    with pytest.raises(VolumeError, match=match):
        read_volume(path)


def make_bad_tiff(tmp_path, case):
    """One bad TIFF input per case (shared with the CLI tests)."""
    path = tmp_path / f"{case}.tif"
    vol = np.arange(16 * 32 * 32, dtype=np.uint16).reshape(16, 32, 32)
    if case == "2d":
        tifffile.imwrite(path, vol[0])
    elif case == "rgb":
        tifffile.imwrite(path, np.zeros((4, 32, 32, 3), np.uint8), photometric="rgb")
    elif case == "channels":
        tifffile.imwrite(path, np.zeros((4, 3, 32, 32), np.uint16), imagej=True,
                         metadata={"axes": "ZCYX"})
    elif case == "time":
        tifffile.imwrite(path, np.zeros((2, 4, 32, 32), np.uint16), imagej=True,
                         metadata={"axes": "TZYX"})
    elif case == "int64":
        tifffile.imwrite(path, vol.astype(np.int64))
    elif case in ("truncated", "truncated_zlib"):
        kw = {"compression": "zlib"} if case == "truncated_zlib" else {}
        tifffile.imwrite(path, vol, **kw)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    return path


@pytest.mark.parametrize("name", ["one.tif", "one.ome.zarr"])
def test_one_plane_volume_round_trips(tmp_path, rng, name):
    data = rng.integers(0, 255, (1, 8, 9), dtype=np.uint8)
    write_volume(tmp_path / name, data)
    np.testing.assert_array_equal(read_volume(tmp_path / name), data)


def test_large_tiff_is_written_as_ome_bigtiff(tmp_path, tiny_volume, monkeypatch):
    from resin.io import _tiff

    monkeypatch.setattr(_tiff, "IMAGEJ_MAX_BYTES", 1000)  # stands in for 4 GiB
    write_volume(tmp_path / "big.tif", tiny_volume, voxel_size=VS)
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.is_bigtiff and tif.is_ome
    r = open_volume(tmp_path / "big.tif")
    assert r.voxel_size == pytest.approx(VS) and "memory-mapped" in r.format
    np.testing.assert_array_equal(r.read(), tiny_volume)


def test_write_volume_stores_float64_as_float32(tmp_path, rng):
    data = rng.random((4, 8, 8))
    write_volume(tmp_path / "f.tif", data)
    out = read_volume(tmp_path / "f.tif")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data.astype(np.float32))
    with pytest.raises(VolumeError):
        write_volume(tmp_path / "b.tif", np.zeros((4, 8, 8), bool))
