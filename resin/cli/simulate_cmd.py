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


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def register(sub) -> argparse.ArgumentParser:
    from resin import simulate as sim  # numpy only at import; scipy is needed when it runs

    tubes, nuclei = sim.KIND_DEFAULTS["tubes"], sim.KIND_DEFAULTS["nuclei"]
    p = sub.add_parser(
        "simulate",
        help="write a synthetic volume of tubes or nuclei (and its ground truth)",
        description="Random smooth tubes (neurite-like) or dense textured nuclei (a "
                    "confocal stack of tissue), blurred by an anisotropic Gaussian PSF, with "
                    "Poisson and read noise and a camera offset (or none: --noise-free), "
                    "written as uint16.",
    )
    p.add_argument("out", metavar="OUT", help="raw volume to write (.tif/.tiff or .zarr)")
    p.add_argument("--truth", metavar="TRUTH", help="also write the noise-free, unblurred truth")
    p.add_argument("--kind", choices=sim.KINDS, default="tubes",
                   help="object: neurite-like tubes or dense cell nuclei (default tubes)")
    p.add_argument("--noise-free", action="store_true",
                   help="blur only: no shot or read noise; background and offset 0 unless "
                        "given (the RESIN paper's setting)")
    p.add_argument("--shape", nargs=3, type=int3, metavar=("Z", "Y", "X"),
                   default=list(sim.DEFAULT_SHAPE), help="truth shape (default %(default)s)")
    p.add_argument("--sigma", nargs=2, type=_positive_float, metavar=("LAT", "AX"), default=None,
                   help="PSF Gaussian sigma in voxels, lateral and axial (default "
                        f"{_pair(tubes.sigma)} for tubes, {_pair(nuclei.sigma)} for nuclei)")
    p.add_argument("--angle", type=float, default=0.0, metavar="DEG",
                   help="tilt of the PSF's long axis from z towards x, -90 to 90 degrees "
                        "(default 0)")
    p.add_argument("--photons", type=_positive_float, default=sim.DEFAULT_PHOTONS, metavar="N",
                   help="expected photons at the brightest object voxel (default %(default)s)")
    p.add_argument("--background", type=_non_negative_float, default=None, metavar="N",
                   help=f"background photons per voxel (default {sim.DEFAULT_BACKGROUND}; "
                        "0 with --noise-free)")
    p.add_argument("--read-noise", type=_non_negative_float, default=None, metavar="S",
                   help=f"camera read noise sigma in counts (default {sim.DEFAULT_READ_NOISE}; "
                        "0 with --noise-free)")
    p.add_argument("--offset", type=_non_negative_float, default=None, metavar="N",
                   help=f"camera offset in counts (default {sim.DEFAULT_OFFSET}; "
                        "0 with --noise-free)")
    p.add_argument("--z-step", type=int3, default=None, metavar="K",
                   help=f"keep every K-th plane in the raw volume (default {tubes.z_step} for "
                        f"tubes, {nuclei.z_step} for nuclei)")
    p.add_argument("--depth-falloff", type=_fraction, default=None, metavar="F",
                   help="fraction of the brightness lost from the first to the last plane "
                        f"(default {tubes.depth_falloff:g} for tubes, "
                        f"{nuclei.depth_falloff:g} for nuclei)")
    p.add_argument("--tubes", type=_non_negative_int, default=None, metavar="N",
                   help="number of tubes (default: scaled with the volume, 40 per 64x256x256)")
    p.add_argument("--blobs", type=_non_negative_int, default=0, metavar="N",
                   help="number of round blobs among the tubes (default 0)")
    p.add_argument("--nuclei", type=_non_negative_int, default=None, metavar="N",
                   help="number of nuclei (default: as many as fill "
                        f"{sim.NUCLEI_FILL * 100:.0f}%% of the volume)")
    p.add_argument("--voxel-size", type=_positive_float, default=1.0, metavar="UM",
                   help="lateral voxel size recorded in the files, micrometres (default 1)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=_run)
    return p


def _pair(values: tuple[float, float]) -> str:
    return " ".join(f"{v:g}" for v in values)


def _run(args: argparse.Namespace) -> int:
    from resin.simulate import simulate_to_files

    simulate_to_files(
        args.out, args.truth, overwrite=args.overwrite, voxel_size=args.voxel_size,
        shape=tuple(args.shape), sigma=None if args.sigma is None else tuple(args.sigma),
        angle_deg=args.angle, photons=args.photons, read_noise=args.read_noise,
        offset=args.offset, seed=args.seed, z_step=args.z_step, background=args.background,
        n_tubes=args.tubes, n_blobs=args.blobs,
        kind=args.kind, noise=not args.noise_free, n_nuclei=args.nuclei,
        depth_falloff=args.depth_falloff,
    )
    return 0
