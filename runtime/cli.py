"""`resin-run`: argument parsing only; the work is done by resin.runtime."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from resin._cli import main_with, make_parser
from resin.errors import UsageError


def build_parser():
    parser = make_parser("resin-run", "Stream a volume through a RESIN model.")
    parser.set_defaults(func=_run, _prog="resin-run")
    return parser


def _run(args) -> int:
    raise UsageError("resin-run is not built yet")


def main(argv: Sequence[str] | None = None) -> int:
    return main_with(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
