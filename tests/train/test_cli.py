from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from conftest import assert_one_line_error

TINY = {
    "generator": {"features": [4, 8]}, "degrader": {"kernel_size": 5},
    "discriminator": {"features": 2, "layers": 2}, "loss": {"ssim_window": 7},
    "data": {"patch_size": [16, 32, 32], "validation_patches": 1}, "threads": 1,
}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def test_train_cli_runs_and_refuses_to_overwrite(cli, tmp_path, tiny_volume, config_file):
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, tiny_volume)
    out = tmp_path / "models" / "m.pt"  # a new folder is made, as resin export makes one
    proc = cli("resin", "train", str(raw), "-o", str(out), "--preset", "quick", "--steps", "2",
               "--config", str(config_file), "--device", "cpu", "-q")
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and proc.stderr == ""
    again = cli("resin", "train", str(raw), "-o", str(out), "--config", str(config_file))
    assert "--overwrite" in assert_one_line_error(again)


@pytest.mark.parametrize("case", ["missing", "2d", "constant", "small", "bad-config",
                                  "bad-field", "bad-patch"])
def test_train_cli_bad_input_exits_2(cli, tmp_path, config_file, case):
    raw = tmp_path / "raw.tif"
    args = ["--config", str(config_file)]
    if case == "2d":
        tifffile.imwrite(raw, np.ones((32, 32), np.uint16))
    elif case == "constant":
        tifffile.imwrite(raw, np.full((16, 32, 32), 5, np.uint16))
    elif case == "small":
        tifffile.imwrite(raw, np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16))
    else:
        tifffile.imwrite(raw, np.arange(16 * 32 * 32, dtype=np.uint16).reshape(16, 32, 32))
    if case == "missing":
        raw = tmp_path / "nope.tif"
    if case == "bad-config":
        args = ["--config", str(tmp_path / "none.json")]
    if case == "bad-field":
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**TINY, "learning_rate": 3}))
        args = ["--config", str(bad)]
    if case == "bad-patch":
        args += ["--patch", "15", "32", "32"]
    proc = cli("resin", "train", str(raw), "-o", str(tmp_path / "m.pt"), *args)
    assert_one_line_error(proc)


def test_train_cli_leaves_files_it_did_not_write(cli, tmp_path, tiny_volume, config_file):
    """MODEL.json and MODEL.losses.csv are derived names: the user's files there are kept."""
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, tiny_volume)
    mine = {tmp_path / "sample.json": '{"sample": "brain slice 3"}',
            tmp_path / "sample.losses.csv": "cell,volume\n1,30.5\n"}
    for path, text in mine.items():
        path.write_text(text)
    args = ["resin", "train", str(raw), "-o", str(tmp_path / "sample.pt"), "--steps", "2",
            "--config", str(config_file), "--device", "cpu", "-q"]
    line = assert_one_line_error(cli(*args))
    assert "sample.json" in line and "--overwrite" in line and "model name" in line
    line = assert_one_line_error(cli(*args, "--overwrite"))
    assert "sample.json" in line and "move it away" in line
    assert all(path.read_text() == text for path, text in mine.items())
    (tmp_path / "sample.json").unlink()
    line = assert_one_line_error(cli(*args, "--overwrite"))
    assert "sample.losses.csv" in line and "move it away" in line
    assert (tmp_path / "sample.losses.csv").read_text() == "cell,volume\n1,30.5\n"
    assert not (tmp_path / "sample.pt").exists()


