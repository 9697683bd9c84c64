"""What makes a ``resin-run`` safe to interrupt, resume and run twice: the run record,
per-block done markers, and the output lock.

- The **run record** (``plan.json``) holds the plan's identity (input path, size and
  modification time, shape, dtype, levels; model file hash; backend and precision; tile,
  halo, overlap, blend; block and chunk grid; output dtype) and its SHA-256. ``--resume``
  refuses a run whose identity differs, naming the first field that does.
- A **done marker** (``done/<bz>.<by>.<bx>``) is created once a block's data has been
  written *and flushed to disk*, so after a power loss a marker never claims data that is
  not there. Markers are separate files, so processes on other machines can add them.
- The record lives in the output store (``OUT.partial/.resin-run`` for Zarr) or beside it
  (``OUT.resin-run`` for TIFF) and is removed when the output is complete.
- The **lock** (``OUT.resin-lock``, created exclusively) names the live run (host, pid,
  start); a second run on the same output is refused; a lock whose process is gone (same
  host) is stale and is taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from resin import _log
from resin._atomic import atomic_write, fsync_dir
from resin.errors import InputError, ResumeError

#: the run record's layout and the tiling it implies; 3: kept regions are split on the
#: planner's step (an axis of two tiles split at the second tile's start before), so a
#: run interrupted under 2 may not resume with other tile boundaries
VERSION = 3
RECORD_DIR = ".resin-run"
#: inside ``OUT.partial`` of a run over every time point / channel into one store
#: (:mod:`resin.runtime.series`): what the job is; only such a run may resume it
SERIES_RECORD = "resin-series.json"


class OutputBusyError(InputError):
    """Another live run is writing this output."""


def staging_path(output: str) -> str:
    """Where a run writes until it is complete (renamed to ``output`` at the end)."""
    return output.rstrip("/") + ".partial"


def record_dir(output: str, fmt: str) -> Path:
    if fmt == "zarr":
        return Path(staging_path(output)) / RECORD_DIR
    return Path(output.rstrip("/") + ".resin-run")


def recorded_tile(directory: Path) -> tuple[int, int, int] | None:
    """The tile an interrupted run's record names (None if there is no readable one)."""
    return _recorded_triple(directory, "tile")


def recorded_block(directory: Path) -> tuple[int, int, int] | None:
    """The output block an interrupted run's record names (None if none is readable): the
    memory budget may have chosen it, as it chose the tile."""
    return _recorded_triple(directory, "block")


def _recorded_triple(directory: Path, key: str) -> tuple[int, int, int] | None:
    try:
        value = json.loads((directory / "plan.json").read_text())["plan"][key]
        z, y, x = (int(v) for v in value)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return z, y, x


def canonical(identity: dict[str, Any]) -> dict[str, Any]:
    """JSON-normal form (tuples -> lists) so stored and fresh identities compare equal."""
    return json.loads(json.dumps(identity, sort_keys=True))


def plan_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(canonical(identity), sort_keys=True).encode()).hexdigest()


def input_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Size and modification time of the input: the file, or a directory store's metadata
    files (a rewrite of the array changes them) and the directory itself; for a dataset
    inside an HDF5 file, the file's and the dataset's path; for TIFF planes, every plane's."""
    from resin.io import volume_format
    from resin.io._hdf5 import split_path
    from resin.io._tiffseq import plane_files

    fmt = volume_format(path)
    file, inner = split_path(os.fspath(path))
    if fmt == "hdf5" and inner:
        return {**input_fingerprint(file), "dataset": inner}
    if fmt == "tiffseq":
        planes = {}
        for plane in plane_files(os.fspath(path)):
            st = os.stat(plane)
            planes[os.path.basename(plane)] = [st.st_size, st.st_mtime_ns]
        return {"path": str(Path(path).resolve()), "planes": planes}
    p = Path(path).resolve()
    if p.is_file():
        st = p.stat()
        return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    entries = {}
    for meta in sorted(p.glob("*")) + sorted(p.glob("*/*")):
        if meta.name in ("zarr.json", ".zarray", ".zgroup", ".zattrs") and meta.is_file():
            st = meta.stat()
            entries[str(meta.relative_to(p))] = [st.st_size, st.st_mtime_ns]
    return {"path": str(p), "mtime_ns": p.stat().st_mtime_ns, "metadata": entries}


