"""TensorRT's messages through Python logging (the ``resin`` logger), never straight to stderr.

TensorRT wants an ``ILogger`` for its builder and runtime; :func:`tensorrt_logger` gives one
that logs each message on the ``resin`` logger at the matching level and keeps the errors,
so that a failure can give TensorRT's own reason in resin's one-line message. Records of
that logger appear as ``--debug`` lines, and reach any handler an application configures.
"""

from __future__ import annotations

import logging
from typing import Any

from resin import _log

LOGGER = logging.getLogger("resin")


class _DebugLines(logging.Handler):
    """Shows the ``resin`` logger's records as resin's ``--debug`` lines (else nothing)."""

    def emit(self, record: logging.LogRecord) -> None:
        _log.debug(record.getMessage())


if not any(isinstance(h, _DebugLines) for h in LOGGER.handlers):
    LOGGER.addHandler(_DebugLines())


def tensorrt_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` subclass instance logging to ``resin``; ``.errors`` keeps the errors."""
    severity = trt.ILogger.Severity
    levels = {severity.INTERNAL_ERROR: logging.CRITICAL, severity.ERROR: logging.ERROR,
              severity.WARNING: logging.WARNING, severity.INFO: logging.INFO,
              severity.VERBOSE: logging.DEBUG}

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level: Any, msg: str) -> None:
            text = " ".join(str(msg).split())
            if level in (severity.INTERNAL_ERROR, severity.ERROR):
                self.errors.append(text)
            LOGGER.log(levels.get(level, logging.INFO), "TensorRT: %s", text)

    return _Logger()
