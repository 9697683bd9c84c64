"""The one exception hierarchy of resin.

Every failure a user can cause or fix is a :class:`ResinError` subclass carrying one
clear sentence (what was wrong, what to do). The CLIs print that sentence and exit
with :attr:`ResinError.exit_code`; tracebacks only with ``--debug``.
"""

from __future__ import annotations


class ResinError(Exception):
    """Base class of every user-facing resin error (exit code 1 unless a subclass says 2)."""

    exit_code: int = 1


class InputError(ResinError):
    """Bad usage or bad input the user can fix: exit code 2."""

    exit_code = 2


class UsageError(InputError):
    """Invalid command-line arguments or API parameters."""


class VolumeError(InputError):
    """A volume file is missing, unreadable, truncated, or has an unsupported shape/dtype."""


class ChooseOneError(VolumeError):
    """A file with several channels or time points was opened without choosing one."""

    noun = "entries"
    flag = "--index I"

    def __init__(self, path: str, count: int) -> None:
        self.path = path
        self.count = count
        super().__init__(f"{path}: has {count} {self.noun}; resin processes one: choose it "
                         f"with {self.flag} (0 to {count - 1})")


class ChannelsError(ChooseOneError):
    """A multi-channel volume was opened without saying which channel to process."""

    noun = "channels"
    flag = "--channel N"


class TimePointsError(ChooseOneError):
    """A time series was opened without saying which time point to process."""

    noun = "time points"
    flag = "--time T"


class OutputExistsError(InputError):
    """The output already exists and neither ``--overwrite`` nor ``--resume`` was given."""


class ModelError(InputError):
    """A model file is missing, corrupt, not a resin model, or incompatible with this runtime."""


class ResumeError(InputError):
    """An interrupted run cannot be resumed (journal missing or does not match the run)."""


class MissingDependencyError(InputError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str | None = None) -> None:
        self.module = module
        self.extra = extra
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"{module} is not installed{what}: install it with pip install 'resin[{extra}]'"
        )


class BackendError(ResinError):
    """No inference backend could be loaded; the message lists why each one failed."""


class ParityError(ResinError):
    """An exported model does not reproduce the PyTorch model within tolerance."""


class InferenceError(ResinError):
    """The network produced unusable output (NaN or infinity) for a tile."""


class TrainingError(ResinError):
    """Training diverged or could not proceed."""


__all__ = [
    "BackendError",
    "InferenceError",
    "InputError",
    "MissingDependencyError",
    "ModelError",
    "OutputExistsError",
    "ParityError",
    "ResinError",
    "ResumeError",
    "TrainingError",
    "UsageError",
    "VolumeError",
]