class RunRecord:
    """The run record and done markers of one output (see the module docstring)."""

    def __init__(self, directory: Path, identity: dict[str, Any]) -> None:
        self.dir = Path(directory)
        self.identity = canonical(identity)
        self.sha256 = plan_hash(identity)
        self.done_dir = self.dir / "done"

    @classmethod
    def attach(cls, directory: str | os.PathLike[str], sha256: str) -> RunRecord:
        """The record of a run planned elsewhere (a worker only adds done markers)."""
        record = cls.__new__(cls)
        record.dir = Path(directory)
        record.identity = {}
        record.sha256 = sha256
        record.done_dir = record.dir / "done"
        return record

    @property
    def path(self) -> Path:
        return self.dir / "plan.json"

    def create(self, n_blocks: int) -> None:
        if self.dir.is_symlink():
            raise InputError(f"{self.dir} is a symbolic link; refusing to write through it")
        self.done_dir.mkdir(parents=True, exist_ok=True)
        body = {"version": VERSION, "plan_sha256": self.sha256, "blocks": int(n_blocks),
                "plan": self.identity}
        atomic_write(self.path, json.dumps(body, indent=1, sort_keys=True))
        fsync_dir(self.dir)

    def check(self) -> None:
        """Refuse to resume unless the recorded plan is this plan."""
        try:
            record = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise ResumeError(f"cannot resume: {self.path} is missing (the partial output was "
                              "not written by resin-run, or its record was deleted); use "
                              "--overwrite to start over") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ResumeError(f"cannot resume: unreadable run record {self.path} ({exc}); use "
                              "--overwrite to start over") from exc
        if record.get("version") != VERSION:
            raise ResumeError(f"cannot resume: {self.path} was written by another resin "
                              "version; use --overwrite to start over")
        if record.get("plan_sha256") == self.sha256:
            return
        old = record.get("plan", {})
        # what the user set first: a changed --faces also changes the block and chunks
        # that follow from it, and naming only those would point at the wrong option
        changed = sorted((k for k in set(old) | set(self.identity)
                          if old.get(k) != self.identity.get(k)),
                         key=lambda k: (k in _DERIVED, k))
        if changed:
            said = ", ".join(f"{k} ({_short(old.get(k))}, now {_short(self.identity.get(k))})"
                             for k in changed[:3])
            if len(changed) > 3:
                said += f" and {len(changed) - 3} more"
            raise ResumeError(
                f"cannot resume: the interrupted run used a different {said}; rerun with the "
                "same input, model and settings, or use --overwrite to start over")
        raise ResumeError(f"cannot resume: {self.path} does not match this run; use --overwrite")

    def done(self) -> set[str]:
        if not self.done_dir.is_dir():
            return set()
        return {p.name for p in self.done_dir.iterdir() if not p.name.startswith(".")}

    def mark(self, key: str) -> None:
        """Record block ``key`` as done (call only once its data is flushed)."""
        marker = self.done_dir / key
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            os.write(fd, self.sha256[:16].encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.done_dir)

    def mark_flushed(self, writer: Any, block: Any) -> None:
        """Flush a written block's data to disk, then mark it done: never the other way
        round, so after a power loss a marker never claims data that is not there."""
        writer.flush(block.region)
        self.mark(block.key)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def progress_of(output_or_staging: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(done, total)`` blocks of an unfinished run writing this store; None if none."""
    p = Path(os.fspath(output_or_staging).rstrip("/"))
    for d in (p / RECORD_DIR, Path(str(p) + ".resin-run"),
              Path(str(p).removesuffix(".partial") + ".resin-run")):
        plan = d / "plan.json"
        if plan.is_file():
            try:
                total = int(json.loads(plan.read_text()).get("blocks", 0))
            except (OSError, ValueError):
                total = 0
            done = len(list((d / "done").glob("[!.]*"))) if (d / "done").is_dir() else 0
            return done, total
    return None


#: run-record fields that follow from others (the tile and block from the budget, --block,
#: --faces and --overlap; the chunks from the block; the levels from the input), named after
#: the settings that differ
_DERIVED = frozenset({"tile", "halo", "block", "chunks", "levels"})


class OutputLock:
    """``OUT.resin-lock``: one live run per output (see the module docstring)."""

    def __init__(self, output: str) -> None:
        self.path = Path(output.rstrip("/") + ".resin-lock")
        self.held = False
        #: the folders acquire() created for the output, innermost first
        self._made: list[Path] = []

    def acquire(self) -> None:
        from resin.io._common import make_parent, missing_folders

        self._made = missing_folders(self.path.parent)
        make_parent(self.path)  # a new output folder is created, as a volume writer does
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            except OSError as exc:  # a read-only disk, no permission
                from resin.errors import UsageError

                raise UsageError(f"{self.path.parent}: cannot write the output there "
                                 f"({exc.strerror or exc})") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise OutputBusyError(f"{self.path} could not be taken; another run may be starting")

    def _take_over_if_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
            host, pid = str(owner["host"]), int(owner["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            owner, host, pid = {}, "?", -1
        output = str(self.path)[: -len(".resin-lock")]
        if host == socket.gethostname() and pid > 0 and not _alive(pid):
            _log.log(f"taking over the stale lock {self.path} (pid {pid} is gone)")
            self.path.unlink(missing_ok=True)
            return
        if host == "?":
            raise OutputBusyError(f"{output} is locked by an unreadable {self.path}; if no "
                                  "run is writing it, delete that file")
        raise OutputBusyError(f"{output} is being written by another run (pid {pid} on {host}, "
                              f"since {owner.get('started', '?')}); wait for it, or if it is "
                              f"dead delete {self.path}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
        # folders made for an output that a refusal left empty go too (a run that wrote
        # anything keeps them: rmdir only removes an empty folder)
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:
                break
        self._made = []

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
