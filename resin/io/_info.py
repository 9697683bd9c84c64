"""What ``resin info`` reports about a volume, and an optional full read-through check."""

from __future__ import annotations

import os
from typing import Any

from resin import _log
from resin.io._common import size_on_disk

#: below this many voxels a ``check`` runs without a progress bar
_QUIET_CHECK_VOXELS = 2**26


def volume_info(path: str | os.PathLike[str], check: bool = False) -> dict[str, Any]:
    """Shape, dtype, voxel size, chunks, format and size on disk of a volume.

    ``check=True`` also reads every chunk once (z slab by z slab), so a truncated or
    corrupt file fails here with a VolumeError rather than hours into a run.
    """
    from resin.io import open_volume

    path = os.fspath(path)
    with open_volume(path) as reader:
        info: dict[str, Any] = {
            "path": path,
            "format": reader.format,
            "shape": list(reader.shape),
            "dtype": str(reader.dtype),
            "voxel_size_um": None if reader.voxel_size is None else list(reader.voxel_size),
            "chunks": list(reader.chunks),
            "size_on_disk": size_on_disk(path),
            "attrs": reader.attrs,
            "complete": bool(getattr(reader, "complete", True)),
        }
        if not info["complete"]:
            from resin.runtime.runstate import progress_of

            blocks = progress_of(path)
            info["blocks_done"] = None if blocks is None else list(blocks)
        if check:
            z, y, x = reader.shape
            step = max(1, reader.chunks[0])
            voxels = z * y * x
            if voxels < _QUIET_CHECK_VOXELS:
                for z0 in range(0, z, step):
                    reader.read((slice(z0, min(z, z0 + step)), slice(0, y), slice(0, x)))
            else:
                with _log.progress(voxels, f"checking {path}") as bar:
                    for z0 in range(0, z, step):
                        z1 = min(z, z0 + step)
                        reader.read((slice(z0, z1), slice(0, y), slice(0, x)))
                        bar.advance((z1 - z0) * y * x)
            info["check"] = "ok: every chunk was read"
    return info


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
        ("shape", f"{triple(info['shape'])} (z, y, x)"),
        ("dtype", info["dtype"]),
        ("voxel size", "unknown" if vs is None else f"{triple(vs)} um (z, y, x)"),
        ("chunks", f"{triple(info['chunks'])} (z, y, x)"),
        ("size on disk", f"{format_bytes(info['size_on_disk'])} "
                         f"(uncompressed {format_bytes(z * y * x * dtype_bytes)})"),
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
    return "\n".join(f"{name + ':':<14}{value}" for name, value in rows)
