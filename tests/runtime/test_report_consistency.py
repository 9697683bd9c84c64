"""`resin-run --report` measures |D(F(y)) - y| with the D exported beside F (or in a .pt):
the numbers equal a direct torch computation on the whole volume."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from _checkpoints import make_checkpoint

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from resin.runtime.normalize import sample_levels  # noqa: E402

from resin.checkpoint import build_degrader, build_generator, load_checkpoint  # noqa: E402
from resin.data import lerp_planes  # noqa: E402
from resin.io import write_volume  # noqa: E402

D_CONFIG = {"kind": "kernel", "kernel_size": 7}


def _export(path, scale=(1.0, 1.0, 1.0), seed=0):
    from resin.export import export_model

    ckpt = make_checkpoint(path, features=(4,), scale=scale, seed=seed, degrader=D_CONFIG)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(ckpt)
    return ckpt


def _volume(rng, shape=(16, 30, 26)) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    vol = gaussian_filter(rng.random(shape) ** 6, (2.0, 1.0, 1.0)) * 4000 + 100
    return vol.astype(np.float32)


def _torch_residual(ckpt_path, vol: np.ndarray) -> tuple[float, float]:
    """|D(F(y)) - y| on the whole volume, y normalized as the runtime does (its levels),
    F run on y padded by its exact halo (faces repeated) as the runtime's tiles see it, D on all
    of F(y)."""
    from resin.export import read_onnx_metadata

    ckpt = load_checkpoint(ckpt_path)
    h = read_onnx_metadata(ckpt_path.with_suffix(".onnx")).halo
    lv = sample_levels(lambda r: vol[r], vol.shape, 0.5, 99.9)
    y = (vol - np.float32(lv.low)) / np.float32(lv.high - lv.low)
    padded = np.pad(y, [(n, n) for n in h], mode="edge")
    k = round(ckpt["scale"][0])
    with torch.no_grad():
        fy = build_generator(ckpt)(torch.from_numpy(padded)[None, None])
        fy = fy[..., h[0] * k:(h[0] + vol.shape[0]) * k, h[1]:-h[1], h[2]:-h[2]]
        dfy = build_degrader(ckpt)(fy)[0, 0].numpy()
    if k > 1:  # what F saw: the (face-padded) input interpolated by K along z
        y = lerp_planes(padded, h[0] + np.arange(vol.shape[0] * k) / k)[:, h[1]:-h[1], h[2]:-h[2]]
    r = np.abs(dfy.astype(np.float64) - y)
    return float(r.mean()), float(np.percentile(r, 99))


def _run(cli, engine, src, out, *extra):
    return cli("resin-run", "--engine", str(engine), str(src), "-o", str(out), "--device",
               "cpu", "--exact-halo", "--report", *extra)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {"plain": _export(folder / "plain.pt"), "other": _export(folder / "other.pt", seed=5),
            "zstep": _export(folder / "zstep.pt", scale=(2.0, 1.0, 1.0))}


@pytest.mark.parametrize("name,engine", [("plain", ".onnx"), ("plain", ".pt"),
                                         ("zstep", ".onnx")])
def test_report_residual_equals_torch_d_of_f(cli, models, tmp_path, rng, name, engine):
    from PIL import Image

    vol = _volume(rng)
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_volume(src, vol)
    model = models[name].with_suffix(engine)
    proc = _run(cli, model, src, out, *(["--backend", "torch"] if engine == ".pt" else []))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "out.tif.report.json").read_text())
    mean, p99 = _torch_residual(models[name], vol)
    assert data["residual"] == pytest.approx(mean, rel=1e-4)
    assert data["residual_p99"] == pytest.approx(p99, rel=1e-4)
    assert data["residual"] > 1e-3  # an untrained F: D(F(y)) is visibly not y
    k = 2 if name == "zstep" else 1
    assert data["consistency"]["region"] == [[0, vol.shape[0] * k], [0, 30], [0, 26]]
    assert data["consistency"]["halo"] == [3, 3, 3]
    assert "consistency |D(F(y)) - y|: mean" in proc.stderr
    png = np.asarray(Image.open(tmp_path / "out.tif.report.png"))
    assert png.shape == (30, 3 * 26 + 2 * 4)  # input | output | residual, MIPs along z
    assert png[:, 30:56].max() > 0 and png[:, 60:].max() > 0


def test_report_on_a_sample_reads_d_halo_around_it(models, tmp_path, rng):
    """On a volume larger than the sample, D sees real context: the residual of the
    sampled block equals the whole volume's residual cropped there."""
    from resin.runtime import Enhancer

    from resin.consistency import consistency_on_files, open_degrader
    from resin.report import sample_regions

    vol = _volume(rng, (20, 40, 36))
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_volume(src, vol)
    onnx = models["plain"].with_suffix(".onnx")
    with Enhancer(onnx, device="cpu", exact_halo=True) as enh:
        report = enh.run(src, out)
        d = open_degrader(onnx, enh.metadata.weights_sha256)
    assert not isinstance(d, str)
    r_in, r_out = sample_regions(vol.shape, vol.shape, side=12)
    lv = report.levels
    got = consistency_on_files(src, out, d, lv.low, lv.high, r_in, r_out)
    whole = consistency_on_files(src, out, d, lv.low, lv.high,
                                 *sample_regions(vol.shape, vol.shape))
    np.testing.assert_allclose(got.degraded, whole.degraded[r_out], atol=1e-5)
    np.testing.assert_array_equal(got.raw, whole.raw[r_out])


