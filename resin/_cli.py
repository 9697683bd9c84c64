"""What both CLIs (``resin`` and ``resin-run``) share: common flags, error -> exit code mapping.

Exit codes (docs/architecture.md, "Errors and exit codes"): 0 success; 2 bad usage or bad
input (one line on stderr, no traceback unless ``--debug``); 1 any other failure.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from resin import _log
from resin._version import __version__
from resin.errors import ResinError

#: what ``-o`` (and ``--engine``) holds for one file per time point (channel): replaced by it
#: (0-based); ``resin train`` and ``resin-run`` read the same fields
TIME_FIELD = "{t}"
CHANNEL_FIELD = "{c}"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=description)
    add_common_flags(parser, top=True)
    return parser


def add_common_flags(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``--debug`` and ``--quiet`` on the top parser and on every subcommand."""
    default = False if top else argparse.SUPPRESS
    if top:
        parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show tracebacks and debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="no progress bars or log lines")


def add_choice_flags(parser: argparse.ArgumentParser, verb: str, note: str,
                     every_time: str | None = None, every_channel: str | None = None) -> None:
    """``--channel N`` and ``--time T``: which channel and time point of a file with several
    the command reads (``note`` ends both help texts); ``every_time`` / ``every_channel``:
    ``all`` is accepted too, and this text says what it does."""
    for flag, noun, meta, every in (("--channel", "channel N (0-based) of a multi-channel file",
                                     "N", every_channel),
                                    ("--time", "time point T (0-based) of a time series", "T",
                                     every_time)):
        if every is None:
            parser.add_argument(flag, type=int, metavar=meta, default=None,
                                help=f"{verb} {noun} {note}")
        else:
            parser.add_argument(flag, type=_choice_or_all(flag), metavar=f"{meta}|all",
                                default=None, help=f"{verb} {noun} {note}; all: {every}")


def _choice_or_all(flag: str) -> Callable[[str], int | str]:
    what = "time point" if flag == "--time" else "channel"

    def parse(text: str) -> int | str:
        if text == "all":
            return text
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {what} (0, 1, ...) or all, got "
                                             f"{text!r}") from None

    return parse


def subparser_class() -> type[argparse.ArgumentParser]:
    return _Parser


def int3(text: str) -> int:
    """argparse ``type=`` for one positive integer of a ``Z Y X`` triple."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def run(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Call ``handler(args)`` and turn exceptions into the agreed exit codes."""
    debug = bool(getattr(args, "debug", False))
    _log.configure(quiet=bool(getattr(args, "quiet", False)), debug=debug)
    prog = getattr(args, "_prog", "resin")
    try:
        code = handler(args)
    except ResinError as exc:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # only resin-run's interruptions are resumed by rerunning with --resume (training
        # says what it saved itself, through its own Interrupted error)
        hint = " (the same command with --resume continues it)" if prog == "resin-run" else ""
        print(f"{prog}: interrupted{hint}", file=sys.stderr)
        return 130
    except MemoryError:
        if debug:
            traceback.print_exc()
        hint = "; try a smaller --tile or --memory" if prog == "resin-run" else ""
        print(f"{prog}: error: out of memory{hint}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the catch-all that makes exit code 1
        if debug:
            traceback.print_exc()
        print(f"{prog}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    return int(code or 0)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main_with(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return run(handler, args)
