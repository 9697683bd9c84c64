"""``--mip DIR``: the three MIPs of the output as TIFF, and a PNG of raw beside enhanced.

The PNG shows, for raw (top) and enhanced (below), the projection along z (the lateral
view) and along y (an axial x-z view, stretched by the voxel aspect so the axial blur
looks as it is). Both rows use the raw volume's intensity range, so a sharper axial
profile is visible as it is, not re-scaled away. PNG written by :mod:`resin._png` (no
imaging library).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from resin.runtime.pipeline import Mips

from resin._png import write_png


def _to_uint8(img: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (img.astype(np.float32) - low) / max(high - low, 1e-12)
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def _stretch_z(img: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(img, factor, axis=0) if factor > 1 else img


def comparison_image(raw: Mips, enhanced: Mips,
                     voxel_size: tuple[float, float, float] | None = None,
                     extra: list[Mips] | None = None) -> np.ndarray:
    """Rows of [along z | along y]: raw, enhanced, then any ``extra`` (e.g. the truth).

    Raw and enhanced share the raw's intensity range; extra rows use their own.

    The along-y (x-z) panel of each row is stretched in z by the voxel aspect of that
    row's volume (its z size relative to the raw's), so every row is shown to scale.
    """
    factor_raw = 1
    if voxel_size is not None and voxel_size[2] > 0:
        factor_raw = max(1, round(voxel_size[0] / voxel_size[2]))
    low, high = np.percentile(raw.along_z.astype(np.float64), [0.5, 99.8])
    panels = []
    for i, m in enumerate((raw, enhanced, *(extra or []))):
        z_ratio = m.along_y.shape[0] / max(1, raw.along_y.shape[0])
        factor = max(1, round(factor_raw / z_ratio))
        lo, hi = (low, high) if i < 2 else np.percentile(m.along_z.astype(np.float64),
                                                         [0.5, 99.8])
        lat = _to_uint8(m.along_z, lo, hi)
        ax = _to_uint8(_stretch_z(m.along_y, factor), lo, hi)
        panels.append((lat, ax))
    height = max(max(p[0].shape[0], p[1].shape[0]) for p in panels)
    width_l = max(p[0].shape[1] for p in panels)
    width_a = max(p[1].shape[1] for p in panels)
    gap = 4
    rows = len(panels)
    canvas = np.zeros((rows * height + (rows - 1) * gap, width_l + gap + width_a), np.uint8)
    for row, (lat, ax) in enumerate(panels):
        y0 = row * (height + gap)
        canvas[y0:y0 + lat.shape[0], :lat.shape[1]] = lat
        canvas[y0:y0 + ax.shape[0], width_l + gap:width_l + gap + ax.shape[1]] = ax
    return canvas


def write_mips(directory: str | Path, stem: str, raw: Mips | None, enhanced: Mips,
               voxel_size: tuple[float, float, float] | None = None) -> list[Path]:
    """``<stem>_mip_{z,y,x}.tif`` of the output and ``<stem>_mip.png`` (raw vs enhanced)."""
    import tifffile

    from resin.io._common import make_folder

    out = Path(directory)
    make_folder(out)
    written = []
    for axis, arr in (("z", enhanced.along_z), ("y", enhanced.along_y), ("x", enhanced.along_x)):
        p = out / f"{stem}_mip_{axis}.tif"
        tifffile.imwrite(p, arr)
        written.append(p)
    if raw is not None:
        p = out / f"{stem}_mip.png"
        write_png(p, comparison_image(raw, enhanced, voxel_size))
        written.append(p)
    return written
