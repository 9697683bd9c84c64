"""The natural views of an oblique model's output: the MIP along its PSF axis (``--mip``
writes ``_mip_psf.tif``) and the output resampled into the PSF-aligned frame, block by
block (``--psf-frame``), each against the whole-volume kernels (``slanted_mip``,
``rotate_axial``)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from conftest import assert_one_line_error
from resin.kernels import rotate_axial, slanted_mip
from resin.kernels._common import axial_rotation
from resin.runtime.psf_frame import frame_shape, psf_frame, psf_mip

from resin.errors import OutputExistsError, UsageError
from resin.io import read_volume, write_volume

TILE = ("--tile", "12", "16", "16")


def _off_edge(shape, out_shape, angle) -> np.ndarray:
    """Output voxels whose sample is not on the input's edge to rounding (at 90 degrees
    whole planes land there, and either the edge voxel or the zero beyond it is right)."""
    mat, off = axial_rotation(shape, out_shape, angle, False)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in out_shape], indexing="ij"), -1)
    coords = grid.reshape(-1, 3) @ mat.T + off
    last = np.asarray(shape) - 1
    edge = (np.abs(coords) < 1e-6) | (np.abs(coords - last) < 1e-6)
    edge[:, 1] = False  # y is copied, never interpolated
    return ~edge.any(axis=1).reshape(out_shape)


@pytest.mark.parametrize("angle", [45.0, 30.0, -20.0, 135.0, 90.0])
@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
@pytest.mark.parametrize("ext", [".tif", ".ome.zarr"])
def test_psf_frame_block_by_block_equals_rotate_axial(tmp_path, rng, angle, dtype, ext):
    volume = (rng.random((19, 7, 31)) * 3000).astype(dtype)
    src = tmp_path / "enhanced.tif"
    write_volume(src, volume)
    out = tmp_path / f"frame{ext}"
    shape = psf_frame(src, out, angle, block=(5, 3, 7))  # blocks that cut rays everywhere
    expected = rotate_axial(volume, angle)
    assert shape == expected.shape == frame_shape(volume.shape, angle)
    got = read_volume(out)
    assert got.dtype == volume.dtype
    keep = _off_edge(volume.shape, shape, angle)
    assert keep.mean() > 0.5
    _assert_same(got[keep], expected[keep])


def _assert_same(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to the rounding of the sample coordinates, which a block computes from its
    own origin: float32 within a few ulps, integers (rounded half up) within 1."""
    atol = 1 if np.issubdtype(expected.dtype, np.integer) else 1e-6 * float(expected.max())
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=0,
                               atol=atol)


def test_psf_frame_mips_are_the_frames_own(tmp_path, rng):
    volume = rng.random((12, 9, 20)).astype(np.float32)
    src = tmp_path / "e.tif"
    write_volume(src, volume)
    psf_frame(src, tmp_path / "f.ome.zarr", 45.0, block=(4, 4, 8), mip_dir=tmp_path / "m")
    frame = read_volume(tmp_path / "f.ome.zarr")
    for i, axis in enumerate("zyx"):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "m" / f"f_mip_{axis}.tif"),
                                      frame.max(axis=i))
    # along the frame's z is along the PSF axis: the slanted MIP of the source
    np.testing.assert_allclose(frame.max(axis=0), slanted_mip(volume, 45.0), atol=1e-6)


def test_psf_frame_refuses_what_it_cannot_do(tmp_path, rng):
    src = tmp_path / "e.tif"
    write_volume(src, rng.random((8, 8, 8)).astype(np.float32))
    with pytest.raises(UsageError, match="axial PSF"):
        psf_frame(src, tmp_path / "f.tif", 0.0)
    psf_frame(src, tmp_path / "f.tif", 45.0)
    with pytest.raises(OutputExistsError):
        psf_frame(src, tmp_path / "f.tif", 45.0)
    psf_frame(src, tmp_path / "f.tif", 30.0, overwrite=True)
    assert read_volume(tmp_path / "f.tif").shape == frame_shape((8, 8, 8), 30.0)


@pytest.mark.parametrize("slab_bytes", [1, 3 * 31 * 19 * 4, 2**30])
def test_psf_mip_in_y_slabs_equals_the_whole_volume_kernel(tmp_path, rng, slab_bytes):
    volume = (rng.random((19, 11, 31)) * 1000).astype(np.uint16)
    src = tmp_path / "e.ome.zarr"
    write_volume(src, volume)
    for angle in (45.0, -30.0):
        np.testing.assert_array_equal(psf_mip(src, angle, slab_bytes=slab_bytes),
                                      slanted_mip(volume, angle))


