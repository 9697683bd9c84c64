"""`resin demo` checks its shape and model before it makes anything, and a demo that fails
later removes the folder it made (never one that was there)."""

from __future__ import annotations

import pytest
import resin.runtime.demo as demo

from resin.errors import ResinError, UsageError


def _no_simulation(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("simulated before the inputs were checked")

    monkeypatch.setattr(demo, "demo_simulation", refuse)


def test_a_bad_shape_is_refused_before_the_folder_is_made(tmp_path, monkeypatch):
    _no_simulation(monkeypatch)
    with pytest.raises(UsageError, match="at least 8 voxels"):
        demo.run_demo(tmp_path / "d", shape=(4, 4, 4))
    assert list(tmp_path.iterdir()) == []


def test_a_bad_model_is_refused_before_the_folder_is_made(tmp_path, monkeypatch):
    _no_simulation(monkeypatch)
    text = tmp_path / "text.onnx"
    text.write_text("not a model")
    with pytest.raises(ResinError, match="text.onnx"):
        demo.run_demo(tmp_path / "d", shape=(8, 16, 16), engine=text, device="cpu")
    assert [p.name for p in tmp_path.iterdir()] == ["text.onnx"]


def test_cli_bad_model_is_one_line_and_leaves_no_folder(cli, tmp_path):
    from conftest import assert_one_line_error

    (tmp_path / "text.onnx").write_text("not a model")
    proc = cli("resin", "demo", "--out", "d", "--engine", "text.onnx", "--shape", "8", "16",
               "16", "--device", "cpu", cwd=tmp_path)
    assert "text.onnx" in assert_one_line_error(proc)
    assert [p.name for p in tmp_path.iterdir()] == ["text.onnx"]


def _failing_simulation(monkeypatch):
    def fail(*_a, **_k):
        raise UsageError("simulation failed")

    monkeypatch.setattr(demo, "demo_simulation", fail)


def test_a_failed_demo_removes_the_folders_it_made(fast_model, tmp_path, monkeypatch):
    _failing_simulation(monkeypatch)
    with pytest.raises(UsageError, match="simulation failed"):
        demo.run_demo(tmp_path / "new" / "deeper", shape=(8, 16, 16), engine=fast_model,
                      device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_demo_keeps_a_folder_that_was_there(fast_model, tmp_path, monkeypatch):
    _failing_simulation(monkeypatch)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="simulation failed"):
        demo.run_demo(mine / "demo", shape=(8, 16, 16), engine=fast_model, device="cpu")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]  # only the new "demo" went
    with pytest.raises(UsageError, match="simulation failed"):
        demo.run_demo(mine, shape=(8, 16, 16), engine=fast_model, device="cpu")
    assert (mine / "notes.txt").read_text() == "keep me"
