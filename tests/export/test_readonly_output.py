"""An output folder `resin export` cannot write into is refused before any work."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("torch")

from resin.errors import UsageError  # noqa: E402


def read_only(monkeypatch, folder) -> None:
    """``folder`` behaves as on a read-only mount (no root needed, unlike a real one)."""
    real = os.access
    folder = os.path.abspath(folder)

    def access(path, mode, *args, **kwargs):
        if os.path.abspath(path) == folder and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("where", ["-o", "--bioimageio"])
def test_a_read_only_output_folder_is_refused_before_any_work(tiny_checkpoint, tmp_path,
                                                              monkeypatch, where):
    from resin.export import export_model

    import resin.checkpoint

    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(monkeypatch, ro)

    def refuse(*_a, **_k):
        raise AssertionError("the checkpoint was loaded before the output folder was checked")

    monkeypatch.setattr(resin.checkpoint, "load_checkpoint", refuse)
    kw = ({"onnx_out": ro / "m.onnx"} if where == "-o"
          else {"onnx_out": tmp_path / "m.onnx", "bioimageio": ro / "pkg"})
    with pytest.raises(UsageError, match="not writable"):
        export_model(tiny_checkpoint, **kw)
    assert list(ro.iterdir()) == [] and not (tmp_path / "m.onnx").exists()
