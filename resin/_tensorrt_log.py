"""TensorRT's messages through Python logging (the ``resin`` logger), never straight to stderr.

TensorRT wants an ``ILogger`` for its builder and runtime; :func:`tensorrt_logger` gives one
that logs each message on the ``resin`` logger, where resin's own lines go
(:mod:`resin._log`). Its warnings are WARNING records, so an application embedding resin
sees them; its errors are kept (``.errors``) and given in the one-line error resin raises,
so they are logged only at DEBUG, like its info and verbose messages.
"""

from __future__ import annotations

import logging
from typing import Any

LOGGER = logging.getLogger("resin")


def tensorrt_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` subclass instance logging to ``resin``; ``.errors`` keeps the errors."""
    severity = trt.ILogger.Severity
    errors = (severity.INTERNAL_ERROR, severity.ERROR)

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level: Any, msg: str) -> None:
            text = " ".join(str(msg).split())
            if level in errors:
                self.errors.append(text)
            LOGGER.log(logging.WARNING if level == severity.WARNING else logging.DEBUG,
                       "TensorRT: %s", text)

    return _Logger()
