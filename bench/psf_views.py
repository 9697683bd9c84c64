"""An oblique model's views of a written output: the MIP along the PSF axis (``resin-run
--mip``'s ``_mip_psf.tif``) and the PSF-aligned frame (``--psf-frame``), block by block from
the store, against one read-only pass over the same store and the whole-volume kernels in
memory (``slanted_mip``, ``rotate_axial``), in the same run.

    python bench/psf_views.py --shape 64 1024 1024 --angle 45
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=(64, 512, 512), metavar=("Z", "Y", "X"))
    p.add_argument("--angle", type=float, default=45.0)
    p.add_argument("--dtype", default="uint16", choices=("uint16", "float32"))
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)

    from resin.kernels import rotate_axial, slanted_mip
    from resin.runtime.psf_frame import FRAME_BLOCK, psf_frame, psf_mip

    from resin.io import open_volume, read_volume, write_volume

    work = Path(args.workdir or tempfile.mkdtemp(prefix="psf_views_"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shape = tuple(args.shape)
    volume = (rng.random(shape, dtype=np.float32) * 4000).astype(args.dtype)
    src = work / "enhanced.ome.zarr"
    write_volume(src, volume, overwrite=True)
    small = tuple(min(n, 16) for n in shape)
    psf_mip(src, args.angle)  # compile the kernels outside the timings
    write_volume(work / "tiny.tif", volume[:small[0], :small[1], :small[2]], overwrite=True)
    psf_frame(work / "tiny.tif", work / "tiny_frame.tif", args.angle, overwrite=True)
    rotate_axial(volume[:small[0], :small[1], :small[2]], args.angle)

    def read_pass() -> None:
        with open_volume(src) as reader:
            for z in range(0, shape[0], FRAME_BLOCK[0]):
                for y in range(0, shape[1], FRAME_BLOCK[1]):
                    reader.read((slice(z, z + FRAME_BLOCK[0]), slice(y, y + FRAME_BLOCK[1]),
                                 slice(0, shape[2])))

    _, t_read = _timed(read_pass)
    mip, t_mip = _timed(lambda: psf_mip(src, args.angle))
    ref_mip, t_mip_mem = _timed(lambda: slanted_mip(volume, args.angle))
    frame_path = work / "frame.ome.zarr"
    fshape, t_frame = _timed(lambda: psf_frame(src, frame_path, args.angle, overwrite=True))
    ref, t_rot = _timed(lambda: rotate_axial(volume, args.angle))
    got = read_volume(frame_path)
    delta = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    diff = float(delta.max())
    # where they differ: is the sample on the source's edge (to rounding)?
    from resin.kernels._common import axial_rotation

    mat, off = axial_rotation(shape, fshape, args.angle, False)  # type: ignore[arg-type]
    where = np.argwhere(delta > 0)
    coords = where @ mat.T + off
    last = np.asarray(shape) - 1
    on_edge = ((np.abs(coords) < 1e-6) | (np.abs(coords - last) < 1e-6))[:, [0, 2]].any(axis=1)
    mvox = np.prod(shape) / 1e6
    print(f"volume {'x'.join(map(str, shape))} {args.dtype}, angle {args.angle:g}, "
          f"{mvox:.1f} Mvoxel; frame {'x'.join(map(str, fshape))}")
    print(f"{'measurement':58} {'seconds':>8} {'x read':>8}")
    for name, t in (("one read-only pass over the store (reference)", t_read),
                    ("MIP along the PSF axis from the store (psf_mip)", t_mip),
                    ("  the same kernel on the volume in memory (slanted_mip)", t_mip_mem),
                    ("PSF-aligned frame, store to store (psf_frame)", t_frame),
                    ("  the same in memory, whole volume (rotate_axial)", t_rot)):
        print(f"{name:58} {t:8.2f} {t / t_read:8.2f}")
    print(f"psf_mip equals slanted_mip: {np.array_equal(mip, ref_mip)}; psf_frame vs "
          f"rotate_axial: {len(where)} voxels differ (largest difference {diff:g}), "
          f"{int(on_edge.sum())} of them samples on the volume's edge to rounding")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
