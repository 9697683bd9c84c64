"""The ``resin`` command: simulate, train, export, eval, demo.

Each subcommand lives in its own module here with ``register(subparsers)``; modules only
parse arguments and call library functions, and import nothing heavy at module level so
``resin --help`` works with only the base install.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from resin._cli import add_common_flags, main_with, make_parser, subparser_class

#: subcommand name -> module under resin.cli
COMMANDS = ("simulate", "train", "export", "eval", "demo", "info")


def build_parser():
    parser = make_parser("resin", "RESIN: self-supervised isotropic restoration of 3D microscopy.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND",
                                parser_class=subparser_class())
    for name in COMMANDS:
        module = importlib.import_module(f"resin.cli.{name}_cmd")
        sp = module.register(sub)
        add_common_flags(sp)
        sp.set_defaults(_prog=f"resin {name}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return main_with(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
