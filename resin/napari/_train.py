"""What the Train widget runs, without Qt: ``resin train`` on a layer, and what it writes.

The run is :func:`resin.train.train` (the library behind ``resin train``) in a job; its
progress bar is followed step by step, and Stop ends it at the next step (``MODEL.last.pt``
keeps the last checkpoint, for ``resin train --resume``). Loss curves and previews are
read back from the files the run writes (``MODEL.losses.csv``, ``MODEL.previews/``).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psygnal import Signal

from resin import _log
from resin.errors import UsageError
from resin.napari._jobs import Job
from resin.napari._layers import close_volume, time_point

#: loss columns the widget plots (the generator's and discriminators' totals, the cycles)
PLOTTED = ("L_G", "L_D", "cycle1", "cycle2", "self")


class TrainedModels:
    """The models trained in this session; the Enhance widget offers the last one."""

    changed = Signal(object)

    def __init__(self) -> None:
        self.last: Path | None = None

    def add(self, path: Path) -> None:
        self.last = Path(path)
        self.changed.emit(self.last)


#: one registry per napari session (all viewers of the process)
trained = TrainedModels()


@dataclass(frozen=True)
class TrainSettings:
    """The widget's fields: as ``resin train RAW -o MODEL --preset P [--steps N] ...``."""

    model: Path
    preset: str = "quick"
    steps: int | None = None
    config_file: Path | None = None
    device: str = "auto"
    #: the time point of a time-series file to train on (``--time``), or "all"
    time: int | str | None = None
    #: train again with the next seed while the report warns, at most this many times
    retries: int = 0

    def overrides(self) -> dict[str, Any]:
        """The config file's fields ({} without one)."""
        if self.config_file is None:
            return {}
        try:
            overrides = json.loads(Path(self.config_file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{self.config_file}: not a readable JSON config ({exc})") from exc
        return overrides

    def config(self, overrides: dict[str, Any] | None = None) -> Any:
        """The run's TrainConfig; ``overrides``: the config file's fields if already read."""
        from resin.train.config_io import build_config

        if overrides is None:
            overrides = self.overrides()
        return build_config(self.preset, overrides, {"steps": self.steps, "time": self.time})

    def command_line(self, raw: str) -> str:
        import shlex

        args = ["resin", "train", raw, "-o", str(self.model), "--preset", self.preset]
        if self.steps:
            args += ["--steps", str(self.steps)]
        if self.config_file is not None:
            args += ["--config", str(self.config_file)]
        if self.device != "auto":
            args += ["--device", self.device]
        if self.time is not None:
            args += ["--time", str(self.time)]
        if self.retries:
            args += ["--retries", str(self.retries)]
        return shlex.join(args)


def default_model_path(layer_name: str, folder: Path | None = None) -> Path:
    """``~/resin-models/<layer>-<date-time>.pt``: a new file for every run."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in layer_name) or "model"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return (folder or Path.home() / "resin-models") / f"{safe}-{stamp}.pt"


def raw_input_for(volume: Any, source: str | None, model: Path) -> str:
    """A file ``resin train`` can read: the layer's own file, or the layer written beside
    the model as ``MODEL.raw.tif`` (a (T, Z, Y, X) series as a TZYX TIFF)."""
    if source is not None:
        return source
    import numpy as np

    from resin.io import write_volume

    path = Path(f"{model.with_suffix('')}.raw.tif")
    if len(volume.shape) == 4:  # a time series trained on every time point
        _write_series(path, volume)
        return str(path)
    write_volume(path, np.asarray(volume), overwrite=True)
    return str(path)


def _write_series(path: Path, series: Any) -> None:
    """``series`` (T, Z, Y, X) as a TZYX TIFF at ``path``, one time point in memory at a
    time, a lazy one read through readers of its own (:func:`time_point`; the viewer's
    slider closes its own); an ImageJ TIFF, or an OME-TIFF past what ImageJ holds; dtypes
    ImageJ cannot hold as float32. Written under a temporary name, then renamed."""
    import os

    import numpy as np
    import tifffile

    from resin.io._tiff import IMAGEJ_MAX_BYTES

    shape = tuple(int(s) for s in series.shape)
    dtype = np.dtype(series.dtype)
    if dtype not in (np.uint8, np.uint16, np.float32):
        dtype = np.dtype(np.float32)

    def planes() -> Any:
        for t in range(shape[0]):
            volume = time_point(series, t)
            try:
                data = np.asarray(volume).astype(dtype, copy=False)
            finally:
                close_volume(volume)
            yield from data

    big = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > IMAGEJ_MAX_BYTES
    partial = path.with_name(path.name + ".partial")
    tifffile.imwrite(partial, planes(), shape=shape, dtype=dtype, metadata={"axes": "TZYX"},
                     imagej=not big, ome=big, bigtiff=big)
    os.replace(partial, path)  # never a torn file under the name training reads


def train_layer(settings: TrainSettings, volume: Any, source: str | None, job: Job) -> Path:
    """Train on the layer; returns ``MODEL.pt``."""
    from resin.train import train_retrying
    from resin.train.config_io import fit_patch_to_volume

    overrides = settings.overrides()
    config = settings.config(overrides)  # a bad preset or config fails before any file is written
    settings.model.parent.mkdir(parents=True, exist_ok=True)
    try:
        raw = raw_input_for(volume, source, settings.model)
    finally:
        close_volume(volume)
    config = fit_patch_to_volume(raw, config, overrides)  # as `resin train` without --patch
    with _log.observe(job.follow):
        return train_retrying(raw, settings.model, config, settings.retries,
                              device=settings.device)


def read_losses(model: Path) -> dict[str, list[float]]:
    """The columns of ``MODEL.losses.csv`` written so far (``step`` among them)."""
    from resin.train.outputs import Paths

    path = Paths(model).losses
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {}
    columns: dict[str, list[float]] = {}
    for row in rows:
        try:
            values = {k: float(v) for k, v in row.items() if k and v not in (None, "")}
        except ValueError:
            continue  # a line being written
        for key, value in values.items():
            columns.setdefault(key, []).append(value)
    return columns


def report_warnings(model: Path) -> list[str]:
    """The warnings of the report a finished run wrote (``MODEL.report.json``'s notes:
    close to the identity, restored little, structure lost, ...); [] without one."""
    from resin.train.outputs import Paths, read_saved

    return [str(n) for n in read_saved(Paths(model).report_json).get("notes") or []]


def latest_preview(model: Path) -> Path | None:
    """The newest ``MODEL.previews/stepNNNNNNN.png``."""
    from resin.train.outputs import Paths

    folder = Paths(model).previews
    pngs = sorted(folder.glob("step*.png")) if folder.is_dir() else []
    return pngs[-1] if pngs else None
