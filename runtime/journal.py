"""The chunk-completion journal that lets an interrupted ``resin-run`` resume.

A small JSON file beside the output (``<output>.resin-journal.json``) records everything
that determines the output bytes (input, model hash, tile plan, blend, normalization
levels, output layout) and ``done_z``: every output plane below it is written. It is
rewritten atomically (temp file + rename) after each flushed slab, so a ``kill -9`` leaves
either the old or the new record, never a torn one. Running MIPs are saved beside it
(``.mips.npz``) before each update, so a resumed run's MIPs cover the whole volume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from resin.errors import ResumeError

VERSION = 1


def journal_path(output: str | os.PathLike) -> Path:
    out = Path(os.fspath(output).rstrip("/"))
    return out.with_name(out.name + ".resin-journal.json")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Journal:
    """Records progress of one run; ``identity`` is everything that must match to resume."""

    def __init__(self, output: str | os.PathLike, identity: dict[str, Any]) -> None:
        self.path = journal_path(output)
        self.mips_path = self.path.with_name(self.path.name[: -len(".json")] + ".mips.npz")
        self.identity = json.loads(json.dumps(identity))  # normalized: tuples -> lists
        self.done_z = 0

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> int:
        """Check the journal on disk matches this run; returns ``done_z``."""
        try:
            record = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResumeError(f"{self.path}: unreadable resume journal ({exc}); use "
                              "--overwrite to start over") from exc
        if record.get("version") != VERSION:
            raise ResumeError(f"{self.path}: journal from another resin version; use --overwrite")
        old = record.get("identity", {})
        for key, value in self.identity.items():
            if old.get(key) != value:
                raise ResumeError(
                    f"cannot resume: the interrupted run used a different {key} "
                    f"({old.get(key)!r}, now {value!r}); rerun with the same settings or "
                    "use --overwrite to start over")
        self.done_z = int(record.get("done_z", 0))
        return self.done_z

    def record(self, done_z: int, mips: dict[str, np.ndarray] | None = None) -> None:
        if mips:
            tmp = self.mips_path.with_name(self.mips_path.name + ".tmp.npz")
            np.savez(tmp, **mips)  # type: ignore[arg-type]
            os.replace(tmp, self.mips_path)
        self.done_z = int(done_z)
        body = {"version": VERSION, "identity": self.identity, "done_z": self.done_z}
        _atomic_write(self.path, json.dumps(body, indent=1).encode())

    def load_mips(self) -> dict[str, np.ndarray] | None:
        if not self.mips_path.is_file():
            return None
        with np.load(self.mips_path) as data:
            return {k: data[k] for k in data.files}

    def remove(self) -> None:
        for p in (self.path, self.mips_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
