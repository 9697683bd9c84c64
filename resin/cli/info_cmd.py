"""`resin info VOLUME`: argument parsing only; the work is done by resin.io."""

from __future__ import annotations

import argparse
import json

from resin._cli import add_choice_flags


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser(
        "info", help="show a volume's shape, dtype, voxel size, chunks, format and size",
        description="Show what resin reads from a TIFF, Zarr or OME-Zarr volume.")
    p.add_argument("volume", metavar="VOLUME",
                   help="a .tif/.tiff, .zarr/.ome.zarr or .h5/.ims volume")
    p.add_argument("--check", action="store_true",
                   help="also read every chunk once to find truncated or corrupt data")
    add_choice_flags(p, "describe", "(default: the first, and --check reads every one)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from resin.io._info import format_info, volume_info

    info = volume_info(args.volume, check=args.check, channel=args.channel,
                       time=args.time)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
