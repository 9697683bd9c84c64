"""Atomic file replacement that never writes through a symlink or into someone's file.

Every small file resin writes (reports, metrics, PNGs, checkpoints, run records) goes to a
temporary file created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``, a random name
beside the target), is flushed to disk, and is renamed over the target: a crash leaves the
old file or the new one, never a torn one, and a symlink planted at the temporary name
cannot redirect the write.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(
    os, "O_BINARY", 0)


@contextmanager
def exclusive_temp(path: str | os.PathLike[str]) -> Iterator[tuple[BinaryIO, Path]]:
    """A new temporary file beside ``path`` (open for writing) and its name; removed on error."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, _FLAGS, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh, tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | str | Callable[[BinaryIO], None],
                 durable: bool = True) -> Path:
    """Replace ``path`` with ``data`` (bytes, text as UTF-8, or a writer of a file object)."""
    target = Path(path)
    with exclusive_temp(target) as (fh, tmp):
        if callable(data):
            data(fh)
        else:
            fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def replace_dir(staging: str | os.PathLike[str], final: str | os.PathLike[str],
                aside: str | os.PathLike[str] | None = None) -> None:
    """Move the finished directory ``staging`` to ``final``. An existing ``final`` is moved
    ``aside`` first (default ``<final>.resin-old``), put back if the move fails, and removed
    only once the new one is in place: a failure never loses the old directory."""
    import shutil

    staging, final = Path(staging), Path(final)
    old = Path(aside) if aside is not None else final.with_name(final.name + ".resin-old")
    if old.exists():
        shutil.rmtree(old)
    moved = final.exists()
    if moved:
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except OSError:
        if moved:
            os.replace(old, final)
        raise
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def fsync_file(path: str | os.PathLike[str]) -> bool:
    """Flush a written file's data to disk; False if there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in directory ``path`` durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
