"""`resin simulate` refuses what it cannot do before any work: a PSF tilt outside
[-90, 90] degrees (as training), a volume that cannot fit in memory."""

from __future__ import annotations

import pytest
from conftest import assert_one_line_error

from resin.errors import UsageError
from resin.simulate import memory_needed, simulate


@pytest.mark.parametrize("angle", [1000.0, -90.5, 90.01, float("nan"), float("inf")])
def test_an_angle_outside_plus_minus_90_degrees_is_refused(angle):
    with pytest.raises(UsageError, match="between -90 and 90 degrees"):
        simulate((8, 16, 16), angle_deg=angle)


@pytest.mark.parametrize("angle", [-90.0, 90.0])
def test_the_ends_of_the_angle_range_simulate(angle):
    assert simulate((8, 16, 16), angle_deg=angle, seed=1).raw.shape == (8, 16, 16)


def test_cli_angle_out_of_range_is_one_line_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "s.tif"
    proc = cli("resin", "simulate", str(out), "--angle", "1000", "--shape", "8", "32", "32")
    assert "--angle must be between -90 and 90 degrees" in assert_one_line_error(proc)
    assert not out.exists()


def test_cli_a_shape_beyond_memory_is_one_line_naming_the_memory(cli, tmp_path):
    out = tmp_path / "s.tif"
    proc = cli("resin", "simulate", str(out), "--shape", "100000", "100000", "100000")
    line = assert_one_line_error(proc)
    assert "needs about" in line and "TiB of memory" in line and "smaller --shape" in line
    assert "--tile" not in line and not out.exists()


def test_the_memory_check_uses_the_available_memory(monkeypatch):
    import resin._memory as budget

    shape = (16, 32, 32)
    monkeypatch.setattr(budget, "available_memory", lambda: memory_needed(shape) - 1)
    with pytest.raises(UsageError, match="needs about .* is available"):
        simulate(shape)
    monkeypatch.setattr(budget, "available_memory", lambda: memory_needed(shape))
    assert simulate(shape).truth.shape == shape
    monkeypatch.setattr(budget, "available_memory", lambda: None)  # unknown: no refusal
    assert simulate(shape).truth.shape == shape


def test_a_tilted_psf_needs_more_memory():
    assert memory_needed((64, 64, 64), angle_deg=30) > memory_needed((64, 64, 64))
    assert memory_needed((64, 64, 64), angle_deg=0) == 18 * 64**3


def test_running_out_of_memory_names_the_shape_not_a_tile(tmp_path, monkeypatch, capsys):
    import resin.simulate
    from resin.cli import main

    def oom(**_kwargs):
        raise MemoryError

    monkeypatch.setattr(resin.simulate, "simulate", oom)
    code = main(["simulate", str(tmp_path / "s.tif"), "--shape", "8", "16", "16"])
    err = capsys.readouterr().err
    assert code == 1 and "out of memory simulating" in err and "smaller --shape" in err
    assert "--tile" not in err and not (tmp_path / "s.tif").exists()
    assert len(err.strip().splitlines()) == 1
