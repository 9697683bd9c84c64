from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tifffile = pytest.importorskip("tifffile")

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import tiny_config  # noqa: E402

from resin.checkpoint import build_generator, load_checkpoint  # noqa: E402
from resin.errors import OutputExistsError, ResumeError, UsageError  # noqa: E402
from resin.train import Interrupted, train  # noqa: E402
from resin.train.trainer import D_TERMS, G_TERMS, Trainer  # noqa: E402


def _batch(rng, shape=(16, 32, 32)) -> np.ndarray:
    return rng.random((1, 1, *shape)).astype(np.float32)


def _grads(module: torch.nn.Module) -> bool:
    return any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.parameters())


#: which networks each loss term must reach (and no others)
EXPECTED = {
    "cycle1": {"F", "D"},
    "cycle2": {"F", "D"},
    "self": {"F"},  # D's pair is made without gradients: D must not shrink to ease F's task
    "nonneg": {"F"},
    "G_yy": {"F", "D"},
    "G_aniso_proj": {"F"},
    "G_iso_proj": {"F"},
    "D_yy": {"disc_yy"},
    "D_aniso_proj": {"disc_aniso"},
    "D_iso_proj": {"disc_iso"},
}
NETS = ("F", "D", "disc_yy", "disc_aniso", "disc_iso")


@pytest.mark.parametrize("angle", [0.0, 45.0])
@pytest.mark.parametrize("axis", ["y", "x"])
def test_every_term_is_finite_and_reaches_the_right_networks(rng, angle, axis):
    patch = (16, 32, 32) if angle == 0.0 else (28, 28, 28)
    cfg = tiny_config(angle_deg=angle, data={"patch_size": patch})
    tr = Trainer(cfg)
    # give F a non-zero head so gradients flow through x = F(y) like mid-training
    torch.nn.init.normal_(tr.nets.F.head.weight, std=0.1)
    # the background level (0) with dips below it, as normalized raw data has
    y = torch.from_numpy(_batch(rng, patch) - 0.2)
    for term in (*G_TERMS, *D_TERMS):
        tr.nets.zero_grad(set_to_none=True)
        g_terms, fakes = tr.generator_terms(y, axis)
        value = g_terms[term] if term in g_terms else tr.discriminator_terms(y, fakes)[term]
        assert torch.isfinite(value), term
        value.backward()
        reached = {name for name in NETS if _grads(getattr(tr.nets, name))}
        assert reached == EXPECTED[term], (term, reached)


def test_one_generator_and_discriminator_step_updates_all_networks(rng):
    tr = Trainer(tiny_config())
    before = {name: [p.detach().clone() for p in getattr(tr.nets, name).parameters()]
              for name in NETS}
    losses = tr.train_step(_batch(rng))
    assert set(G_TERMS) | set(D_TERMS) <= set(losses)
    assert all(np.isfinite(v) for v in losses.values())
    for name in NETS:
        after = list(getattr(tr.nets, name).parameters())
        assert any(not torch.equal(a, b) for a, b in zip(after, before[name], strict=True)), name
    assert tr.step == 1


def test_generator_loss_weights_are_config_fields(rng):
    tr = Trainer(tiny_config(loss={"gan": 0.0, "cycle2": 0.0, "self_imitation": 0.0, "nonneg": 0.0}))
    g_terms, _ = tr.generator_terms(torch.from_numpy(_batch(rng)), "y")
    assert float(tr.generator_loss(g_terms, 0)) == pytest.approx(float(g_terms["cycle1"]))


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    col = rows[0].index("seconds")
    return [r[:col] + r[col + 1:] for r in rows]


@pytest.fixture
def raw_tif(tmp_path, rng) -> Path:
    vol = rng.poisson(100, size=(20, 40, 40)).astype(np.float32)
    zz, yy, xx = np.mgrid[0:20, 0:40, 0:40]
    for _ in range(6):
        c = rng.uniform([2, 2, 2], [18, 38, 38])
        vol += 1500 * np.exp(-((zz - c[0]) ** 2 / 18 + (yy - c[1]) ** 2 / 2 + (xx - c[2]) ** 2 / 2))
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, vol.astype(np.uint16))
    return path


