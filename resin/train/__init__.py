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


__all__ = ["Interrupted", "train"]
