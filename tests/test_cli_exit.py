"""The exit path every command shares (``resin._cli.run``): what an interruption and an
out-of-memory error tell the user depends on the command."""

from __future__ import annotations

import argparse

import pytest

from resin._cli import run


def _raise(exc: BaseException):
    def handler(args: argparse.Namespace) -> int:
        raise exc

    return handler


@pytest.mark.parametrize("prog", ["resin-run", "resin simulate", "resin export"])
def test_only_resin_run_is_told_to_resume_or_shrink_its_tile(prog, capsys):
    args = argparse.Namespace(_prog=prog, quiet=True, debug=False)
    assert run(_raise(KeyboardInterrupt()), args) == 130
    interrupted = capsys.readouterr().err
    assert run(_raise(MemoryError()), args) == 1
    oom = capsys.readouterr().err
    streaming = prog == "resin-run"
    assert ("--resume" in interrupted) == streaming and ("--tile" in oom) == streaming
    assert interrupted.startswith(f"{prog}: interrupted") and "out of memory" in oom
