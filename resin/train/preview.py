"""PNG previews written during training: raw beside F(raw), so a user can see it working.

Layout (one 8-bit greyscale PNG per preview): top row, the axial MIP (max over z) of the
raw preview block | of F(raw); bottom row, the x-z slice through the block's middle y of
raw | of F(raw), z downwards. Both halves share one intensity scale (the raw block's
0.1 and 99.9 percentiles), so brightness differences are real. A working model keeps the
top row alike and makes the bottom-right slice sharper along z (dots instead of streaks).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from resin._png import write_png


def preview_image(raw: np.ndarray, enhanced: np.ndarray, gap: int = 4) -> np.ndarray:
    """The uint8 mosaic described in the module docstring."""
    lo, hi = np.percentile(raw, [0.1, 99.9])
    scale = 255.0 / max(float(hi - lo), 1e-12)

    def u8(a: np.ndarray) -> np.ndarray:
        return np.clip((a - lo) * scale, 0, 255).astype(np.uint8)

    mid = raw.shape[1] // 2
    tiles = [[raw.max(axis=0), enhanced.max(axis=0)], [raw[:, mid, :], enhanced[:, mid, :]]]
    rows = []
    for left, right in tiles:
        sep = np.zeros((left.shape[0], gap), np.uint8)
        rows.append(np.concatenate([u8(left), sep, u8(right)], axis=1))
    width = max(r.shape[1] for r in rows)
    sep = np.zeros((gap, width), np.uint8)
    return np.concatenate([rows[0], sep, rows[1]], axis=0)


def write_preview(path: str | os.PathLike, raw: np.ndarray, enhanced: np.ndarray) -> Path:
    """Write the mosaic as a PNG (atomically), making its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_png(path, preview_image(raw, enhanced))
