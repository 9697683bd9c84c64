"""The files a training run writes beside ``MODEL.pt``, and when it may write them.

``resin train RAW -o MODEL.pt`` writes ``MODEL.pt``, ``MODEL.last.pt``, ``MODEL.json``,
``MODEL.losses.csv``, ``MODEL.previews/`` and, at the end, ``MODEL.report.json`` and
``MODEL.report.png`` (:mod:`resin.report`). The JSON, CSV and folder names are derived
from ``-o``, so they can belong to something else the user keeps beside the model;
:func:`check_outputs` runs before anything is written and replaces only what an earlier
run wrote:

- no flag: any of them existing is refused;
- ``overwrite``: files of an earlier run are replaced, anything else is refused (``MODEL.pt``
  and ``MODEL.last.pt`` too: they must be resin checkpoints, :func:`is_resin_checkpoint`);
- ``resume``: the training state must exist, and the others, where present, must be an
  earlier run's (they are appended to or kept).

Torch-free, so the rules are cheap to check and to test.
"""

from __future__ import annotations

import csv
import json
import pickletools
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resin.checkpoint import FORMAT
from resin.config import TrainConfig
from resin.errors import OutputExistsError, ResumeError

#: preview files (``write_png`` leaves ``.partial`` only when interrupted)
PREVIEW_NAME = re.compile(r"step\d{7}\.png(\.partial)?")


@dataclass
class Paths:
    """Files a run writes, all beside the output model."""

    model: Path
    state: Path = field(init=False)
    config: Path = field(init=False)
    losses: Path = field(init=False)
    previews: Path = field(init=False)
    report_json: Path = field(init=False)
    report_png: Path = field(init=False)

    def __post_init__(self) -> None:
        stem = self.model.with_suffix("")
        self.state = Path(f"{stem}.last.pt")
        self.config = Path(f"{stem}.json")
        self.losses = Path(f"{stem}.losses.csv")
        self.previews = Path(f"{stem}.previews")
        self.report_json = Path(f"{stem}.report.json")
        self.report_png = Path(f"{stem}.report.png")

    def all(self) -> tuple[Path, ...]:
        return (self.model, self.state, self.config, self.losses, self.previews,
                self.report_json, self.report_png)


def check_outputs(paths: Paths, loss_terms: Iterable[str], *, overwrite: bool = False,
                  resume: bool = False) -> None:
    """Refuse, before any work, to write over anything the rules above protect.

    ``loss_terms``: the loss columns the trainer writes to ``MODEL.losses.csv`` (between
    ``step`` and ``seconds``); a CSV without them is not a run's.
    """
    if resume and not paths.state.is_file():
        raise ResumeError(f"{paths.state}: nothing to resume (no training state beside "
                          f"{paths.model})")
    # Checked first, so that no message suggests a flag that would then be refused.
    for path, why in _foreign(paths, tuple(loss_terms)):
        if resume:
            raise ResumeError(f"{path} {why}, so it is not from this run; move it away to "
                              "resume")
        raise OutputExistsError(f"{path} exists and {why}; move it away or choose another "
                                "model name (--overwrite replaces only an earlier run's files)")
    if resume or overwrite:
        return
    for path in paths.all():
        if _exists(path):
            hint = " (or --resume to continue its training)" if paths.state.is_file() else ""
            raise OutputExistsError(f"{path} exists; pass --overwrite to replace it{hint} or "
                                    "choose another model name")


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _foreign(paths: Paths, terms: tuple[str, ...]) -> Iterator[tuple[Path, str]]:
    """``(path, why)`` for each existing output that no training run wrote."""
    checks = ((paths.model, _checkpoint_problem(paths.model)),
              (paths.state, _checkpoint_problem(paths.state)),
              (paths.config, _config_problem(paths.config)),
              (paths.losses, _losses_problem(paths.losses, terms)),
              (paths.previews, _previews_problem(paths.previews)),
              (paths.report_json, _report_problem(paths.report_json)),
              (paths.report_png, _png_problem(paths.report_png)))
    for path, why in checks:
        if why is not None:
            yield path, why


def _existing_file(check: Callable[..., str | None]) -> Callable[..., str | None]:
    """``check(path, ...)`` for a path that exists as a file; None when nothing is there,
    "is not a file" for a folder (or anything else) in a file's place."""

    def wrapped(path: Path, *args: Any) -> str | None:
        if not _exists(path):
            return None
        if not path.is_file():
            return "is not a file"
        return check(path, *args)

    return wrapped


def is_resin_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a file :func:`resin.checkpoint.save_checkpoint` wrote: a torch zip
    archive whose pickled dict starts with ``"format": "resin-checkpoint"``. Only the
    pickle's first opcodes are read, never run, so a large or hostile file costs nothing."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            if name is None:
                return False
            with archive.open(name) as fh:
                strings = []
                for count, (_, arg, _) in enumerate(pickletools.genops(fh)):
                    if isinstance(arg, str):
                        strings.append(arg)
                    if len(strings) == 2 or count > 16:
                        break
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError,
            zipfile.BadZipFile):
        return False
    return strings == ["format", FORMAT]


@_existing_file
def _checkpoint_problem(path: Path) -> str | None:
    return None if is_resin_checkpoint(path) else "is not a resin checkpoint"


@_existing_file
def _config_problem(path: Path) -> str | None:
    try:
        data = json.loads(path.read_bytes())
        TrainConfig.model_validate(data)
    except (OSError, ValueError):  # JSON and pydantic errors are ValueErrors
        return "is not a resin training config"
    # A run writes every field; a hand-written (--config) file names only some.
    if set(data) != set(TrainConfig.model_fields):
        return "is not a full resin training config (a run writes every field)"
    return None


@_existing_file
def _losses_problem(path: Path, terms: tuple[str, ...]) -> str | None:
    try:
        with path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
    except (OSError, UnicodeDecodeError, csv.Error):
        return "is not a readable CSV file"
    if not rows:
        return None  # a fresh run empties the CSV before its first row
    header = rows[0]
    if header[0] != "step" or header[-1] != "seconds" or not set(terms) <= set(header):
        return "does not have the columns of a resin losses CSV"
    if not all(r[0].isdigit() for r in rows[1:]):
        return "has rows without a step number"
    return None


def _previews_problem(path: Path) -> str | None:
    if not _exists(path):
        return None
    if not path.is_dir():
        return "is not a folder"
    others = sorted(p.name for p in path.iterdir() if not PREVIEW_NAME.fullmatch(p.name))
    if others:
        return f"holds files other than stepNNNNNNN.png ({others[0]})"
    return None


@_existing_file
def _report_problem(path: Path) -> str | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return "is not a resin training report"
    if not isinstance(data, dict) or not {"cutoff_before", "cutoff_after", "change"} <= set(data):
        return "is not a resin training report"
    return None


@_existing_file
def _png_problem(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError:
        return "is not readable"
    return None if head == b"\x89PNG\r\n\x1a\n" else "is not a PNG picture"


def read_saved(path: Path) -> dict:
    """A JSON object a run wrote (``MODEL.json``, ``MODEL.report.json``); {} when it is
    missing, unreadable or not an object (callers treat it as "nothing recorded")."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
