"""The natural views of an output made with an oblique PSF (``resin train --angle``).

A model trained for a PSF tilted ``angle`` degrees from z towards x restores the volume as
it was acquired; its blur was along the tilted axis, so that is the axis to look along.

- :func:`psf_mip`: the MIP along the PSF axis (the slanted MIP kernels), read from a
  written output slab by slab in y (each ray lies in one z-x plane), so memory holds one
  slab, never the volume. ``resin-run --mip DIR`` writes it as ``<name>_mip_psf.tif`` for
  such models.
- :func:`psf_frame`: the output resampled into the PSF-aligned frame (z' along the PSF
  axis, y unchanged, x' across; trilinear, the affine kernels), block by block: each
  output block reads the bounding box of its source region and resamples it. The result
  equals ``resin.kernels.rotate_axial(volume, angle)`` on the whole volume up to the
  rounding of the sample coordinates, which each block computes from its own origin
  (integers within 1 where an interpolated value lies at a half).
  ``resin-run --psf-frame OUT``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from resin import _log
from resin.errors import UsageError

#: memory for one y-slab of :func:`psf_mip` (at least one plane is read whatever it is)
SLAB_BYTES = 256 * 2**20
#: default output block of :func:`psf_frame`
FRAME_BLOCK = (64, 256, 256)


def _angle(angle_deg: float) -> float:
    angle = float(angle_deg)
    if not math.isfinite(angle) or angle == 0.0:
        raise UsageError(f"the PSF axis is {angle_deg} degrees from z: an axial PSF needs no "
                         "PSF-aligned view (the output's own z is its axis)")
    return angle


def psf_mip(source: str | os.PathLike[str], angle_deg: float,
            slab_bytes: int = SLAB_BYTES) -> np.ndarray:
    """MIP of the volume at ``source`` along the axis tilted ``angle_deg`` from z towards x:
    float32 (Y, U), ``resin.kernels.slanted_mip``'s geometry, read in y-slabs of at most
    ``slab_bytes`` (rounded to the store's chunk rows when that fits)."""
    from resin.kernels import slanted_mip

    from resin.io import open_volume

    angle = _angle(angle_deg)
    with open_volume(source) as reader:
        nz, ny, nx = reader.shape
        plane = nz * nx * max(reader.dtype.itemsize, 4)
        rows = max(1, slab_bytes // plane)
        chunk_rows = reader.chunks[1] if reader.chunks else 1
        if rows >= chunk_rows:
            rows -= rows % chunk_rows
        out: np.ndarray | None = None
        for y0 in range(0, ny, rows):
            y1 = min(ny, y0 + rows)
            slab = reader.read((slice(0, nz), slice(y0, y1), slice(0, nx)))
            part = np.asarray(slanted_mip(np.ascontiguousarray(slab), angle))
            if out is None:
                out = np.empty((ny, part.shape[1]), dtype=np.float32)
            out[y0:y1] = part
    assert out is not None
    return out


def write_psf_mip(source: str | os.PathLike[str], angle_deg: float, path: Path) -> Path:
    """:func:`psf_mip` of ``source`` written to ``path`` (TIFF, float32)."""
    import tifffile

    tifffile.imwrite(path, psf_mip(source, angle_deg))
    return path


def frame_shape(shape: tuple[int, int, int], angle_deg: float) -> tuple[int, int, int]:
    """Shape of the PSF-aligned frame of a volume of ``shape`` (nothing cut off)."""
    from resin.kernels._common import rotated_extent

    zr, xr = rotated_extent(shape[0], shape[2], _angle(angle_deg))
    return zr, shape[1], xr


def _blocks(shape: tuple[int, int, int], block: tuple[int, int, int]
            ) -> Iterator[tuple[slice, slice, slice]]:
    for z in range(0, shape[0], block[0]):
        for y in range(0, shape[1], block[1]):
            for x in range(0, shape[2], block[2]):
                yield (slice(z, min(shape[0], z + block[0])),
                       slice(y, min(shape[1], y + block[1])),
                       slice(x, min(shape[2], x + block[2])))


def source_box(region: tuple[slice, slice, slice], mat: np.ndarray, off: np.ndarray,
               shape: tuple[int, int, int]) -> tuple[slice, slice, slice] | None:
    """The input voxels that the trilinear samples of output ``region`` read (pull-back
    ``input = mat @ output + off``), clipped to ``shape``; None when every sample falls
    outside the input. The map is affine, so the samples' extremes are at the corners."""
    ends = [(s.start, s.stop - 1) for s in region]
    corners = np.array(np.meshgrid(*ends, indexing="ij"), dtype=np.float64).reshape(3, -1).T
    coords = corners @ mat.T + off
    n = np.asarray(shape, dtype=np.int64)
    low, high = coords.min(axis=0), coords.max(axis=0)
    if np.any(high < 0) or np.any(low > n - 1):
        return None
    # one voxel beyond the samples on each side: a sample that lands on the box's edge
    # (to rounding) must not read as outside it where the volume goes on
    lo = np.clip(np.floor(low).astype(np.int64) - 1, 0, n)
    hi = np.clip(np.floor(high).astype(np.int64) + 2, 0, n)
    return (slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1])),
            slice(int(lo[2]), int(hi[2])))