def test_resume_reproduces_the_uninterrupted_run(tmp_path, raw_tif):
    cfg = tiny_config(steps=4)
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    train(raw_tif, a / "m.pt", cfg, device="cpu", previews=False)
    train(raw_tif, b / "m.pt", cfg, device="cpu", previews=False, stop_after=3)
    with pytest.raises(OutputExistsError):
        train(raw_tif, b / "m.pt", cfg, device="cpu", previews=False)
    with pytest.raises(ResumeError):
        train(raw_tif, b / "m.pt", tiny_config(steps=4, seed=5), device="cpu", resume=True)
    state3 = load_checkpoint(b / "m.last.pt")
    assert state3["step"] == 3
    train(raw_tif, b / "m.pt", cfg, device="cpu", resume=True, previews=False)
    assert _rows(a / "m.losses.csv") == _rows(b / "m.losses.csv")
    assert len(_rows(a / "m.losses.csv")) == 5  # header + 4 steps
    sa, sb = load_checkpoint(a / "m.last.pt"), load_checkpoint(b / "m.last.pt")
    assert sa["step"] == sb["step"] == 4
    for key in sa["generator"]:
        assert torch.equal(sa["generator"][key], sb["generator"][key]), key


def test_training_on_every_time_point_resumes_exactly(tmp_path, raw_tif):
    """``data.time = "all"``: the draws over the time points are part of the saved state, so
    a stopped and resumed run ends where an uninterrupted one does."""
    vol = tifffile.imread(raw_tif)
    series = tmp_path / "series.tif"
    tifffile.imwrite(series, np.stack([vol, vol[:, ::-1], 2 * vol[..., ::-1]]), imagej=True,
                     metadata={"axes": "TZYX"})
    cfg = tiny_config(steps=4, data={"time": "all"})
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    train(series, a / "m.pt", cfg, device="cpu", previews=False)
    train(series, b / "m.pt", cfg, device="cpu", previews=False, stop_after=3)
    train(series, b / "m.pt", cfg, device="cpu", resume=True, previews=False)
    assert _rows(a / "m.losses.csv") == _rows(b / "m.losses.csv")
    sa, sb = load_checkpoint(a / "m.last.pt"), load_checkpoint(b / "m.last.pt")
    for key in sa["generator"]:
        assert torch.equal(sa["generator"][key], sb["generator"][key]), key
    # a different draw from training on the first time point alone
    single = tmp_path / "single"
    single.mkdir()
    train(series, single / "m.pt", tiny_config(steps=4, data={"time": 0}), device="cpu",
          previews=False)
    assert _rows(single / "m.losses.csv") != _rows(a / "m.losses.csv")


def test_a_resume_that_adds_steps_records_them_in_the_config_file(tmp_path, raw_tif):
    """MODEL.json is the run's configuration: a resume with more --steps rewrites it."""
    out = tmp_path / "m.pt"
    train(raw_tif, out, tiny_config(steps=2), device="cpu", previews=False)
    assert json.loads((tmp_path / "m.json").read_text())["steps"] == 2
    train(raw_tif, out, tiny_config(steps=3), device="cpu", resume=True, previews=False)
    assert json.loads((tmp_path / "m.json").read_text())["steps"] == 3
    assert load_checkpoint(out)["step"] == 3


