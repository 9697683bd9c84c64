"""`resin-run` end to end: formats, voxel size, MIPs, resume after kill -9, bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from conftest import assert_one_line_error
from resin.runtime import Enhancer

from resin.io import open_volume, read_volume, write_volume

VS = (2.0, 0.5, 0.5)


def _tree_bytes(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def test_tiff_in_ome_zarr_out_default_name(cli, fast_model, tmp_path, awkward_volume):
    src = tmp_path / "stack.tif"
    write_volume(src, awkward_volume, voxel_size=VS)
    proc = cli("resin-run", "--engine", str(fast_model), str(src), "--device", "cpu",
               "--tile", "8", "16", "16")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "stack_resin.ome.zarr"
    assert out.is_dir()
    with open_volume(out) as r:
        assert r.shape == awkward_volume.shape and r.dtype == np.uint16
        assert r.voxel_size == pytest.approx(VS)
        got = r.read()
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        np.testing.assert_array_equal(got, enh.enhance(awkward_volume))
    attrs = zarr.open_group(out, mode="r").attrs["resin"]
    assert attrs["model_sha256"] == "test-1"
    assert attrs["normalization"]["low_percentile"] == 0.5
    assert attrs["normalization"]["high"] > attrs["normalization"]["low"]
    assert not list(tmp_path.glob("*journal*")), "journal left behind after a finished run"


@pytest.mark.parametrize("name", ["out.ome.zarr", "out.tif"])
def test_an_output_in_a_new_folder_makes_the_folder(cli, fast_model, tmp_path,
                                                    awkward_volume, name):
    src = tmp_path / "stack.tif"
    write_volume(src, awkward_volume)
    out = tmp_path / "new" / "sub" / name
    proc = cli("resin-run", "--engine", str(fast_model), str(src), "-o", str(out), "--device",
               "cpu", "--tile", "8", "16", "16")
    assert proc.returncode == 0, proc.stderr
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16)) as enh:
        np.testing.assert_array_equal(read_volume(out), enh.enhance(awkward_volume))
    (tmp_path / "file").write_text("x")
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(src), "-o",
                                     str(tmp_path / "file" / name), "--device", "cpu"))
    assert "cannot create the output folder" in line


def test_mips_into_a_folder_through_a_file_are_refused_before_the_run(cli, fast_model,
                                                                      tmp_path, awkward_volume):
    src = tmp_path / "stack.tif"
    write_volume(src, awkward_volume)
    (tmp_path / "taken").write_text("not a folder")
    out = tmp_path / "o.zarr"
    line = assert_one_line_error(cli("resin-run", "--engine", str(fast_model), str(src), "-o",
                                     str(out), "--device", "cpu", "--mip",
                                     str(tmp_path / "taken" / "mips")))
    assert "cannot create the output folder" in line
    assert not out.exists() and not (tmp_path / "o.zarr.partial").exists()


def test_ome_zarr_py_in_and_out(cli, fast_model, tmp_path, rng):
    from ome_zarr.format import FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr.writer import write_image

    data = rng.integers(100, 3000, size=(12, 20, 18)).astype(np.uint16)
    src = tmp_path / "acq.ome.zarr"
    group = zarr.open_group(src, mode="w", zarr_format=3)
    write_image(data, group, axes="zyx", scale_factors=(), fmt=FormatV05(),
                scale={"z": VS[0], "y": VS[1], "x": VS[2]},
                axes_units={a: "micrometer" for a in "zyx"})
    out = tmp_path / "enhanced.ome.zarr"
    proc = cli("resin-run", "--engine", str(fast_model), str(src), "-o", str(out),
               "--device", "cpu", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --quiet
    node = list(Reader(parse_url(str(out)))())[0]
    arr = np.asarray(node.data[0])
    assert arr.shape == data.shape and arr.dtype == np.uint16
    scale = node.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale == pytest.approx(list(VS))
    with Enhancer(fast_model, device="cpu") as enh:
        np.testing.assert_array_equal(arr, enh.enhance(data))


def test_mip_dir(cli, fast_model, tmp_path, awkward_volume):
    src = tmp_path / "in.tif"
    write_volume(src, awkward_volume, voxel_size=VS)
    out = tmp_path / "out.tif"
    mips = tmp_path / "mips"
    proc = cli("resin-run", "--engine", str(fast_model), str(src), "-o", str(out),
               "--device", "cpu", "--mip", str(mips), "--tile", "8", "16", "16")
    assert proc.returncode == 0, proc.stderr
    vol = read_volume(out)
    for axis, ref in (("z", vol.max(0)), ("y", vol.max(1)), ("x", vol.max(2))):
        np.testing.assert_array_equal(tifffile.imread(mips / f"out_mip_{axis}.tif"), ref)
    from PIL import Image

    png = np.asarray(Image.open(mips / "out_mip.png"))
    assert png.ndim == 2 and png.dtype == np.uint8 and png.std() > 0
    # two rows (raw, enhanced); the axial panel is stretched by z/x voxel size = 4
    assert png.shape[0] >= 2 * 13 * 4


def test_report_measures_anisotropy_of_input_and_output(cli, fast_model, tmp_path, rng):
    from scipy.ndimage import gaussian_filter

    vol = gaussian_filter(rng.random((32, 40, 40)) ** 6, (3.0, 1.0, 1.0)) * 4000 + 100
    src = tmp_path / "in.tif"
    write_volume(src, vol.astype(np.uint16), voxel_size=VS)
    out = tmp_path / "out.tif"

    def run(dst):
        return cli("resin-run", "--engine", str(fast_model), str(src), "-o", str(dst),
                   "--device", "cpu", "--tile", "8", "16", "16", "--report")

    proc = run(out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "out.tif.report.json").read_text())
    assert data["ratios_before"]["y/z"] > 1.5  # blurred 3x along z
    assert set(data["ratios_after"]) == {"y/z", "x/z", "y/x"} and data["residual"] is None
    assert "anisotropy" in proc.stderr
    # no D beside the model: one line says so, and no residual map is written
    assert [ln for ln in proc.stderr.splitlines() if "D(F(y))" in ln] == [
        ln for ln in proc.stderr.splitlines() if ln.startswith("no D beside the model")]
    assert "no D beside the model (tiny.degrader.onnx" in proc.stderr.replace("fast.", "tiny.")
    assert not (tmp_path / "out.tif.report.png").exists()
    # a report file that exists is refused before any work, and left as it was
    (tmp_path / "out2.tif.report.json").write_text("mine")
    proc = run(tmp_path / "out2.tif")
    assert proc.returncode == 2 and "out2.tif.report.json exists" in proc.stderr
    assert (tmp_path / "out2.tif.report.json").read_text() == "mine"
    assert not (tmp_path / "out2.tif").exists()


def test_report_gives_the_inputs_noise_and_warns_when_it_limits_the_result(cli, fast_model,
                                                                            tmp_path):
    from resin.simulate import simulate

    said = {}
    for photons in (150.0, 3000.0):
        src = tmp_path / f"in{photons:.0f}.tif"
        write_volume(src, simulate(shape=(32, 64, 64), seed=1, photons=photons).raw)
        out = tmp_path / f"out{photons:.0f}.ome.zarr"
        proc = cli("resin-run", "--engine", str(fast_model), str(src), "-o", str(out),
                   "--device", "cpu", "--tile", "8", "16", "16", "--report")
        assert proc.returncode == 0, proc.stderr
        said[photons] = (proc.stderr, json.loads(Path(f"{out}.report.json").read_text()))
    assert said[150.0][1]["input_snr"] < 15 < said[3000.0][1]["input_snr"]
    assert "warning: the input is noise-limited" in said[150.0][0]
    assert "noise-limited" not in said[3000.0][0]
    assert "input signal-to-noise about" in said[3000.0][0]


def _run_bg(fast_model, src, out, *extra):
    code = "import sys; from resin.runtime.cli import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, "--engine", str(fast_model), str(src),
                             "-o", str(out), "--device", "cpu", "--tile", "8", "20", "20",
                             "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _done_blocks(out: Path, suffix: str) -> int:
    d = (Path(str(out) + ".partial") / ".resin-run" / "done" if suffix.endswith("zarr")
         else Path(str(out) + ".resin-run") / "done")
    try:
        return len(list(d.iterdir()))
    except OSError:
        return 0


@pytest.mark.parametrize("suffix", [".ome.zarr", ".tif"])
def test_kill_9_then_resume_gives_identical_bytes(cli, fast_model, tmp_path, rng, suffix):
    vol = rng.integers(0, 5000, size=(96, 40, 40)).astype(np.uint16)
    src = tmp_path / "in.tif"
    write_volume(src, vol, voxel_size=VS)
    ref = tmp_path / f"ref{suffix}"
    block = ["--block", "16", "40", "40"]
    proc = cli("resin-run", "--engine", str(fast_model), str(src), "-o", str(ref), "--device",
               "cpu", "--tile", "8", "20", "20", "--mip", str(tmp_path / "mref"), *block)
    assert proc.returncode == 0, proc.stderr

    out = tmp_path / f"out{suffix}"
    for _attempt in range(3):
        bg = _run_bg(fast_model, src, out, "--mip", str(tmp_path / "mout"), "--overwrite",
                     *block)
        killed = False
        while bg.poll() is None:
            if _done_blocks(out, suffix) >= 1:
                os.kill(bg.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.005)
        bg.wait()
        if killed and not out.exists():
            break
    else:
        pytest.skip("the run always finished before it could be killed")
    assert bg.returncode == -signal.SIGKILL
    assert not out.exists(), "an unfinished output must not appear under the final name"
    assert Path(str(out) + ".resin-lock").exists()  # the dead run's lock: stale, taken over

    again = cli("resin-run", "--engine", str(fast_model), str(src), "-o", str(out))
    assert "--resume" in assert_one_line_error(again)  # exists, no --resume: refused
    proc = cli("resin-run", "--engine", str(fast_model), str(src), "-o", str(out), "--device",
               "cpu", "--tile", "8", "20", "20", "--resume", "--mip", str(tmp_path / "mout"),
               *block)
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stderr and "stale lock" in proc.stderr
    ref_name = "ref" + suffix
    got, expect = _tree_bytes(out), _tree_bytes(ref)
    if suffix == ".ome.zarr":  # the group's name (from the path) differs; the chunks do not
        got.pop("zarr.json")
        expect.pop("zarr.json")
    assert got.keys() == expect.keys()
    for k in expect:
        assert got[k] == expect[k], f"{ref_name}/{k} differs after resume"
    for axis in "zyx":
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "mout" / f"out_mip_{axis}.tif"),
                                      tifffile.imread(tmp_path / "mref" / f"ref_mip_{axis}.tif"))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("out")
                 and p.name != out.name]
    assert not leftovers, leftovers


def test_resume_with_other_settings_is_refused(cli, fast_model, tmp_path, rng):
    vol = rng.integers(0, 5000, size=(20, 16, 16)).astype(np.uint16)
    src = tmp_path / "in.tif"
    write_volume(src, vol)
    out = tmp_path / "out.zarr"
    args = ["resin-run", "--engine", str(fast_model), str(src), "-o", str(out), "--device",
            "cpu", "--tile", "8", "16", "16"]

    def interrupted() -> None:  # a finished run's output moved back to look unfinished
        assert cli(*args, "--overwrite").returncode == 0
        shutil.rmtree(str(out) + ".partial", ignore_errors=True)
        os.replace(out, str(out) + ".partial")

    # a partial output from a run whose record was lost (or another tool's store)
    interrupted()
    line = assert_one_line_error(cli(*args, "--resume"))
    assert "cannot resume" in line and "missing" in line
# -- bad inputs: exit 2, one line, an existing output untouched ----------------------------

def _bad_inputs(tmp_path: Path, rng) -> dict[str, tuple[list[str], str]]:
    good = rng.integers(0, 1000, size=(8, 12, 12)).astype(np.uint16)
    cases: dict[str, tuple[list[str], str]] = {}
    p = tmp_path / "flat.tif"
    tifffile.imwrite(p, good[0:2, 0])  # 2D
    cases["wrong rank"] = ([str(p)], "")
    p = tmp_path / "complex.tif"
    tifffile.imwrite(p, good.astype(np.complex64))
    cases["wrong dtype"] = ([str(p)], "")
    p = tmp_path / "nan.tif"
    bad = good.astype(np.float32)
    bad[3, 4, 5] = np.nan
    tifffile.imwrite(p, bad)
    cases["NaN"] = ([str(p)], "nan")
    p = tmp_path / "empty.zarr"
    zarr.create_array(p, shape=(0, 12, 12), dtype="uint16", chunks=(1, 12, 12))
    cases["empty"] = ([str(p)], "empty")
    p = tmp_path / "truncated.tif"
    tifffile.imwrite(p, good)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    cases["truncated"] = ([str(p)], "")
    p = tmp_path / "missing.tif"
    cases["missing input"] = ([str(p)], "")
    src = tmp_path / "good.tif"
    tifffile.imwrite(src, good)
    p = tmp_path / "notamodel.onnx"
    p.write_bytes(b"garbage")
    cases["wrong model"] = (["--engine", str(p), str(src)], "model")
    cases["missing engine"] = (["--engine", str(tmp_path / "nope.onnx"), str(src)], "model")
    p = tmp_path / "model.h5"
    p.write_bytes(b"x")
    cases["unknown model type"] = (["--engine", str(p), str(src)], "model")
    cases["bad tile"] = (["--tile", "2", "2", "2", str(src)], "tile")
    cases["bad output suffix"] = ([str(src), "-o", str(tmp_path / "out.png")], "")
    return cases


def test_bad_inputs_exit_2_one_line_output_untouched(cli, fast_model, tmp_path, rng):
    existing = tmp_path / "existing.tif"
    tifffile.imwrite(existing, np.full((2, 3, 3), 7, np.uint16))
    before = existing.read_bytes()
    cases = _bad_inputs(tmp_path, rng)
    for name, (args, needle) in cases.items():
        if "--engine" not in args:
            args = ["--engine", str(fast_model), *args]
        if "-o" not in args:
            args = [*args, "-o", str(existing), "--overwrite"]
        proc = cli("resin-run", "--device", "cpu", *args)
        line = assert_one_line_error(proc)
        assert needle.lower() in line.lower(), (name, line)
        assert existing.read_bytes() == before, f"{name}: existing output was modified"
        assert not list(tmp_path.glob("*.partial")), name
    # an existing output without --overwrite
    src = cases["wrong model"][0][-1]
    proc = cli("resin-run", "--engine", str(fast_model), src, "-o", str(existing))
    assert "--overwrite" in assert_one_line_error(proc)
    assert existing.read_bytes() == before


def test_model_without_metadata_is_exit_2(cli, model_factory, tmp_path, tiny_volume):
    plain = model_factory(tmp_path / "plain.onnx", with_metadata=False, features=(4,))
    src = tmp_path / "in.tif"
    write_volume(src, tiny_volume)
    proc = cli("resin-run", "--engine", str(plain), str(src), "--device", "cpu")
    assert "not a resin model" in assert_one_line_error(proc)
    assert not (tmp_path / "in_resin.ome.zarr").exists()


def test_allow_plan_host_code_reaches_the_backend(monkeypatch, tmp_path):
    """Host code in a plan runs only when the user says so on the command line."""
    from resin.runtime import enhancer
    from resin.runtime.cli import main

    seen = {}

    class Stop(Exception):
        pass

    def fake(path, backend, device, *, allow_plan_host_code=False):
        seen["allow"] = allow_plan_host_code
        raise Stop

    monkeypatch.setattr(enhancer, "choose_backend", fake)
    src = tmp_path / "in.tif"
    write_volume(src, np.zeros((4, 8, 8), np.uint16))
    for flag, expect in (([], False), (["--allow-plan-host-code"], True)):
        seen.clear()
        code = main(["--engine", "m.plan", str(src), "-o", str(tmp_path / "o.zarr"), *flag])
        assert code != 0 and seen["allow"] is expect


@pytest.mark.parametrize("faces,said", [("zeros", "faces zero-padded"),
                                         ("2", "faces padded by 2")])
def test_faces_below_the_halo_run_end_to_end_and_refuse_overlap(cli, fast_model, tmp_path,
                                                                 awkward_volume, faces, said):
    src = tmp_path / "in.tif"
    write_volume(src, awkward_volume, voxel_size=VS)
    out = tmp_path / "out.tif"
    proc = cli("resin-run", "--engine", str(fast_model), str(src), "-o", str(out),
               "--device", "cpu", "--tile", "8", "16", "16", "--faces", faces)
    assert proc.returncode == 0, proc.stderr
    assert said in proc.stderr + proc.stdout
    with Enhancer(fast_model, device="cpu", tile=(8, 16, 16), faces=faces) as enh:
        np.testing.assert_array_equal(read_volume(out), enh.enhance(awkward_volume))
    bad = cli("resin-run", "--engine", str(fast_model), str(src), "-o",
              str(tmp_path / "o2.tif"), "--device", "cpu", "--faces", faces, "--overlap", "2")
    assert "--faces repeat" in assert_one_line_error(bad)
    assert not (tmp_path / "o2.tif").exists()


def test_an_unknown_face_mode_is_one_line(cli, fast_model, tmp_path, awkward_volume):
    src = tmp_path / "in.tif"
    write_volume(src, awkward_volume)
    bad = cli("resin-run", "--engine", str(fast_model), str(src), "-o",
              str(tmp_path / "o.tif"), "--device", "cpu", "--faces", "mirror")
    assert "--faces must be repeat, zeros or a number" in assert_one_line_error(bad)


def test_a_run_with_the_bundled_model_says_what_it_was_trained_on(cli, fast_model, tmp_path,
                                                                  tiny_volume):
    src = tmp_path / "in.tif"
    write_volume(src, tiny_volume)
    proc = cli("resin-run", str(src), "-o", str(tmp_path / "out.tif"), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "model: the bundled one, trained on simulated tubes" in proc.stderr
    own = cli("resin-run", "--engine", str(fast_model), str(src), "-o",
              str(tmp_path / "own.tif"), "--device", "cpu")
    assert own.returncode == 0 and "trained on simulated tubes" not in own.stderr
