"""Which files beside MODEL.pt a training run may replace (torch-free: the checks only)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest

from resin.config import TrainConfig
from resin.errors import OutputExistsError, ResumeError
from resin.train.outputs import Paths, check_outputs

TERMS = ("cycle1", "cycle2", "G_yy", "D_yy")
RUN_CSV = "step,D_yy,G_yy,L_D,L_G,cycle1,cycle2,lr_factor,seconds\n1,0.5,0.5,1,2,3,4,1,0.2\n"


def _torch_file(path: Path, data: object) -> None:
    """A file laid out as ``torch.save`` writes one (a zip holding ``archive/data.pkl``)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(data, protocol=2))
        archive.writestr("archive/data/0", b"\0" * 16)


def _checkpoint(path: Path) -> None:
    """A checkpoint as resin.checkpoint.save_checkpoint lays it out (format key first)."""
    _torch_file(path, {"format": "resin-checkpoint", "format_version": 1, "step": 2})


def _earlier_run(paths: Paths) -> None:
    """The five outputs as a run leaves them."""
    _checkpoint(paths.model)
    _checkpoint(paths.state)
    paths.config.write_text(TrainConfig().model_dump_json(indent=2))
    paths.losses.write_text(RUN_CSV)
    paths.previews.mkdir()
    (paths.previews / "step0000002.png").write_bytes(b"png")
    paths.report_json.write_text('{"cutoff_before": {}, "cutoff_after": {}, "change": 0.1}')
    paths.report_png.write_bytes(b"\x89PNG\r\n\x1a\n....")


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(tmp_path / "sample.pt")


@pytest.mark.parametrize("which", ["model", "state", "config", "losses", "previews",
                                   "report_json", "report_png"])
def test_without_overwrite_any_existing_output_is_refused(paths, which):
    check_outputs(paths, TERMS)  # nothing there yet
    target = getattr(paths, which)
    if which == "previews":
        target.mkdir()
    elif which == "config":
        target.write_text(TrainConfig().model_dump_json())
    else:
        target.write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite") as err:
        check_outputs(paths, TERMS)
    assert str(target) in str(err.value) and "another model name" in str(err.value)


def test_overwrite_and_resume_accept_an_earlier_runs_files(paths):
    _earlier_run(paths)
    check_outputs(paths, TERMS, overwrite=True)
    check_outputs(paths, TERMS, resume=True)
    paths.losses.write_text("")  # a fresh run empties the CSV before its first row
    (paths.previews / "step0000004.png.partial").write_bytes(b"")  # an interrupted write
    check_outputs(paths, TERMS, overwrite=True)


FOREIGN = {
    "config": [("text", '{"name": "my sample", "pixels": [1, 2]}'),
               ("text", '{"steps": 500}'),  # a hand-written --config file: kept
               ("text", "not json"),
               ("dir", None)],
    "losses": [("text", "step,intensity\n1,5\n"),
               ("text", "sample,area\nA,5\n"),
               ("text", RUN_CSV + "total,,,,,,,,\n"),
               ("bytes", b"\xff\xfe\x00binary"),
               ("dir", None)],
    "previews": [("file", "notes.txt"), ("file", "cells.png"), ("text", "a file")],
}
CASES = [(which, kind, content) for which, cases in FOREIGN.items()
         for kind, content in cases]


@pytest.mark.parametrize(("which", "kind", "content"), CASES)
def test_files_resin_did_not_write_are_never_replaced(paths, which, kind, content):
    _earlier_run(paths)
    target = getattr(paths, which)
    if kind in ("text", "bytes", "dir"):
        if target.is_dir():
            (target / "step0000002.png").unlink()
            target.rmdir()
        else:
            target.unlink()
    if kind == "text":
        target.write_text(content)
    elif kind == "bytes":
        target.write_bytes(content)
    elif kind == "dir":
        target.mkdir()
    else:
        (target / content).write_text("mine")
    with pytest.raises(OutputExistsError) as err:
        check_outputs(paths, TERMS, overwrite=True)
    message = str(err.value)
    assert str(target) in message and "move it away" in message and "\n" not in message
    with pytest.raises(OutputExistsError, match="move it away"):
        check_outputs(paths, TERMS)  # no flag: the same message, not a hint to --overwrite
    with pytest.raises(ResumeError, match="move it away to resume"):
        check_outputs(paths, TERMS, resume=True)


def test_resume_needs_the_training_state(paths):
    with pytest.raises(ResumeError, match="nothing to resume"):
        check_outputs(paths, TERMS, resume=True)
    _checkpoint(paths.state)
    check_outputs(paths, TERMS, resume=True)



@pytest.mark.parametrize("which, content", [
    ("report_json", '{"my": "notes"}'),
    ("report_json", "not json"),
    ("report_png", "a text file"),
])
def test_a_report_file_resin_did_not_write_is_never_replaced(paths, which, content):
    getattr(paths, which).write_text(content)
    with pytest.raises(OutputExistsError, match="move it away"):
        check_outputs(paths, TERMS, overwrite=True)
    assert getattr(paths, which).read_text() == content


@pytest.mark.parametrize("which", ["model", "state"])
@pytest.mark.parametrize("content", [
    "my notes",  # a text file named like a model
    {"w": [1.0, 2.0]},  # someone else's torch file
    {"format": "other-checkpoint", "step": 2},
    {"step": 2, "format": "resin-checkpoint"},  # not laid out as save_checkpoint writes
    b"PK\x03\x04 a torn zip",
])
def test_a_model_or_state_resin_did_not_write_is_never_replaced(paths, which, content):
    """--overwrite replaces MODEL.pt and MODEL.last.pt only when they are resin checkpoints."""
    _earlier_run(paths)
    target = getattr(paths, which)
    if isinstance(content, str):
        target.write_text(content)
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        _torch_file(target, content)
    before = target.read_bytes()
    with pytest.raises(OutputExistsError) as err:
        check_outputs(paths, TERMS, overwrite=True)
    message = str(err.value)
    assert str(target) in message and "not a resin checkpoint" in message
    assert "move it away" in message and "\n" not in message
    with pytest.raises(OutputExistsError, match="move it away"):
        check_outputs(paths, TERMS)
    with pytest.raises(ResumeError, match="move it away to resume"):
        check_outputs(paths, TERMS, resume=True)
    assert target.read_bytes() == before


def test_a_folder_in_the_models_place_is_never_replaced(paths):
    paths.model.mkdir()
    with pytest.raises(OutputExistsError, match="is not a file"):
        check_outputs(paths, TERMS, overwrite=True)