def test_checkpoint_contract_and_artifacts(tmp_path, raw_tif, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # previews need no imaging library
    out = tmp_path / "m.pt"
    train(raw_tif, out, tiny_config(steps=2), device="cpu")
    ckpt = load_checkpoint(out)
    assert ckpt["format"] == "resin-checkpoint"
    assert ckpt["config"]["generator"]["features"] == [4, 8]
    norm = ckpt["normalization"]
    assert norm["train_high"] > norm["train_low"]
    assert ckpt["scale"] == [1.0, 1.0, 1.0] and ckpt["axial_angle_deg"] == 0.0
    assert set(ckpt["discriminators"]) == {"yy", "aniso", "iso"}
    net = build_generator(ckpt)
    x = torch.rand(1, 1, 8, 8, 8)
    assert net(x).shape == x.shape
    assert (tmp_path / "m.json").is_file() and (tmp_path / "m.last.pt").is_file()
    pngs = sorted((tmp_path / "m.previews").glob("*.png"))
    assert [p.name for p in pngs] == ["step0000002.png"]
    report = json.loads((tmp_path / "m.report.json").read_text())
    assert {"cutoff_before", "cutoff_after", "change", "residual"} <= set(report)
    assert (tmp_path / "m.report.png").read_bytes()[:4] == b"\x89PNG"
    # weights_only loading works on the raw file (the contract for export/runtime)
    torch.load(out, weights_only=True)


def test_overwrite_replaces_a_runs_files_and_nothing_else(tmp_path, raw_tif):
    out, losses = tmp_path / "m.pt", tmp_path / "m.losses.csv"
    cfg = tiny_config(steps=2)
    train(raw_tif, out, cfg, device="cpu")
    train(raw_tif, out, cfg, device="cpu", overwrite=True)  # the run's own files: replaced
    assert len(_rows(losses)) == 3  # header + 2 steps, none left from the first run
    mine = "sample,area\nA,5\n"
    losses.write_text(mine)
    with pytest.raises(OutputExistsError, match="m.losses.csv"):
        train(raw_tif, out, cfg, device="cpu", overwrite=True)
    with pytest.raises(ResumeError, match="m.losses.csv"):
        train(raw_tif, out, cfg, device="cpu", resume=True)
    assert losses.read_text() == mine


@pytest.mark.parametrize("which", ["m.pt", "m.last.pt"])
@pytest.mark.parametrize("kind", ["text", "torch"])
def test_overwrite_never_replaces_a_model_file_it_did_not_write(tmp_path, raw_tif, which, kind):
    """MODEL.pt and MODEL.last.pt that are not resin checkpoints (notes, someone else's torch
    file) are refused before any work; an earlier run's checkpoints are replaced."""
    cfg = tiny_config(steps=1)
    mine = tmp_path / which
    if kind == "text":
        mine.write_text("my notes")
    else:
        torch.save({"w": torch.ones(3, 3)}, mine)
    before = mine.read_bytes()
    with pytest.raises(OutputExistsError, match=f"{which} exists and is not a resin checkpoint"):
        train(raw_tif, tmp_path / "m.pt", cfg, device="cpu", overwrite=True, previews=False)
    assert mine.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["raw.tif", which])


