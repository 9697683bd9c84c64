"""The one PNG writer of resin: 8-bit greyscale, zlib only (no imaging library).

It sits below both the runtime (``--mip`` PNGs, the demo's ``mip.png``, the bioimage.io
cover) and training (previews), so neither imports the other for it and the base
install can write PNGs.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from resin._atomic import atomic_write


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a 2-D uint8 grey image as PNG, atomically."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim != 2:
        raise ValueError(f"write_png takes a 2-D grey image, not shape {img.shape}")
    h, w = img.shape
    raw = b"".join(b"\x00" + img[i].tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    body = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    return atomic_write(path, body, durable=False)
