"""`resin demo`: argument parsing only; the work is done by :mod:`resin.runtime.demo`."""

from __future__ import annotations

import argparse
import math

from resin._cli import int3


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="simulate a blurred volume, enhance it with the bundled model, print metrics",
        description="Simulate tubes blurred 5x more axially than laterally, enhance them with "
                    "the bundled default model, write raw/truth/enhanced TIFFs and a MIP PNG "
                    "into DIR, and print the paper's metrics of the enhanced volume beside "
                    "the raw input's. Refuses to replace those files unless --overwrite.",
    )
    p.add_argument("--out", default="demo-out", metavar="DIR",
                   help="output folder (default demo-out)")
    p.add_argument("--shape", nargs=3, type=int3, metavar=("Z", "Y", "X"), default=None,
                   help="simulated volume shape (default 48 128 128)")
    p.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    p.add_argument("--engine", metavar="MODEL", default=None,
                   help="model to use instead of the bundled one")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true",
                   help="replace raw.tif, truth.tif, enhanced.tif and mip.png in DIR")
    p.set_defaults(func=_run)
    return p


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.3f}"


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from resin.runtime.demo import DEMO_SHAPE, run_demo

    shape = tuple(args.shape) if args.shape else DEMO_SHAPE
    result = run_demo(args.out, shape=shape, seed=args.seed,  # type: ignore[arg-type]
                      engine=args.engine, device=args.device, overwrite=args.overwrite)
    table = Table(title="RESIN demo: scores against the ground truth")
    table.add_column("metric")
    table.add_column("raw input", justify="right")
    table.add_column("enhanced", justify="right")
    table.add_column("better", justify="center")
    lower_better = {"rmse"}
    for key in ("rmse", "ssim", "psnr", "isotropy_ratio", "isotropy_ratio_subvoxel",
                "isotropy_fourier"):
        r, e = result["raw"].get(key), result["enhanced"].get(key)
        if key.startswith("isotropy"):  # 1.0 is isotropic
            better = abs(e - 1.0) < abs(r - 1.0) if r == r and e == e else None
        elif key in lower_better:
            better = e < r
        else:
            better = e > r
        table.add_row(key, _fmt(r), _fmt(e), "" if better is None else ("yes" if better else "no"))
    Console().print(table)
    print(f"enhanced {math.prod(shape)} voxels in {result['seconds_enhance']:.1f} s "
          f"({result['voxels_per_second'] / 1e6:.2f} Mvoxel/s); total "
          f"{result['seconds_total']:.1f} s")
    print("wrote " + ", ".join(result["files"]))
    return 0