@pytest.fixture
def oblique(tmp_path_factory, model_factory):
    folder = tmp_path_factory.mktemp("oblique")
    return (model_factory(folder / "tilted.onnx", features=(4,), halo=(3, 3, 3),
                          axial_angle_deg=45.0),
            model_factory(folder / "axial.onnx", features=(4,), halo=(3, 3, 3)))


def test_resin_run_writes_the_views_of_an_oblique_output(cli, tmp_path, rng, oblique):
    tilted, axial = oblique
    raw = tmp_path / "raw.tif"
    write_volume(raw, rng.integers(0, 4000, size=(16, 20, 24)).astype(np.uint16))
    out, frame, mips = tmp_path / "out.tif", tmp_path / "frame.ome.zarr", tmp_path / "mips"
    args = ("resin-run", str(raw), "--engine", str(tilted), "--device", "cpu", *TILE,
            "-o", str(out), "--mip", str(mips), "--psf-frame", str(frame))
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    enhanced = read_volume(out)
    np.testing.assert_array_equal(tifffile.imread(mips / "out_mip_psf.tif"),
                                  slanted_mip(enhanced, 45.0))
    expected = rotate_axial(enhanced, 45.0)
    keep = _off_edge(enhanced.shape, expected.shape, 45.0)
    _assert_same(read_volume(frame)[keep], expected[keep])
    assert "PSF-aligned frame" in proc.stderr

    # nothing is replaced without --overwrite, and it is refused before the run
    out.unlink()
    line = assert_one_line_error(cli(*args))
    assert "exists" in line and not out.exists()
    assert cli(*args, "--overwrite").returncode == 0

    # an axial model has no other axis; a series job, the frame over the output: refused
    line = assert_one_line_error(cli("resin-run", str(raw), "--engine", str(axial),
                                     "--device", "cpu", "-o", str(tmp_path / "a.tif"),
                                     "--psf-frame", str(tmp_path / "af.tif")))
    assert "--psf-frame" in line and not (tmp_path / "a.tif").exists()
    line = assert_one_line_error(cli("resin-run", str(raw), "--engine", str(tilted),
                                     "--time", "all", "--psf-frame", str(tmp_path / "x.tif")))
    assert "one volume" in line
    line = assert_one_line_error(cli("resin-run", str(raw), "--engine", str(tilted),
                                     "-o", str(tmp_path / "b.tif"), "--psf-frame",
                                     str(tmp_path / "b.tif")))
    assert "overlaps" in line


def test_resume_replaces_only_a_frame_resin_wrote(cli, tmp_path, rng, oblique):
    """A run stopped after its output, during the frame, resumes: the frame (or its
    ``.partial``) is resin's and is written again; a file of the user's never is."""
    from resin.runtime.psf_frame import check_frame_output

    src = tmp_path / "e.tif"
    write_volume(src, rng.random((8, 8, 8)).astype(np.float32))
    ours, theirs = tmp_path / "f.ome.zarr", tmp_path / "g.tif"
    psf_frame(src, ours, 45.0)
    tifffile.imwrite(theirs, np.ones((4, 4, 4), np.uint16))
    assert check_frame_output(ours, [str(src)], overwrite=False, resume=True)
    (tmp_path / "f.ome.zarr").rename(tmp_path / "f.ome.zarr.partial")
    assert check_frame_output(ours, [str(src)], overwrite=False, resume=True)
    assert not check_frame_output(tmp_path / "new.tif", [str(src)], False, True)
    for resume in (False, True):
        with pytest.raises(OutputExistsError, match="--overwrite"):
            check_frame_output(theirs, [str(src)], overwrite=False, resume=resume)
    assert check_frame_output(theirs, [str(src)], overwrite=True, resume=False)

    tilted, _ = oblique
    raw = tmp_path / "raw.tif"
    write_volume(raw, rng.integers(0, 4000, size=(16, 20, 24)).astype(np.uint16))
    line = assert_one_line_error(cli("resin-run", str(raw), "--engine", str(tilted),
                                     "--device", "cpu", "-o", str(tmp_path / "o.tif"),
                                     "--psf-frame", str(theirs), "--resume"))
    assert "exists" in line
    np.testing.assert_array_equal(tifffile.imread(theirs), np.ones((4, 4, 4), np.uint16))
