"""What ``resin info`` reports about a volume, and an optional full read-through check."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from resin import _log
from resin.io._common import size_on_disk

#: below this many voxels a ``check`` runs without a progress bar
_QUIET_CHECK_VOXELS = 2**26


def volume_info(path: str | os.PathLike[str], check: bool = False,
                channel: int | None = None, time: int | None = None) -> dict[str, Any]:
    """Shape, dtype, voxel size, chunks, format and size on disk of a volume.

    ``check=True`` also reads every chunk once (z slab by z slab), so a truncated or
    corrupt file fails here with a VolumeError rather than hours into a run. A file with
    several channels (time points) is described by ``channel`` (``time``), or by its first
    when None, and then checked in every one: ``channels`` (``time_points``) says how many
    there are.
    """
    from resin.errors import ChannelsError, TimePointsError
    from resin.io import open_volume

    path = os.fspath(path)
    every_channel = every_time = False
    while True:
        try:
            reader = open_volume(path, channel, time)
            break
        except ChannelsError:
            channel, every_channel = 0, True
        except TimePointsError:
            time, every_time = 0, True
    with reader:
        info: dict[str, Any] = {
            "path": path,
            "format": reader.format,
            "channels": reader.channels,
            "channel": None if every_channel else reader.channel,
            "time_points": reader.time_points,
            "time": None if every_time else reader.time,
            "shape": list(reader.shape),
            "dtype": str(reader.dtype),
            "voxel_size_um": None if reader.voxel_size is None else list(reader.voxel_size),
            "chunks": list(reader.chunks),
            "size_on_disk": _size_on_disk(reader, path),
            "attrs": reader.attrs,
            "complete": bool(getattr(reader, "complete", True)),
        }
        if not info["complete"]:
            from resin.runtime.runstate import progress_of

            blocks = progress_of(path)
            info["blocks_done"] = None if blocks is None else list(blocks)
        if check:
            channels = range(reader.channels) if every_channel else [channel]
            times = range(reader.time_points) if every_time else [time]
            readers = [reader]
            try:
                readers += [open_volume(path, c, t) for t in times for c in channels
                            if (c, t) != (channel, time)]
                _check(path, readers)
            finally:
                for other in readers[1:]:
                    other.close()
            every = [f"{n} {what}" for n, what, on in (
                (reader.channels, "channels", every_channel),
                (reader.time_points, "time points", every_time)) if on]
            info["check"] = "ok: every chunk was read" + (
                f" in all {' x '.join(every)}" if every else "")
            stored_chunks = getattr(reader, "stored_chunks", None)
            if stored_chunks is not None:
                stored, total = stored_chunks()
                info["chunks_absent"] = total - stored
                info["chunks_total"] = total
    return info


def _size_on_disk(reader: Any, path: str) -> int:
    """Bytes of the volume's files: the HDF5 file a dataset lies in, every TIFF plane of a
    folder or pattern, else the path's file or store."""
    files = getattr(reader, "files", None)
    if files is not None:
        return sum(os.path.getsize(f) for f in files)
    return size_on_disk(getattr(reader, "file", path))


def _check(path: str, readers: list[Any]) -> None:
    """Read every z slab of every reader once (a progress bar for big volumes); a float
    volume holding NaN or infinity fails, as resin-run and resin train refuse it."""
    import numpy as np

    from resin.errors import VolumeError

    z, y, x = readers[0].shape
    step = max(1, readers[0].chunks[0])
    voxels = z * y * x * len(readers)
    bar = _log.progress(voxels, f"checking {path}") if voxels >= _QUIET_CHECK_VOXELS else None
    bad, first = 0, ""
    with bar or contextlib.nullcontext() as handle:
        for reader in readers:
            for z0 in range(0, z, step):
                z1 = min(z, z0 + step)
                slab = reader.read((slice(z0, z1), slice(0, y), slice(0, x)))
                if slab.dtype.kind == "f":
                    nonfinite = ~np.isfinite(slab)
                    count = int(np.count_nonzero(nonfinite))
                    if count and not bad:
                        dz, dy, dx = np.argwhere(nonfinite)[0]
                        first = f"z, y, x = {z0 + dz}, {dy}, {dx}" + _which(reader, readers)
                    bad += count
                if handle is not None:
                    handle.advance((z1 - z0) * y * x)
    if bad:
        raise VolumeError(f"{path}: {bad} of {voxels} voxels are NaN or infinite (the first "
                          f"at {first}); resin-run and resin train refuse such a volume")


def _which(reader: Any, readers: list[Any]) -> str:
    """Which channel / time point ``reader`` reads, when several are checked."""
    if len(readers) == 1:
        return ""
    parts = [f"{what} {value}" for what, value in (("time point", reader.time),
                                                   ("channel", reader.channel))
             if value is not None]
    return f" in {', '.join(parts)}" if parts else ""


def format_bytes(n: int) -> str:
    """``n`` bytes in B, KiB, MiB, GiB or TiB, for people."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def format_info(info: dict[str, Any]) -> str:
    """The human-readable ``resin info`` report, one field per line."""
    def triple(values: list[Any]) -> str:
        return " x ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

    vs = info["voxel_size_um"]
    z, y, x = info["shape"]
    dtype_bytes = {"uint8": 1, "uint16": 2, "float32": 4}.get(info["dtype"], 4)
    rows = [
        ("path", info["path"]),
        ("format", info["format"]),
    ]
    channels = info.get("channels", 1)
    if channels > 1 and info.get("channel") is None:
        rows.append(("channels", f"{channels} (resin processes one: choose it with "
                                 "--channel N; shown: channel 0)"))
    time_points = info.get("time_points", 1)
    if time_points > 1 and info.get("time") is None:
        rows.append(("time points", f"{time_points} (resin processes one: choose it with "
                                    "--time T; shown: time point 0)"))
    rows += [
        ("shape", f"{triple(info['shape'])} (z, y, x)"),
        ("dtype", info["dtype"]),
        ("voxel size", "unknown" if vs is None else f"{triple(vs)} um (z, y, x)"),
        ("chunks", f"{triple(info['chunks'])} (z, y, x)"),
        ("size on disk", f"{format_bytes(info['size_on_disk'])} (uncompressed "
                         f"{format_bytes(z * y * x * dtype_bytes * channels * time_points)})"),
    ]
    if not info.get("complete", True):
        blocks = info.get("blocks_done")
        done = f": {blocks[0]} of {blocks[1]} blocks" if blocks else ""
        rows.append(("state", f"incomplete{done} (an unfinished resin-run; rerun it with "
                              "--resume to finish it)"))
    if info.get("attrs"):
        rows.append(("resin attrs", ", ".join(sorted(info["attrs"]))))
    if "check" in info:
        rows.append(("check", info["check"]))
    if info.get("chunks_absent"):
        absent = info["chunks_absent"]
        rows.append(("warning", f"{absent} of the array's {info['chunks_total']} chunks (all "
                                "its channels and time points) "
                                f"{'is' if absent == 1 else 'are'} not stored and read as the "
                                "fill value: regions written empty, or data lost by an "
                                "incomplete copy"))
    return "\n".join(f"{name + ':':<14}{value}" for name, value in rows)