def test_resume_and_overwrite_together_are_refused(tmp_path, raw_tif):
    with pytest.raises(UsageError, match="contradict"):
        train(raw_tif, tmp_path / "m.pt", tiny_config(steps=1), device="cpu", resume=True,
              overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.tif"]


_TRAIN_STEP = Trainer.train_step


def _interrupt_at(monkeypatch, step: int) -> None:
    """Ctrl-C during training step ``step`` (1-based)."""
    real = _TRAIN_STEP

    def train_step(self, *args, **kwargs):
        if self.step + 1 == step:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def test_an_interruption_says_what_training_saved(tmp_path, raw_tif, monkeypatch):
    """Before the first checkpoint nothing can be resumed: it says so; after one, --resume
    continues from the step saved."""
    out = tmp_path / "m.pt"
    cfg = tiny_config(steps=6, checkpoint_every=3)
    _interrupt_at(monkeypatch, 2)
    with pytest.raises(Interrupted) as err:
        train(raw_tif, out, cfg, device="cpu", previews=False)
    assert isinstance(err.value, KeyboardInterrupt)
    assert "nothing was saved yet (the first checkpoint is at step 3)" in str(err.value)
    assert "--overwrite" in str(err.value) and not (tmp_path / "m.last.pt").exists()
    _interrupt_at(monkeypatch, 5)
    with pytest.raises(Interrupted, match=r"step 3 is in .*m\.last\.pt; --resume continues "
                                          "from step 3"):
        train(raw_tif, out, cfg, device="cpu", overwrite=True, previews=False)
    assert load_checkpoint(tmp_path / "m.last.pt")["step"] == 3
    # a resumed run interrupted before its next checkpoint still has the one it resumed
    with pytest.raises(Interrupted, match="continues from step 3"):
        train(raw_tif, out, cfg, device="cpu", resume=True, previews=False)


def test_resume_writes_the_losses_an_uninterrupted_run_writes(tmp_path, raw_tif):
    """A CSV row averages the steps since the previous row; the state saved between rows
    keeps those steps, so a resumed run writes the same rows."""
    cfg = tiny_config(steps=6, log_every=4, checkpoint_every=4)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    train(raw_tif, a / "m.pt", cfg, device="cpu", previews=False)
    train(raw_tif, b / "m.pt", cfg, device="cpu", previews=False, stop_after=3)
    train(raw_tif, b / "m.pt", cfg, device="cpu", resume=True, previews=False, stop_after=5)
    train(raw_tif, b / "m.pt", cfg, device="cpu", resume=True, previews=False)
    rows = _rows(a / "m.losses.csv")
    assert [r[0] for r in rows] == ["step", "4", "6"]
    assert _rows(b / "m.losses.csv") == rows


def test_oblique_training_runs(tmp_path, rng):
    vol = (rng.poisson(100, size=(32, 32, 32)) + 0).astype(np.uint16)
    vol[10:20, 12:16, 5:25] += 800
    path = tmp_path / "obl.tif"
    tifffile.imwrite(path, vol)
    cfg = tiny_config(steps=1, angle_deg=45.0, data={"patch_size": (28, 28, 28)})
    train(path, tmp_path / "m.pt", cfg, device="cpu", previews=False)
    assert load_checkpoint(tmp_path / "m.pt")["axial_angle_deg"] == 45.0


def test_self_imitation_pairs_are_raw_patches_turned_and_degraded(rng):
    """L_self compares F(D(R(y))) with R(y): with F = identity and D = identity it is 0."""
    tr = Trainer(tiny_config(generator_init_scale=0.0))
    tr.nets.D.reset_to_identity(noise=0.0)
    g_terms, _ = tr.generator_terms(torch.from_numpy(_batch(rng)), "y")
    # D applies its kernel by float32 FFT: even the identity kernel leaves ~5e-7 of
    # round-off per voxel (how much depends on the CPU's FFT path), x10 in the L1 weight
    assert float(g_terms["self"]) == pytest.approx(0.0, abs=1e-5)
    # a real blur in D makes the pair differ, and F = identity no longer restores it
    tr.nets.D.reset_to_gaussian(2.0, (1.0, 0.0, 0.0))
    g_terms, _ = tr.generator_terms(torch.from_numpy(_batch(rng)), "x")
    assert float(g_terms["self"]) > 0.01


def test_an_oblique_self_pair_comes_whole_from_the_sampler(rng):
    """Oblique PSF: the self-imitation pair is the sampler's patch seen through this step's
    R (data in every voxel), compared over the whole patch, not R(y) on its valid cube."""
    cfg = tiny_config(generator_init_scale=0.0, angle_deg=45.0,
                      data={"patch_size": (24, 24, 24)})
    tr = Trainer(cfg)
    tr.nets.D.reset_to_identity(noise=0.0)
    asked = []

    def rotated(matrix):
        asked.append(matrix)
        return _batch(rng, (24, 24, 24))

    tr.train_step(_batch(rng, (24, 24, 24)), rotated)
    assert len(asked) == 1
    assert any(np.allclose(asked[0], tr.geometry.rotation_matrix(a)) for a in ("x", "y"))
    # F = D = identity: a whole pair from the sampler gives 0 over the whole patch
    tr2 = Trainer(cfg)
    tr2.nets.D.reset_to_identity(noise=0.0)
    ry = torch.from_numpy(_batch(rng, (24, 24, 24)))
    y = torch.from_numpy(_batch(rng, (24, 24, 24)))
    assert float(tr2.generator_terms(y, "y", ry)[0]["self"].detach()) == pytest.approx(0.0, abs=1e-6)
    # the axial geometry rotates exactly and never asks the sampler
    axial = Trainer(tiny_config())
    axial.train_step(_batch(rng), lambda m: pytest.fail("asked for a rotated batch"))


def test_channels_last_layout_computes_the_same_step(rng):
    """The CPU's channels-last layout is a speed choice only: same losses as contiguous."""
    batch = _batch(rng)
    losses = [Trainer(tiny_config(), channels_last=layout).train_step(batch)
              for layout in (False, True)]
    for key in (*G_TERMS, *D_TERMS):
        assert losses[1][key] == pytest.approx(losses[0][key], rel=1e-4, abs=1e-6), key
    assert Trainer(tiny_config()).layout == torch.channels_last_3d


def test_nonneg_term_counts_only_voxels_darker_than_input_and_background(rng):
    tr = Trainer(tiny_config(generator_init_scale=0.0))
    y = torch.from_numpy(_batch(rng) - 0.3)  # F = identity: never darker than min(y, 0)
    g_terms, _ = tr.generator_terms(y, "y")
    assert float(g_terms["nonneg"]) == 0.0
    with torch.no_grad():
        tr.nets.F.head.bias.fill_(-0.5)  # everything 0.5 darker
    g_terms, _ = tr.generator_terms(y, "y")
    assert float(g_terms["nonneg"]) > 10.0


def test_fit_steps_fits_the_schedule_into_the_time_cap():
    from resin.train.trainer import fit_steps

    # 40 steps done in 20 s, then 2 steps/s; a 9 min cap at 90 % leaves 466 s: 932 more
    assert fit_steps(1200, 40, 20.0, 9.0, 2.0) == 972
    assert fit_steps(500, 40, 20.0, 9.0, 2.0) == 500       # a fast machine keeps its steps
    assert fit_steps(1200, 40, 1000.0, 0.01, 2.0) == 41    # never fewer than done + 1


def _timed_steps(monkeypatch, seconds, **constants) -> list[float]:
    """Give the trainer a fake clock that ``seconds(step)`` advances after each step, and
    set its time-cap constants (``FIT_WARMUP=1`` sets ``_FIT_WARMUP``); the clock."""
    import types

    import resin.train.trainer as trainer_mod

    clock = [0.0]
    monkeypatch.setattr(trainer_mod, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    for name, value in constants.items():
        monkeypatch.setattr(trainer_mod, f"_{name}", value)
    step = trainer_mod.Trainer.train_step

    def timed_step(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        clock[0] += seconds(self.step)
        return out

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", timed_step)
    return clock


def test_the_time_cap_fit_leaves_the_warm_up_steps_out(tmp_path, raw_tif, monkeypatch):
    """The first steps are slow (kernels built, volume paged in); timed with the rest they
    shrank the quick preset's schedule to 951 steps in 5.7 of its 9 minutes."""
    # two warm-up steps of 10 s, then 1 s
    _timed_steps(monkeypatch, lambda step: 10.0 if step <= 2 else 1.0, FIT_WARMUP=2, FIT_AFTER=4)
    # at step 4: 22 s gone, 1 step/s since the warm-up; 90 % of the cap is 24 s: 2 more
    cfg = tiny_config(steps=8, time_limit_minutes=24.0 / 54.0)
    train(raw_tif, tmp_path / "m.pt", cfg, device="cpu", previews=False)
    state = load_checkpoint(tmp_path / "m.last.pt")
    assert state["config"]["steps"] == 6 and state["step"] == 6


def test_the_time_cap_fit_follows_a_host_that_speeds_up(tmp_path, raw_tif, monkeypatch):
    """A shared host slow at the start and faster later: fitted once, the schedule ended
    after 6.5 of the quick preset's 9 minutes (1048 steps); re-fitted, it uses the cap."""
    clock = _timed_steps(monkeypatch, lambda step: {1: 10.0, 2: 4.0, 3: 4.0}.get(step, 1.0),
                         FIT_WARMUP=1, FIT_AFTER=2, REFIT_EVERY=2, REFIT_UNTIL=1.0)
    # 90 % of the cap is 30 s; fitted once at step 2 (0.25 steps/s) the run would stop at 6
    cfg = tiny_config(steps=40, time_limit_minutes=30.0 / 54.0, checkpoint_every=100,
                      validate_every=100, log_every=100)
    train(raw_tif, tmp_path / "m.pt", cfg, device="cpu", previews=False)
    state = load_checkpoint(tmp_path / "m.last.pt")
    assert state["config"]["steps"] == state["step"] > 6
    assert clock[0] <= 30.0


def test_the_time_cap_fit_shortens_the_schedule_when_the_host_slows_late(
        tmp_path, raw_tif, monkeypatch):
    """A host that slowed after 40 % of the schedule cut the paper model off at step 1257
    of 1263; late re-fits shorten the schedule so that it still ends inside the cap."""
    clock = _timed_steps(monkeypatch,
                         lambda step: 10.0 if step == 1 else (1.0 if step <= 10 else 3.0),
                         FIT_WARMUP=1, FIT_AFTER=2, REFIT_EVERY=2)
    # 90 % of a 33.3 s cap is 30 s: fitted to 21 steps at 1 step/s, then 3 s a step
    cfg = tiny_config(steps=40, time_limit_minutes=30.0 / 54.0, checkpoint_every=100,
                      validate_every=100, log_every=100)
    train(raw_tif, tmp_path / "m.pt", cfg, device="cpu", previews=False)
    state = load_checkpoint(tmp_path / "m.last.pt")
    assert state["config"]["steps"] == state["step"] < 21
    assert clock[0] <= 60.0 * cfg.time_limit_minutes


def test_a_fitted_schedule_ends_the_run_and_resumes_as_fitted(tmp_path, raw_tif, monkeypatch):
    import resin.train.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "_FIT_AFTER", 2)
    monkeypatch.setattr(trainer_mod, "fit_steps", lambda steps, done, s, lim, rate: 3)
    out = tmp_path / "m.pt"
    cfg = tiny_config(steps=6, time_limit_minutes=30.0)
    train(raw_tif, out, cfg, device="cpu", previews=False)
    state = load_checkpoint(tmp_path / "m.last.pt")
    assert state["step"] == 3 and state["config"]["steps"] == 3 and state["fitted_steps"]
    assert json.loads((tmp_path / "m.json").read_text())["steps"] == 3
    # resuming with the preset's own steps keeps the fitted schedule: nothing left to do
    train(raw_tif, out, cfg, device="cpu", previews=False, resume=True)
    assert load_checkpoint(tmp_path / "m.last.pt")["step"] == 3


def test_discriminators_see_the_real_batch_when_one_is_given(rng, monkeypatch):
    tr = Trainer(tiny_config(data={"patch_size": (16, 32, 32)}))
    seen = []
    terms = tr.discriminator_terms

    def spy(y, fakes):
        seen.append(y.detach().clone())
        return terms(y, fakes)

    monkeypatch.setattr(tr, "discriminator_terms", spy)
    batch, real = _batch(rng), _batch(rng)
    tr.train_step(batch)
    tr.train_step(batch, real=real)
    np.testing.assert_array_equal(seen[0].numpy(), batch)
    np.testing.assert_array_equal(seen[1].numpy(), real)


@pytest.mark.parametrize("voxel_size,z_step,hint", [
    ((2.0, 1.0, 1.0), 1, "--z-step 2"),  # planes 2x apart, trained as if isotropic
    ((0.6, 0.3, 0.3), 2, None),           # --z-step matches the file
    ((0.4, 0.3, 0.3), 1, None),           # slightly coarser: the blur covers it
    (None, 1, None),
])
def test_training_says_when_the_files_z_spacing_calls_for_z_step(
        monkeypatch, voxel_size, z_step, hint):
    from resin.train import trainer

    lines: list[str] = []
    monkeypatch.setattr(trainer._log, "log", lines.append)
    trainer._log_sampling(voxel_size, z_step)
    if hint is None:
        assert lines == []
    else:
        assert len(lines) == 1 and hint in lines[0] and "coarser than x-y" in lines[0]


def test_keep_sound_falls_back_to_the_last_generator_the_report_did_not_warn_on(
        tmp_path, raw_tif, monkeypatch, caplog):
    """keep="sound": a run whose end-of-training report warns (a dip another seed may fix)
    keeps the last validated generator that drew no warning; the last step's stays in
    MODEL.last.pt, a resume keeps the choice, and a run that ends sound keeps its last."""
    import resin.report
    import resin.train.trainer as trainer_module
    from resin import _log

    monkeypatch.setattr(_log.logger, "propagate", True)  # to caplog, whatever ran before
    caplog.set_level("INFO", logger="resin")
    calls: list[int] = []

    def warns(block, enhanced, config):  # step 2 sound, later validations not
        calls.append(1)
        return len(calls) > 1

    monkeypatch.setattr(trainer_module, "_warns", warns)
    monkeypatch.setattr(resin.report, "LOST_LATERAL", -1.0)  # the final report warns
    cfg = tiny_config(steps=4, keep="sound")
    train(raw_tif, tmp_path / "m.pt", cfg, device="cpu", previews=False)
    kept, last = load_checkpoint(tmp_path / "m.pt"), load_checkpoint(tmp_path / "m.last.pt")
    at2 = tmp_path / "two"
    at2.mkdir()
    train(raw_tif, at2 / "m.pt", cfg, device="cpu", previews=False, stop_after=2)
    step2 = load_checkpoint(at2 / "m.last.pt")["generator"]
    assert kept["best"]["step"] == 2 and last["step"] == 4
    for key in step2:
        assert torch.equal(kept["generator"][key], step2[key]), key
    assert any(not torch.equal(kept["generator"][k], last["generator"][k]) for k in step2)
    assert "the report of step 4 warned;" in caplog.text
    assert json.loads((tmp_path / "m.report.json").read_text())["retry"] is True
    # the choice is saved with the state: a resumed run (more steps) still has it
    calls.clear()
    calls.append(1)  # every validation of the resumed run warns
    train(raw_tif, tmp_path / "m.pt", tiny_config(steps=6, keep="sound"), device="cpu",
          previews=False, resume=True)
    assert load_checkpoint(tmp_path / "m.pt")["best"]["step"] == 2
    # a run whose end is sound keeps its last step, as keep="last" does
    monkeypatch.setattr(trainer_module, "_warns", lambda *a: False)
    sound = tmp_path / "sound"
    sound.mkdir()
    train(raw_tif, sound / "m.pt", cfg, device="cpu", previews=False)
    assert load_checkpoint(sound / "m.pt")["best"]["step"] == 4
