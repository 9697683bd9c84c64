"""`resin eval`: argument parsing only; the work is done by :mod:`resin.metrics`."""

from __future__ import annotations

import argparse
import math

_AXES = {"z": 0, "y": 1, "x": 2, "0": 0, "1": 1, "2": 2}


def _axis(text: str) -> int:
    try:
        return _AXES[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"must be z, y, x or 0, 1, 2, got {text}") from None


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="score a volume against its ground truth with the paper's metrics",
        description="RMSE, SSIM and PSNR of the min-max normalised volumes, the paper's "
                    "isotropy ratio (voxel and sub-voxel FWHM on the truth's skeleton) and "
                    "a Fourier isotropy ratio of PRED (no truth needed).",
    )
    p.add_argument("pred", metavar="PRED", help="volume to score (any supported dtype)")
    p.add_argument("truth", metavar="TRUTH", help="ground truth on the same grid")
    p.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    p.add_argument("--axial-axis", type=_axis, default=0, metavar="AXIS",
                   help="the optical (axial) axis: z, y or x (default z)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from resin.metrics import KEYS, evaluate_files

    result = evaluate_files(args.pred, args.truth, axial_axis=args.axial_axis,
                            json_out=args.json, overwrite=args.overwrite)
    table = Table(title=f"{args.pred} vs {args.truth}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in KEYS:
        value = result[key]
        table.add_row(key, f"{value:.4f}" if math.isfinite(value) else str(value))
    Console().print(table)
    return 0
