"""`resin simulate`: argument parsing only; the work is done by :mod:`resin.simulate`."""

from __future__ import annotations

import argparse

from resin._cli import int3


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def register(sub) -> argparse.ArgumentParser:
    from resin import simulate as sim  # numpy only at import; scipy is needed when it runs

    p = sub.add_parser(
        "simulate",
        help="write a synthetic neurite-like volume (and its ground truth)",
        description="Random smooth tubes blurred by an anisotropic Gaussian PSF, with "
                    "Poisson and read noise and a camera offset, written as uint16.",
    )
    p.add_argument("out", metavar="OUT", help="raw volume to write (.tif/.tiff or .zarr)")
    p.add_argument("--truth", metavar="TRUTH", help="also write the noise-free, unblurred truth")
    p.add_argument("--shape", nargs=3, type=int3, metavar=("Z", "Y", "X"),
                   default=list(sim.DEFAULT_SHAPE), help="truth shape (default %(default)s)")
    p.add_argument("--sigma", nargs=2, type=_positive_float, metavar=("LAT", "AX"),
                   default=list(sim.DEFAULT_SIGMA),
                   help="PSF Gaussian sigma in voxels, lateral and axial (default %(default)s)")
    p.add_argument("--angle", type=float, default=0.0, metavar="DEG",
                   help="tilt of the PSF's long axis from z towards x (default 0)")
    p.add_argument("--photons", type=_positive_float, default=sim.DEFAULT_PHOTONS, metavar="N",
                   help="expected photons at the brightest object voxel (default %(default)s)")
    p.add_argument("--background", type=_non_negative_float, default=sim.DEFAULT_BACKGROUND,
                   metavar="N", help="background photons per voxel (default %(default)s)")
    p.add_argument("--read-noise", type=_non_negative_float, default=sim.DEFAULT_READ_NOISE,
                   metavar="S", help="camera read noise sigma in counts (default %(default)s)")
    p.add_argument("--offset", type=_non_negative_float, default=sim.DEFAULT_OFFSET,
                   metavar="N", help="camera offset in counts (default %(default)s)")
    p.add_argument("--z-step", type=int3, default=1, metavar="K",
                   help="keep every K-th plane in the raw volume (default 1)")
    p.add_argument("--tubes", type=_non_negative_int, default=None, metavar="N",
                   help="number of tubes (default: scaled with the volume, 40 per 64x256x256)")
    p.add_argument("--blobs", type=_non_negative_int, default=0, metavar="N",
                   help="number of round blobs (default 0)")
    p.add_argument("--voxel-size", type=_positive_float, default=1.0, metavar="UM",
                   help="lateral voxel size recorded in the files, micrometres (default 1)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from resin.simulate import simulate_to_files

    simulate_to_files(
        args.out, args.truth, overwrite=args.overwrite, voxel_size=args.voxel_size,
        shape=tuple(args.shape), sigma=tuple(args.sigma), angle_deg=args.angle,
        photons=args.photons, read_noise=args.read_noise, offset=args.offset,
        seed=args.seed, z_step=args.z_step, background=args.background,
        n_tubes=args.tubes, n_blobs=args.blobs,
    )
    return 0