def test_train_cli_fits_the_preset_patch_to_a_thin_volume(cli, tmp_path, tiny_volume):
    """Confocal stacks of 20-30 planes are common: without --patch the preset's 32^3 patch
    shrinks to a 12^3 cube that moves along 16 planes (training's start line says so); an explicit --patch
    larger than the volume is refused with the one that would fit."""
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, np.concatenate([tiny_volume, tiny_volume], axis=2))  # 16x32x64
    tiny = {k: v for k, v in TINY.items() if k != "data"} | {"data": {"validation_patches": 1}}
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny))
    out = tmp_path / "m.pt"
    proc = cli("resin", "train", str(raw), "-o", str(out), "--preset", "quick", "--steps", "2",
               "--config", str(config), "--device", "cpu", "--no-previews")
    assert proc.returncode == 0, proc.stderr
    assert "patch (12, 12, 12)" in proc.stderr  # training's start line
    assert json.loads((tmp_path / "m.json").read_text())["data"]["patch_size"] == [12, 12, 12]
    refused = cli("resin", "train", str(raw), "-o", str(tmp_path / "n.pt"), "--preset",
                  "quick", "--config", str(config), "--patch", "32", "32", "32")
    assert "--patch 12 12 12" in assert_one_line_error(refused)
    assert not (tmp_path / "n.pt").exists()
    # a bad volume that also needs a fitted patch: still one line (the fit is not announced
    # before the volume is checked)
    bad = tmp_path / "nan.tif"
    tifffile.imwrite(bad, np.full((16, 32, 64), np.nan, np.float32))
    line = assert_one_line_error(cli("resin", "train", str(bad), "-o", str(tmp_path / "b.pt"),
                                     "--preset", "quick", "--config", str(config)))
    assert "NaN" in line


def test_train_cli_trains_on_the_chosen_channel_and_time_point(cli, tmp_path, tiny_volume):
    """A two-channel time series trains on --channel N --time T (recorded in MODEL.json);
    without them, one line naming the flag, before anything is written."""
    raw = tmp_path / "two.tif"
    volume = np.stack([tiny_volume, tiny_volume[:, ::-1]], axis=1)  # (Z, C, Y, X)
    tifffile.imwrite(raw, np.stack([volume, volume[..., ::-1]]), imagej=True,
                     metadata={"axes": "TZCYX"})
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "m.pt"
    base = ["resin", "train", str(raw), "-o", str(out), "--config", str(config), "--steps",
            "2", "--device", "cpu", "--no-previews"]
    assert "has 2 channels" in assert_one_line_error(cli(*base))
    line = assert_one_line_error(cli(*base, "--channel", "1"))
    assert "has 2 time points" in line and line.endswith("or train on every one with --time all")
    assert not list(tmp_path.glob("m.*"))
    proc = cli(*base, "--channel", "1", "--time", "0")
    assert proc.returncode == 0, proc.stderr
    assert "training on two.tif (time point 0, channel 1)" in proc.stderr
    data = json.loads((tmp_path / "m.json").read_text())["data"]
    assert (data["channel"], data["time"]) == (1, 0)
    resumed = cli(*base, "--channel", "0", "--time", "0", "--resume")
    assert "different configuration" in assert_one_line_error(resumed)


def test_train_cli_trains_one_model_on_every_time_point(cli, tmp_path, tiny_volume):
    """--time all trains on patches of every time point (recorded as "all"); a resume with
    it continues; one line for a bad --time."""
    raw = tmp_path / "series.tif"
    tifffile.imwrite(raw, np.stack([tiny_volume, tiny_volume[..., ::-1], tiny_volume[::-1]]),
                     imagej=True, metadata={"axes": "TZYX"})
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    base = ["resin", "train", str(raw), "-o", str(tmp_path / "m.pt"), "--config", str(config),
            "--device", "cpu", "--no-previews"]
    proc = cli(*base, "--steps", "2", "--time", "all")
    assert proc.returncode == 0, proc.stderr
    assert "training on all 3 time points of series.tif" in proc.stderr
    assert json.loads((tmp_path / "m.json").read_text())["data"]["time"] == "all"
    resumed = cli(*base, "--steps", "3", "--time", "all", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 2 of 3" in resumed.stderr
    other = cli(*base, "--steps", "3", "--time", "1", "--resume")
    assert "different configuration" in assert_one_line_error(other)
    line = assert_one_line_error(cli(*base, "--time", "every", "--overwrite"))
    assert "or all" in line


def test_train_cli_advises_no_patch_it_would_refuse(cli, tmp_path, tiny_volume):
    """On a 16x32x32 volume no patch the default preset's discriminators accept fits: one
    line says the volume is too small and which volume is large enough, with or without
    --patch, instead of advising a --patch that is then refused."""
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, tiny_volume)
    base = ["resin", "train", str(raw), "-o", str(tmp_path / "m.pt"), "--steps", "1"]
    for patch in (["--patch", "24", "24", "24"], []):
        line = assert_one_line_error(cli(*base, *patch))
        assert "too small to train on" in line and "--patch" not in line, line
        assert "the smallest volume it trains on is (24, 24, 24)" in line
    line = assert_one_line_error(cli(*base, "--patch", "12", "12", "12"))
    assert "too small for discriminators with 3 layers" in line
    assert not list(tmp_path.glob("m.*"))


