"""Big-output features: an OME-Zarr pyramid written block by block, Zarr v3 sharding; both
read back by ome-zarr-py and zarr with the voxel sizes right, and identical for any block."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from resin.runtime import Enhancer

from resin.io import read_volume, write_volume

VS = (1.0, 0.25, 0.25)


def _mean2(a: np.ndarray) -> np.ndarray:
    pad = [(0, n % 2) for n in a.shape]
    a = np.pad(a.astype(np.float64), pad, mode="edge")
    z, y, x = (n // 2 for n in a.shape)
    return a.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))


def test_pyramid_levels_are_means_and_read_by_ome_zarr_py(fast_model, tmp_path, rng):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    vol = rng.integers(0, 4000, size=(27, 45, 38)).astype(np.uint16)  # odd: edge planes
    src = tmp_path / "in.tif"
    write_volume(src, vol, voxel_size=VS)
    outs = []
    for i, block in enumerate([(8, 16, 16), (24, 48, 32)]):
        out = tmp_path / f"o{i}.ome.zarr"
        with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=block,
                      pyramid=3) as enh:
            enh.run(src, out)
        outs.append(out)
    g0, g1 = (zarr.open_group(o, mode="r") for o in outs)
    for k in range(3):
        np.testing.assert_array_equal(g0[str(k)][:], g1[str(k)][:])  # any block: same bytes
    full = g0["0"][:].astype(np.float64)
    lvl1 = _mean2(full)
    np.testing.assert_array_equal(g0["1"][:], np.clip(np.rint(lvl1), 0, 65535))
    assert g0["2"].shape == (7, 12, 10)

    node = next(iter(Reader(parse_url(str(outs[0])))()))
    assert len(node.data) == 3
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[v * 2 ** k for v in VS] for k in range(3)]
    np.testing.assert_array_equal(np.asarray(node.data[1]), g0["1"][:])


def test_sharded_output_is_read_by_zarr_and_equals_the_plain_one(fast_model, tmp_path, rng):
    vol = rng.integers(0, 4000, size=(24, 40, 40)).astype(np.uint16)
    src = tmp_path / "in.tif"
    write_volume(src, vol, voxel_size=VS)
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(8, 20, 20)) as enh:
        enh.run(src, tmp_path / "plain.zarr")
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(8, 20, 20),
                  shards=(8, 40, 40)) as enh:
        report = enh.run(src, tmp_path / "sharded.ome.zarr")
    assert report.block == (8, 40, 40)  # blocks never split a shard
    arr = zarr.open_group(tmp_path / "sharded.ome.zarr", mode="r")["0"]
    assert arr.shards == (8, 40, 40)
    np.testing.assert_array_equal(arr[:], read_volume(tmp_path / "plain.zarr"))
    from resin.io import open_volume

    with open_volume(tmp_path / "sharded.ome.zarr") as r:
        assert r.voxel_size == pytest.approx(VS)
    files = [p for p in (tmp_path / "sharded.ome.zarr" / "0").rglob("*") if p.is_file()]
    assert len(files) <= 4  # 3 shards + metadata, not one file per chunk


def test_pyramid_needs_an_ome_zarr_output(cli, fast_model, tmp_path, rng):
    from conftest import assert_one_line_error

    src = tmp_path / "in.tif"
    write_volume(src, rng.integers(0, 4000, size=(8, 16, 16)).astype(np.uint16))
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(src), "-o",
                                     str(tmp_path / "o.zarr"), "--levels", "2"))
    assert "ome.zarr" in line


def test_file_and_stream_outputs_record_the_same_provenance(fast_model, tmp_path, rng):
    from resin import __version__

    vol = rng.integers(0, 4000, size=(12, 20, 20)).astype(np.uint16)
    src = tmp_path / "in.tif"
    write_volume(src, vol)
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        enh.run(src, tmp_path / "run.zarr")
        with enh.stream(vol.shape, vol.dtype, out=tmp_path / "live.zarr") as s:
            s.push(vol)
    run = zarr.open_array(tmp_path / "run.zarr", mode="r").attrs["resin"]
    live = zarr.open_array(tmp_path / "live.zarr", mode="r").attrs["resin"]
    assert set(run) == set(live)
    for key in ("resin_version", "model_sha256", "normalization", "tile", "halo",
                "axial_angle_deg", "scale", "model"):
        assert run[key] is not None, key
    assert run["resin_version"] == __version__ and run["model"] == "fast.onnx"
    assert (run["input"], live["input"]) == ("in.tif", "stream")
