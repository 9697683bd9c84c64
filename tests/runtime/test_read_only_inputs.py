"""resin-run on the formats it reads but does not write (a dataset inside an HDF5 file, a
folder of TIFF planes): the output a TIFF of the same data gives, named beside the input,
and the input's identity guarded on --resume as any input's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error
from resin.runtime import Enhancer
from resin.runtime.runner import default_output
from resin.runtime.runstate import input_fingerprint

from resin.io import read_volume, write_volume

TILE = ["--tile", "8", "16", "16"]


@pytest.fixture
def data(rng) -> np.ndarray:
    return rng.integers(0, 4000, size=(24, 20, 20)).astype(np.uint16)


def _h5(path: Path, data: np.ndarray) -> str:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.create_dataset("scan/raw", data=data, chunks=(4, 20, 20))
        f.create_dataset("scan/dark", data=np.zeros_like(data))
    return f"{path}/scan/raw"


def test_an_hdf5_dataset_enhances_as_the_same_data_in_a_tiff(cli, fast_model, data, tmp_path):
    src = _h5(tmp_path / "acq.h5", data)
    write_volume(tmp_path / "acq.tif", data)
    proc = cli("resin-run", "--engine", str(fast_model), src, "--device", "cpu", *TILE)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "acq_scan_raw_resin.ome.zarr"  # beside the file, not inside it
    assert default_output(src) == str(out)
    ref = tmp_path / "ref.ome.zarr"
    assert cli("resin-run", "--engine", str(fast_model), str(tmp_path / "acq.tif"), "-o",
               str(ref), "--device", "cpu", *TILE).returncode == 0
    np.testing.assert_array_equal(read_volume(out), read_volume(ref))


def test_an_hdf5_output_is_refused_before_any_work(cli, fast_model, data, tmp_path):
    src = _h5(tmp_path / "acq.h5", data)
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), src, "-o",
                                     str(tmp_path / "out.h5"), "--device", "cpu"))
    assert "reads HDF5 but writes TIFF or Zarr" in line
    assert not (tmp_path / "out.h5").exists()


def test_resume_after_the_hdf5_file_changed_is_refused(cli, fast_model, data, tmp_path):
    src = _h5(tmp_path / "acq.h5", data)
    before = input_fingerprint(src)
    assert before["dataset"] == "scan/raw" and before["size"] > 0
    out = tmp_path / "out.zarr"

    class Stop(Exception):
        pass

    def stop(p):
        if p.tiles_done >= 4:
            raise Stop

    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), block=(4, 20, 20)) as enh:
        with pytest.raises(Stop):
            enh.run(src, out, progress=stop)
    with pytest.importorskip("h5py").File(tmp_path / "acq.h5", "r+") as f:
        f["scan/raw"][0, 0, 0] += 1
    assert input_fingerprint(src) != before
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), src, "-o",
                                     str(out), "--device", "cpu", *TILE, "--resume",
                                     "--block", "4", "20", "20"))
    assert "different input" in line


def test_a_folder_of_planes_enhances_as_the_same_data_in_a_tiff(cli, fast_model, data,
                                                                  tmp_path):
    import tifffile

    (tmp_path / "scan").mkdir()
    for z, plane in enumerate(data):
        tifffile.imwrite(tmp_path / "scan" / f"plane_{z}.tif", plane)
    write_volume(tmp_path / "scan.tif", data)
    ref = tmp_path / "ref.ome.zarr"
    assert cli("resin-run", "--engine", str(fast_model), str(tmp_path / "scan.tif"), "-o",
               str(ref), "--device", "cpu", *TILE).returncode == 0
    proc = cli("resin-run", "--engine", str(fast_model), str(tmp_path / "scan"), "--device",
               "cpu", *TILE)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(read_volume(tmp_path / "scan_resin.ome.zarr"),
                                  read_volume(ref))