def test_a_d_of_another_f_is_ignored_with_a_warning(cli, models, tmp_path, rng):
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_volume(src, _volume(rng))
    engine = tmp_path / "m.onnx"
    shutil.copy(models["plain"].with_suffix(".onnx"), engine)
    shutil.copy(models["other"].with_suffix(".degrader.onnx"), tmp_path / "m.degrader.onnx")
    proc = _run(cli, engine, src, out)
    assert proc.returncode == 0, proc.stderr
    assert "m.degrader.onnx was exported with another F" in proc.stderr
    data = json.loads((tmp_path / "out.tif.report.json").read_text())
    assert data["residual"] is None and data["ratios_after"]
    assert not (tmp_path / "out.tif.report.png").exists()


def test_a_broken_d_is_a_warning_not_a_failed_run(cli, models, tmp_path, rng):
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_volume(src, _volume(rng))
    engine = tmp_path / "m.onnx"
    shutil.copy(models["plain"].with_suffix(".onnx"), engine)
    (tmp_path / "m.degrader.onnx").write_bytes(b"not onnx")
    proc = _run(cli, engine, src, out)
    assert proc.returncode == 0, proc.stderr
    assert "warning: " in proc.stderr and "consistency not measured" in proc.stderr
    assert json.loads((tmp_path / "out.tif.report.json").read_text())["residual"] is None


def test_an_existing_report_map_is_refused_before_the_run(cli, models, tmp_path, rng):
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_volume(src, _volume(rng))
    (tmp_path / "out.tif.report.png").write_text("mine")
    proc = _run(cli, models["plain"].with_suffix(".onnx"), src, out)
    assert proc.returncode == 2 and "out.tif.report.png exists" in proc.stderr
    assert not out.exists() and (tmp_path / "out.tif.report.png").read_text() == "mine"


def test_a_pt_without_d_says_so_in_one_line(cli, tmp_path, rng):
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_volume(src, _volume(rng))
    bare = make_checkpoint(tmp_path / "bare.pt", features=(4,))
    proc = _run(cli, bare, src, out, "--backend", "torch")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "D(F(y))" in ln]
    assert len(lines) == 1 and "bare.pt carries no D" in lines[0]
    assert json.loads((tmp_path / "out.tif.report.json").read_text())["residual"] is None


def _enhanced(models, tmp_path, vol):
    """``vol`` written as in.tif and run through the plain model's ONNX (exact halo) to
    out.tif: (input, output, model, the run's levels, the model's weights SHA-256)."""
    from resin.runtime import Enhancer

    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_volume(src, vol)
    onnx = models["plain"].with_suffix(".onnx")
    with Enhancer(onnx, device="cpu", exact_halo=True) as enh:
        levels = enh.run(src, out).levels
        return src, out, onnx, levels, enh.metadata.weights_sha256


def test_an_output_that_does_not_explain_the_input_is_a_warning_in_the_run_report(
        models, tmp_path, rng, monkeypatch):
    """The warning is decided once the residual is known (after the spectral report), so
    `resin-run --report` carries it as `resin train`'s report does."""
    from resin.runtime.cli import _write_report

    import resin.report

    src, out, onnx, levels, sha = _enhanced(models, tmp_path, _volume(rng))
    report = tmp_path / "out.tif.report.json"

    def notes_with_threshold(threshold: float) -> list[str]:
        monkeypatch.setattr(resin.report, "INCONSISTENT_RESIDUAL", threshold)
        _write_report(str(src), str(out), (onnx, sha), (levels.low, levels.high))
        data = json.loads(report.read_text())
        assert data["residual"] > 0
        return [n for n in data["notes"] if "does not explain the input" in n]

    assert not notes_with_threshold(1e9)
    residual = json.loads(report.read_text())["residual"]
    assert not notes_with_threshold(2 * residual)
    assert notes_with_threshold(residual / 2)


def test_the_run_report_opens_input_and_output_once(models, tmp_path, rng, monkeypatch):
    """The spectral part and the consistency part read the same two open files (a TIFF is
    parsed on every open; a remote Zarr costs a round trip)."""
    from resin.runtime.cli import _write_report

    import resin.io

    src, out, onnx, levels, sha = _enhanced(models, tmp_path, _volume(rng))
    opened: list[str] = []
    real_open = resin.io.open_volume

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(resin.io, "open_volume", counting_open)
    _write_report(str(src), str(out), (onnx, sha), (levels.low, levels.high))
    assert sorted(opened) == sorted([str(src), str(out)])
    assert json.loads((tmp_path / "out.tif.report.json").read_text())["residual"] > 0


def test_the_residuals_input_is_what_the_runtime_fed_f_bit_for_bit(models, tmp_path, rng):
    """y in |D(F(y)) - y| is normalized with the runtime's own arithmetic (normalize_tile),
    not a re-derivation that differs in the last bit."""
    from resin.runtime.normalize import normalize_tile

    from resin.consistency import consistency_on_files, open_degrader
    from resin.report import sample_regions

    vol = _volume(rng, (20, 40, 36)) * np.float32(1.37)
    src, out, onnx, levels, sha = _enhanced(models, tmp_path, vol)
    d = open_degrader(onnx, sha)
    r_in, r_out = sample_regions(vol.shape, vol.shape, side=12)
    got = consistency_on_files(src, out, d, levels.low, levels.high, r_in, r_out)
    assert np.array_equal(got.raw, normalize_tile(vol[r_in], levels))