def test_train_cli_refuses_resume_with_overwrite(cli, tmp_path, tiny_volume, config_file):
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, tiny_volume)
    proc = cli("resin", "train", str(raw), "-o", str(tmp_path / "m.pt"), "--config",
               str(config_file), "--resume", "--overwrite")
    assert "--resume and --overwrite contradict each other" in assert_one_line_error(proc)


def test_train_cli_refuses_to_overwrite_a_model_file_it_did_not_write(cli, tmp_path,
                                                                       tiny_volume, config_file):
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, tiny_volume)
    notes = tmp_path / "notes.pt"
    notes.write_text("my notes\n")
    proc = cli("resin", "train", str(raw), "-o", str(notes), "--config", str(config_file),
               "--steps", "1", "--overwrite", "--no-previews")
    line = assert_one_line_error(proc)
    assert "notes.pt exists and is not a resin checkpoint; move it away" in line
    assert notes.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pt", "raw.tif", "tiny.json"]


def test_train_cli_says_what_an_interruption_saved(tmp_path, tiny_volume, config_file,
                                                   monkeypatch, capsys):
    """Ctrl-C before the first checkpoint: training's own line (nothing saved, so a rerun
    starts over), exit code 130, not resin-run's hint that --resume continues."""
    from resin.cli import main
    from resin.train.trainer import Trainer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, tiny_volume)
    code = main(["train", str(raw), "-o", str(tmp_path / "m.pt"), "--config", str(config_file),
                 "--steps", "4", "--device", "cpu", "--no-previews", "-q"])
    err = capsys.readouterr().err
    assert code == 130
    assert err.strip() == ("resin train: interrupted: nothing was saved yet (the first "
                           "checkpoint is at step 4); rerun with --overwrite to start over")


def test_train_retries_with_the_next_seed_while_the_report_warns(tmp_path, tiny_volume,
                                                                  monkeypatch, capsys):
    """--retries N: a run whose report asks for another seed is trained again with the next
    seed, at most N times; the last run's files stay, and the log says so. A --resume
    continues the retry that was stopped (its seed, from MODEL.json)."""
    import resin.report
    from resin.cli import main

    monkeypatch.setattr(resin.report, "LOST_LATERAL", -1.0)  # every report warns
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, tiny_volume)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "m.pt"
    base = ["train", str(raw), "-o", str(out), "--config", str(config), "--steps", "2",
            "--device", "cpu", "--no-previews", "--seed", "5"]
    assert main([*base, "--retries", "2"]) == 0
    err = capsys.readouterr().err
    assert "training again with --seed 6 (retry 1 of 2)" in err
    assert "training again with --seed 7 (retry 2 of 2)" in err
    assert "every run warned (seeds 5 to 7); " in err
    assert json.loads((tmp_path / "m.json").read_text())["seed"] == 7
    assert json.loads(out.with_suffix(".report.json").read_text())["retry"] is True
    # a resume of that command continues from seed 7's run, not from seed 5's
    assert main([*base, "--retries", "2", "--resume", "--steps", "3"]) == 0
    err = capsys.readouterr().err
    assert "resuming at step 2 of 3" in err and "training again" not in err
    # without warnings one run is all
    monkeypatch.setattr(resin.report, "LOST_LATERAL", 2.0)
    monkeypatch.setattr(resin.report, "LEAST_CLOSED", -10.0)
    assert main([*base[:3], str(tmp_path / "n.pt"), *base[4:], "--retries", "2", "--keep",
                 "sound"]) == 0
    err = capsys.readouterr().err
    assert "training again" not in err
    saved = json.loads((tmp_path / "n.json").read_text())
    assert saved["seed"] == 5 and saved["keep"] == "sound"  # --keep reaches the config
    with pytest.raises(SystemExit):
        main([*base, "--retries", "-1"])


