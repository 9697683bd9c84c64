"""`resin info`: the report, and exit code 2 with one line for every bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import assert_one_line_error

from resin.io import read_volume, write_volume

_spec = importlib.util.spec_from_file_location("_io_tiff_cases",
                                               Path(__file__).with_name("test_io_tiff.py"))
assert _spec is not None and _spec.loader is not None
_tiff_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiff_cases)
make_bad_tiff = _tiff_cases.make_bad_tiff


def test_info_reports_shape_dtype_voxel_size_chunks_format_size(cli, tmp_path, tiny_volume):
    path = tmp_path / "v.ome.zarr"
    write_volume(path, tiny_volume, voxel_size=(2.0, 0.5, 0.25))
    proc = cli("resin", "info", str(path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "OME-Zarr 0.5 (Zarr v3)" in out
    assert "16 x 32 x 32 (z, y, x)" in out
    assert "uint16" in out
    assert "2 x 0.5 x 0.25 um" in out
    assert "size on disk" in out
    proc = cli("resin", "info", "--json", "--check", str(path))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["shape"] == [16, 32, 32] and info["voxel_size_um"] == [2.0, 0.5, 0.25]
    assert info["dtype"] == "uint16" and info["chunks"] == [16, 32, 32]
    assert info["size_on_disk"] > 0 and info["check"].startswith("ok")


def test_info_on_tiff(cli, tmp_path, tiny_volume):
    path = tmp_path / "v.tif"
    write_volume(path, tiny_volume, voxel_size=(2.0, 0.5, 0.25))
    proc = cli("resin", "info", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "ImageJ TIFF" in proc.stdout and "2 x 0.5 x 0.25 um" in proc.stdout


@pytest.mark.parametrize("case,match", [
    ("2d", "is 2D"), ("int64", "unsupported data type"),
    ("truncated", "truncated"), ("truncated_zlib", "truncated"),
    ("garbage", "not a readable TIFF"), ("missing", "no such file"),
])  # multi-channel files and time series are described, not refused (test_io_channels.py)
def test_bad_tiff_is_one_line_exit_2(cli, tmp_path, case, match):
    proc = cli("resin", "info", "--check", str(make_bad_tiff(tmp_path, case)))
    assert match in assert_one_line_error(proc)


def _bad_zarr(tmp_path: Path, case: str) -> Path:
    path = tmp_path / f"{case}.zarr"
    if case == "2d":
        zarr.create_array(path, data=np.zeros((32, 32), np.uint16))
    elif case in ("bool", "complex64", "int64"):
        zarr.create_array(path, data=np.zeros((4, 8, 8), dtype=case))
    elif case == "corrupt_metadata":
        write_volume(path, np.zeros((4, 8, 8), np.uint8))
        (path / "zarr.json").write_text('{"zarr_format": 3, "node_type": "array"')
    elif case == "truncated_chunk":
        write_volume(path, np.arange(4 * 8 * 8, dtype=np.uint16).reshape(4, 8, 8))
        chunk = next(p for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")
        chunk.write_bytes(chunk.read_bytes()[:7])
    elif case == "group":
        g = zarr.open_group(path, mode="w")
        g.create_array("raw", shape=(4, 8, 8), dtype=np.uint8)
    elif case == "not_zarr":
        path.mkdir()
        (path / "readme.txt").write_text("not a zarr store")
    return path


@pytest.mark.parametrize("case,match", [
    ("2d", "is 2D"), ("bool", "unsupported data type"), ("complex64", "unsupported data type"),
    ("int64", "unsupported data type"), ("corrupt_metadata", "not a readable Zarr"),
    ("truncated_chunk", "truncated or corrupt"), ("group", "point at one of its arrays"),
    ("not_zarr", "not a readable Zarr"), ("missing", "no such file"),
])
def test_bad_zarr_is_one_line_exit_2(cli, tmp_path, case, match):
    proc = cli("resin", "info", "--check", str(_bad_zarr(tmp_path, case)))
    assert match in assert_one_line_error(proc)


def test_unknown_suffix_is_one_line_exit_2(cli, tmp_path):
    (tmp_path / "v.png").write_bytes(b"\x89PNG")
    assert "unknown volume format" in assert_one_line_error(
        cli("resin", "info", str(tmp_path / "v.png")))


@pytest.mark.parametrize("name", ["raw.tif", "raw.zarr"])
def test_simulate_into_a_new_folder_makes_it(cli, tmp_path, name):
    out = tmp_path / "a" / "b" / name
    proc = cli("resin", "simulate", str(out), "--shape", "8", "16", "16", "-q")
    assert proc.returncode == 0, proc.stderr
    assert read_volume(out).shape == (8, 16, 16)


def test_an_output_folder_that_is_a_file_is_one_line(cli, tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    line = assert_one_line_error(cli("resin", "simulate", str(tmp_path / "taken" / "raw.tif"),
                                     "--shape", "8", "16", "16"))
    assert "cannot create the output folder" in line
    assert (tmp_path / "taken").read_text() == "not a folder"
