"""RESIN training: ``train(raw, out, config)``; needs torch (the ``train`` extra).

Nothing heavy is imported here; :func:`train` imports the trainer (and torch) on call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT); its text says what was saved and how to go on."""


def train(raw: str | os.PathLike, out: str | os.PathLike, config: Any = None,
          **kwargs: Any) -> Path:
    """Train RESIN on the raw volume ``raw``; write the chosen generator to ``out``.

    See :func:`resin.train.trainer.train` for the keyword arguments.
    """
    from resin._optional import require

    require("torch", "RESIN training", extra="train")
    from resin.train.trainer import train as _train

    return _train(raw, out, config, **kwargs)


def train_retrying(raw: str | os.PathLike, out: str | os.PathLike, config: Any,
                   retries: int = 0, *, resume: bool = False, overwrite: bool = False,
                   **kwargs: Any) -> Path:
    """:func:`train`, and while the end-of-training report warns of a run another seed may
    fix (``retry`` in ``MODEL.report.json``: structure lost, restored little), train again
    from the start with the next seed, at most ``retries`` times; each run replaces the
    previous one's files. ``resume`` continues the stopped run's seed (its ``MODEL.json``)
    when that is one of these retries (``resin train --retries N``)."""
    from resin import _log
    from resin.train.outputs import Paths, read_saved

    paths = Paths(Path(out))
    base = int(config.seed)
    first = 0
    if resume:
        seed = read_saved(paths.config).get("seed")
        if isinstance(seed, int) and 0 < seed - base <= retries:
            first = seed - base
    path = paths.model
    for k in range(first, retries + 1):
        run = config.model_copy(update={"seed": base + k})
        path = train(raw, out, run, resume=resume and k == first,
                     overwrite=overwrite or k > first, **kwargs)
        if not retries or not read_saved(paths.report_json).get("retry"):
            break
        if k == retries:
            _log.warn(f"warning: the report of every run warned (seeds {base} to {base + k}); "
                      f"{out} is the last one's (seed {base + k})")
        else:
            _log.log(f"the report warned of a run another seed may fix: training again with "
                     f"--seed {base + k + 1} (retry {k + 1} of {retries})")
    return path


__all__ = ["Interrupted", "train", "train_retrying"]