def test_train_cli_trains_one_model_per_channel(cli, tmp_path, tiny_volume):
    """--channel all with {c} in -o: one model per channel (each records its channel), every
    model's files checked before the first trains; resin-run --engine with {c} runs each
    channel with its model; --resume continues them."""
    import zarr

    raw = tmp_path / "two.tif"
    tifffile.imwrite(raw, np.stack([tiny_volume, tiny_volume[:, ::-1]], axis=1), imagej=True,
                     metadata={"axes": "ZCYX"})
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    base = ["resin", "train", str(raw), "--config", str(config), "--steps", "2", "--device",
            "cpu", "--no-previews"]
    pattern = str(tmp_path / "m_c{c}.pt")
    line = assert_one_line_error(cli(*base, "-o", str(tmp_path / "m.pt"), "--channel", "all"))
    assert "put {c} in -o where the channel goes" in line
    line = assert_one_line_error(cli(*base, "-o", pattern, "--channel", "1"))
    assert "holds {c} but --channel is not 'all'" in line
    line = assert_one_line_error(cli(*base, "-o", str(tmp_path / "m.pt")))
    assert line.endswith("or train one model per channel with --channel all and {c} in -o")
    (tmp_path / "m_c1.pt").write_text("not a model")  # the second model's name is taken
    line = assert_one_line_error(cli(*base, "-o", pattern, "--channel", "all"))
    assert "m_c1.pt exists" in line and not list(tmp_path.glob("m_c0*"))
    (tmp_path / "m_c1.pt").unlink()
    proc = cli(*base, "-o", pattern, "--channel", "all")
    assert proc.returncode == 0, proc.stderr
    assert "channel 1 (2 of 2) -> " in proc.stderr and "trained 2 models, one per" in proc.stderr
    for c in range(2):
        assert json.loads((tmp_path / f"m_c{c}.json").read_text())["data"]["channel"] == c
    proc = cli(*base, "-o", pattern, "--channel", "all", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("resuming at step 2 of 2") == 2
    # a model stopped before its first checkpoint (its files, no state) starts over
    (tmp_path / "m_c1.last.pt").unlink()
    proc = cli(*base, "-o", pattern, "--channel", "all", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "channel 0 (1 of 2) -> " in proc.stderr and " (resumed)" in proc.stderr
    assert proc.stderr.count("resuming at step") == 1 and (tmp_path / "m_c1.last.pt").exists()
    out = tmp_path / "o.ome.zarr"
    proc = cli("resin-run", str(raw), "--channel", "all", "--engine", str(tmp_path / "m_c{c}.pt"),
               "-o", str(out), "--device", "cpu", "--tile", "16", "32", "32", "--report")
    assert proc.returncode == 0, proc.stderr
    parts = zarr.open_group(out, mode="r").attrs["resin"]["parts"]
    assert [p["model"] for p in parts] == ["m_c0.pt", "m_c1.pt"]
    for c in range(2):  # each channel's report measured with its own model's D
        report = json.loads((tmp_path / f"o_c{c}.ome.zarr.report.json").read_text())
        assert f"m_c{c}.pt" in report["consistency"]["degrader"]
    line = assert_one_line_error(cli("resin-run", str(raw), "--channel", "0", "--engine",
                                     str(tmp_path / "m_c{c}.pt"), "--device", "cpu"))
    assert "a model name holding {c} is one model per channel" in line


def test_the_per_channel_hint_is_a_command_resin_run_takes():
    """--time T goes before --channel all, not between --channel and its value."""
    import shlex

    from resin.runtime.cli import build_parser

    from resin.cli.train_cmd import run_command

    text = run_command("my cells.tif", 1, "m_c{c}.pt")
    assert text == "resin-run 'my cells.tif' --time 1 --channel all --engine 'm_c{c}.pt'"
    args = build_parser().parse_args(shlex.split(text)[1:])
    assert (args.input, args.time, args.channel, args.engine) == (
        "my cells.tif", 1, "all", ["m_c{c}.pt"])
    assert run_command("a.tif", None, "m{c}.pt") == "resin-run a.tif --channel all --engine 'm{c}.pt'"