def psf_frame(source: str | os.PathLike[str], output: str | os.PathLike[str],
              angle_deg: float, block: tuple[int, int, int] | None = None,
              overwrite: bool = False, mip_dir: str | os.PathLike[str] | None = None
              ) -> tuple[int, int, int]:
    """Write the volume at ``source`` resampled into the PSF-aligned frame of ``angle_deg``
    (:func:`frame_shape`; trilinear, zero outside the volume, the source's dtype) to
    ``output`` (TIFF or Zarr, built at ``OUTPUT.partial`` and renamed when complete),
    ``block`` (default :data:`FRAME_BLOCK`) at a time; ``mip_dir``: also its three MIPs
    (``<name>_mip_{z,y,x}.tif``; along z' is along the PSF axis). Returns the frame's shape."""
    from resin.kernels import affine_transform
    from resin.kernels._common import axial_rotation
    from resin.runtime.pipeline import Mips
    from resin.runtime.runner import check_mip_dir, mip_stem

    from resin.io import create_volume, open_volume

    angle = _angle(angle_deg)
    blk = tuple(int(b) for b in (block or FRAME_BLOCK))
    if len(blk) != 3 or min(blk) < 1:
        raise UsageError(f"block must be three positive sizes, got {block}")
    output = os.fspath(output)
    if mip_dir is not None:
        check_mip_dir(mip_dir, output, overwrite)
    with open_volume(source) as reader:
        shape = reader.shape
        out_shape = frame_shape(shape, angle)
        mat, off = axial_rotation(shape, out_shape, angle, inverse=False)
        attrs = {"psf_frame": {"source": Path(reader.path).name, "angle_deg": angle,
                               "source_shape": list(shape)}}
        regions = list(_blocks(out_shape, blk))  # type: ignore[arg-type]
        mips = Mips.empty(out_shape, reader.dtype) if mip_dir is not None else None
        writer = create_volume(output, out_shape, reader.dtype, voxel_size=reader.voxel_size,
                               overwrite=overwrite, attrs=attrs)
        try:
            with _log.progress(float(len(regions)), f"PSF-aligned frame {output}",
                               "blocks") as bar:
                for region in regions:
                    dims = tuple(s.stop - s.start for s in region)
                    box = source_box(region, mat, off, shape)
                    if box is None:
                        data = np.zeros(dims, dtype=reader.dtype)
                    else:
                        shift = mat @ np.array([s.start for s in region], np.float64) + off
                        sub = np.ascontiguousarray(reader.read(box))
                        data = affine_transform(sub, mat, shift - [b.start for b in box],
                                                output_shape=dims, order=1)
                    writer.write(region, data)
                    if mips is not None:
                        z, y, x = region
                        for m, view, axis in ((mips.along_z, (y, x), 0),
                                              (mips.along_y, (z, x), 1),
                                              (mips.along_x, (z, y), 2)):
                            np.maximum(m[view], data.max(axis=axis), out=m[view])
                    bar.advance(1)
        except BaseException:
            writer.abandon()
            raise
        writer.close()
    if mips is not None and mip_dir is not None:
        from resin.runtime.mips import write_mips

        write_mips(mip_dir, mip_stem(output), None, mips)
    return out_shape


def _is_frame(path: str) -> bool:
    """``path`` (or its unfinished ``.partial``) is a PSF-aligned frame resin wrote."""
    from resin.io import open_volume

    for p in (path, path.rstrip("/") + ".partial"):
        if not os.path.exists(p):
            continue
        try:
            with open_volume(p) as reader:
                if "psf_frame" not in (reader.attrs or {}):
                    return False
        except Exception:
            return False
    return True


def check_frame_output(output: str | os.PathLike[str], others: list[str], overwrite: bool,
                       resume: bool) -> bool:
    """``--psf-frame OUTPUT`` checked before the run: not one of ``others`` (the input and
    the run's output), and not replacing an existing file unless ``overwrite`` (or
    ``resume`` and it is a frame resin wrote). Returns whether to replace it."""
    from resin.errors import OutputExistsError
    from resin.io import output_format
    from resin.io._common import check_folder

    output = os.fspath(output)
    output_format(output)
    check_folder(Path(output.rstrip("/")).parent)
    here = Path(output.rstrip("/")).resolve()
    for other in others:
        there = Path(os.fspath(other).rstrip("/")).resolve()
        if here == there or there in here.parents or here in there.parents:
            raise UsageError(f"--psf-frame {output}: overlaps {other}; choose another path")
    exists = [p for p in (output, output.rstrip("/") + ".partial") if os.path.lexists(p)]
    if not exists or overwrite:
        return bool(exists)
    if resume and _is_frame(output):
        return True
    raise OutputExistsError(f"{exists[0]} exists; pass --overwrite to replace it")
