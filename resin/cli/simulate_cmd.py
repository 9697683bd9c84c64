"""`resin simulate`: argument parsing only; the work is done by the library."""

from __future__ import annotations

import argparse

from resin.errors import UsageError


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("simulate", help="(being built)")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    raise UsageError("resin simulate is not built yet")
