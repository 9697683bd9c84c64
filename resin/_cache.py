"""resin's user cache: things it can rebuild but would rather not (measured halos, engines).

The folder is ``$RESIN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/resin``, else
``~/.cache/resin``. Deleting it is always safe. Entries are keyed by a content hash, so a
changed model never meets a stale entry.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache folder (or a subfolder of it); not created here."""
    root = os.environ.get("RESIN_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache") / "resin"
    return base.joinpath(*parts)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
