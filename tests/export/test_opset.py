"""`resin export --opset`: an opset no exporter writes is refused before any work, and no
file ever carries another opset than the one asked for."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from _checkpoints import make_checkpoint  # noqa: E402
from conftest import assert_one_line_error  # noqa: E402

from resin.errors import ModelError, UsageError  # noqa: E402


def _opset(path) -> int:
    from resin.export._onnx import graph_opset

    return graph_opset(onnx.load(str(path)))


@pytest.fixture(scope="module")
def checkpoint_with_d(tmp_path_factory):
    """F and the 'kernel' D: the two graphs `resin export` writes."""
    return make_checkpoint(tmp_path_factory.mktemp("opset") / "fd.pt",
                           degrader={"kind": "kernel", "kernel_size": 7})


def _no_checkpoint_load(monkeypatch):
    import resin.checkpoint

    def refuse(*_a, **_k):
        raise AssertionError("the checkpoint was loaded before the opset was checked")

    monkeypatch.setattr(resin.checkpoint, "load_checkpoint", refuse)


@pytest.mark.parametrize("opset,exporter,says", [
    (3, "auto", "torch's ONNX exporters write opset 9 to"),
    (8, "auto", "opset 9 to"),
    (99, "auto", "opset 9 to"),
    (24, "legacy", "the legacy exporter writes opset 9 to 23"),
    (17, "dynamo", "the dynamo exporter writes opset 18 to"),
])
def test_an_opset_no_exporter_writes_is_refused_before_any_work(
        tiny_checkpoint, tmp_path, monkeypatch, opset, exporter, says):
    from resin.export import export_model

    _no_checkpoint_load(monkeypatch)
    with pytest.raises(UsageError, match=says):
        export_model(tiny_checkpoint, tmp_path / "m.onnx", opset=opset, exporter=exporter)
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_opset_is_one_line_without_library_tracebacks(cli, tiny_checkpoint, tmp_path):
    proc = cli("resin", "export", str(tiny_checkpoint), "-o", str(tmp_path / "m.onnx"),
               "--opset", "3")
    line = assert_one_line_error(proc)
    assert "--opset 3" in line and "opset 9 to" in line
    assert list(tmp_path.iterdir()) == []


def test_the_supported_range_follows_the_installed_libraries():
    from resin.export._onnx import opset_range

    newest = onnx.defs.onnx_opset_version()
    assert opset_range("legacy") == (9, min(torch.onnx._constants.ONNX_MAX_OPSET, newest))
    assert opset_range("dynamo") == (18, newest)
    assert opset_range("auto") == (9, newest)


def _boundaries():
    from resin.export._onnx import opset_range

    legacy, dynamo = opset_range("legacy"), opset_range("dynamo")
    return [(legacy[0], "auto", "legacy"), (legacy[1], "legacy", "legacy"),
            (dynamo[0], "dynamo", "dynamo"), (dynamo[1], "auto", "dynamo")]


@pytest.mark.parametrize("opset,exporter,used", _boundaries())
def test_the_boundary_opsets_write_f_and_d_that_pass_parity(checkpoint_with_d, tmp_path,
                                                            opset, exporter, used):
    """The ends of each exporter's range really write that opset for F and for D, and
    ONNX Runtime reproduces torch with them."""
    from resin.export._degrader import _onnx_module
    from resin.export._onnx import export_graph, load_generator, parity

    from resin.checkpoint import build_degrader

    ckpt, generator = load_generator(checkpoint_with_d)
    degrader = build_degrader(ckpt)
    x = torch.rand(1, 12, 16, 20).numpy()
    for name, net, ref, m in (("f", generator, generator, generator.size_multiple),
                              ("d", _onnx_module(degrader), degrader, 1)):
        out = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            written = export_graph(net, torch.rand(1, 1, 16, 16, 16), out, opset, exporter,
                                   size_multiple=m)
        assert written == (used, opset) and _opset(out) == opset, name
        assert max(parity(out, ref, [x[0]])) < 1e-4, name


def test_export_model_records_the_opset_it_wrote(checkpoint_with_d, tmp_path):
    from resin.export import export_model
    from resin.export._onnx import opset_range

    from resin.metadata import degrader_path

    top = opset_range("auto")[1]  # beyond the legacy exporter: auto goes to dynamo
    out = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export_model(checkpoint_with_d, out, opset=top)
    assert _opset(out) == top and _opset(degrader_path(out)) == top
    record = (result.metadata.model_extra or {})["export"]
    assert record == {**record, "opset": top, "exporter": "dynamo"}


def test_a_file_with_another_opset_than_asked_is_a_failed_export(tmp_path, monkeypatch):
    """torch's dynamo exporter keeps opset 18 when it cannot convert to the one asked for
    (with tracebacks on stderr): that file is not kept."""
    from resin.export import _onnx

    def converts_to_18(net, example, path, opset, dynamic, size_multiple):
        _onnx._export_legacy(net, example, path, 18, dynamic)

    monkeypatch.setattr(_onnx, "_export_dynamo", converts_to_18)
    net = torch.nn.Conv3d(1, 1, 3, padding=1).eval()
    out = tmp_path / "c.onnx"
    with pytest.raises(ModelError, match="wrote opset 18, not the requested 19"):
        _onnx.export_graph(net, torch.rand(1, 1, 4, 4, 4), out, 19, exporter="dynamo")
    assert not out.exists()
    # auto: the legacy exporter writes it exactly, so it is the one used
    used = _onnx.export_graph(net, torch.rand(1, 1, 4, 4, 4), out, 19)
    assert used == ("legacy", 19) and _opset(out) == 19


def test_cli_dynamo_export_keeps_torchs_registry_notes_off_stderr(cli, tiny_checkpoint,
                                                                  tmp_path):
    """The dynamo exporter's registry logs a W-line for every torchvision op it skips."""
    proc = cli("resin", "export", str(tiny_checkpoint), "-o", str(tmp_path / "m.onnx"),
               "--exporter", "dynamo")
    assert proc.returncode == 0, proc.stderr
    assert "dynamo exporter" in proc.stderr
    assert "torchvision" not in proc.stderr and "Traceback" not in proc.stderr
    assert _opset(tmp_path / "m.onnx") == 18
