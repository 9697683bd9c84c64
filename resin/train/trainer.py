"""The RESIN trainer: F, D, three discriminators, the three constraints, exact resume.

One step (y = a batch of raw patches, x = F(y), R = a 90-degree turn of the axial axis onto
a lateral axis drawn at random each step):

- generator update (F and D together, Adam):
  ``L_G = w1 L_cycle1 + w2 L_cycle2 + w_s L_self + w_n L_nonneg
  + lambda (L_G_yy + L_G_aniso_proj + L_G_iso_proj)``
  with ``L_cycle1 = cyc(D(x), y)``, ``L_cycle2 = cyc(D(R^-1(F(D(R(x))))), y)``,
  ``L_self = cyc(F(D(R(y))), R(y))`` (self-imitation; D(R(y)) is made without gradients),
  ``L_nonneg = 100 mean(relu(min(y, 0) - x))``, ``cyc = 10 L1 + (1 - SSIM3D)``; the GAN
  terms ask the 3D discriminator to take D(R(x)) for real raw data, and the 2D
  discriminators to take the lateral MIPs (aniso) and the axial MIP (iso) of x for the
  axial MIP of y;
- discriminator update (Adam): least squares, real = y / axial MIP of y, fake = the
  detached fakes above.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resin import _log
from resin._optional import require
from resin._version import __version__
from resin.checkpoint import load_checkpoint, save_checkpoint
from resin.config import TrainConfig, fit_patch, patch_grid
from resin.data import (
    Normalization,
    PatchSampler,
    SeriesSampler,
    compute_normalization,
    foreground_level,
    spread,
    volume_sample,
)
from resin.errors import (
    ModelError,
    ResumeError,
    TrainingError,
    UsageError,
    VolumeError,
)
from resin.io import open_volume, volume_label
from resin.io._common import make_parent
from resin.losses import cosine_factor, cycle_loss, lsgan
from resin.models import (
    Degrader,
    Generator,
    PatchDiscriminator2D,
    PatchDiscriminator3D,
)
from resin.train import Interrupted
from resin.train.config_io import patch_refusal, too_small
from resin.train.geometry import AXES, Geometry
from resin.train.noise import NoiseModel
from resin.train.outputs import Paths, check_outputs

require("torch", "RESIN training", extra="train")
import torch  # noqa: E402 - after the check that names the extra to install

G_TERMS = ("cycle1", "cycle2", "self", "nonneg", "G_yy", "G_aniso_proj", "G_iso_proj")
D_TERMS = ("D_yy", "D_aniso_proj", "D_iso_proj")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


class Networks(torch.nn.Module):
    """F, D and the three discriminators, with their two optimizers."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.F = Generator(config.generator)
        if config.generator_init_scale != 1.0:
            # A small correction at first keeps F near the identity (the global residual).
            with torch.no_grad():
                self.F.head.weight.mul_(config.generator_init_scale)
                if self.F.head.bias is not None:
                    self.F.head.bias.mul_(config.generator_init_scale)
        self.D = Degrader(config.degrader)
        self.disc_yy = PatchDiscriminator3D(config.discriminator)
        self.disc_aniso = PatchDiscriminator2D(config.discriminator)
        self.disc_iso = PatchDiscriminator2D(config.discriminator)
        o = config.optim
        self.opt_g = torch.optim.Adam(
            [{"params": list(self.F.parameters()), "lr": o.lr_generator, "scale": 1.0},
             {"params": list(self.D.parameters()), "lr": o.lr_generator * config.degrader_lr_scale,
              "scale": config.degrader_lr_scale}], betas=o.betas)
        self.opt_d = torch.optim.Adam([*self.disc_yy.parameters(), *self.disc_aniso.parameters(),
                                       *self.disc_iso.parameters()],
                                      lr=o.lr_discriminator, betas=o.betas)

    def discriminators(self) -> list[torch.nn.Module]:
        return [self.disc_yy, self.disc_aniso, self.disc_iso]


class Trainer:
    """Holds the networks, the geometry and the loss computation; no I/O."""

    def __init__(self, config: TrainConfig, device: torch.device | str = "cpu",
                 channels_last: bool | None = None) -> None:
        """``channels_last``: run F and the 3-D discriminator in the channels-last layout
        (None: on a CPU, where oneDNN's 3-D convolutions, above all their backward passes,
        are faster in it; ``bench/train_speed.py`` measures both)."""
        self.config = config
        self.device = torch.device(device)
        torch.manual_seed(config.seed)
        self.nets = Networks(config).to(self.device)
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        self.layout = torch.channels_last_3d if channels_last else torch.contiguous_format
        for net in (self.nets.F, self.nets.disc_yy):
            net.to(memory_format=self.layout)  # type: ignore[call-overload]
        self.geometry = Geometry(config.data.patch_size, config.angle_deg, self.device)
        self.rng = np.random.default_rng([config.seed, 1])
        self.step = 0
        #: the raw volume's noise, added to D's outputs (set by training's start)
        self.noise = NoiseModel()
        self.amp = config.amp and self.device.type == "cuda"
        refusal = patch_refusal(config)
        if refusal is not None:
            raise UsageError(f"patches of {tuple(config.data.patch_size)} are {refusal}")

    # -- losses -----------------------------------------------------------------------
    def _cyc(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lc = self.config.loss
        return cycle_loss(pred, target, lc.cycle_l1, lc.cycle_ssim, lc.ssim_window, lc.ssim_sigma)

    def _f(self, v: torch.Tensor) -> torch.Tensor:
        """F on ``v`` in the trainer's memory layout."""
        return self.nets.F(v.contiguous(memory_format=self.layout))

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def _noisy(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` (an output of D) with the noise D's blur averaged away added back
        (:mod:`resin.train.noise`); the noise's scale carries no gradient."""
        nm = self.noise
        if nm.silent:
            return v
        with torch.no_grad():
            kept = 0.0
            if self.nets.D.kernel is not None:
                kept = float((self.nets.D.blur_kernel() ** 2).sum())
            share = nm.scale * max(0.0, 1.0 - kept)
            std = torch.sqrt(torch.clamp(nm.gain * v.float() + nm.floor, min=0.0) * share)
        return v + (std * torch.randn_like(std)).to(v.dtype)

    def gan_ramp(self, step: int) -> float:
        w = self.config.optim.warmup_steps
        return 1.0 if w == 0 else min(1.0, step / w)

    def generator_terms(self, y: torch.Tensor, axis: str, ry: torch.Tensor | None = None
                        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The five generator loss terms, and the fakes the discriminators need.

        ``ry``: raw patches already seen through R (:meth:`PatchSampler.rotated_batch`) for
        the self-imitation pair; without it R(y) is used, which for an oblique PSF is data
        only on :attr:`Geometry.valid`. The discriminators are frozen while the graph is
        built, so these terms never put gradients into them.
        """
        n, g = self.nets, self.geometry
        for d in n.discriminators():
            d.requires_grad_(False)
        with self._autocast():
            if self.config.loss.self_imitation:
                # the self-imitation pair needs no gradient: D must not blur less to make
                # F's task easier. F sees y and D(R(y)) in one batch (one pass, and CPU
                # convolutions are faster per voxel on larger batches).
                whole = ry is not None  # every voxel of ry is data
                with torch.no_grad():
                    ry = g.rotate(y, axis) if ry is None else ry.to(y.dtype)
                    dry = self._noisy(n.D(ry))
                if dry.shape == y.shape:
                    both = self._f(torch.cat([y, dry.to(y.dtype)]))
                    x, f_dry = both[:y.shape[0]], both[y.shape[0]:]
                else:  # R turned a non-cubic patch
                    x, f_dry = self._f(y), self._f(dry.to(y.dtype))
                self_term = (self._cyc(f_dry, ry) if whole
                             else self._cyc(g.crop(f_dry), g.crop(ry)))
            else:
                x = self._f(y)
                self_term = torch.zeros((), device=y.device)
            cycle1 = self._cyc(n.D(x), y)
            drx = self._noisy(n.D(g.rotate(x, axis)))
            back = n.D(g.rotate_inverse(self._f(drx), axis))
            cycle2 = self._cyc(g.crop(back), g.crop(y))
            fake_yy = g.crop(drx)
            nonneg = 100.0 * torch.relu(torch.clamp(y, max=0.0) - x.float()).mean()
            mip_y, mip_x = g.lateral_mips(x)
            mip_axial = g.axial_mip(x)
            terms = {
                "cycle1": cycle1,
                "cycle2": cycle2,
                "self": self_term,
                "nonneg": nonneg,
                "G_yy": lsgan(n.disc_yy(fake_yy), real=True),
                "G_aniso_proj": 0.5 * (lsgan(n.disc_aniso(mip_y), real=True)
                                       + lsgan(n.disc_aniso(mip_x), real=True)),
                "G_iso_proj": lsgan(n.disc_iso(mip_axial), real=True),
            }
        for d in n.discriminators():
            d.requires_grad_(True)
        fakes = {"yy": fake_yy, "mip_y": mip_y, "mip_x": mip_x, "mip_axial": mip_axial}
        return terms, fakes

    def generator_loss(self, terms: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        lc = self.config.loss
        lam = lc.gan * self.gan_ramp(step)
        return (lc.cycle1 * terms["cycle1"] + lc.cycle2 * terms["cycle2"]
                + lc.self_imitation * terms["self"] + lc.nonneg * terms["nonneg"]
                + lam * (lc.yy * terms["G_yy"] + lc.aniso_proj * terms["G_aniso_proj"]
                         + lc.iso_proj * terms["G_iso_proj"]))

    def discriminator_terms(self, y: torch.Tensor,
                            fakes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n, g = self.nets, self.geometry
        f = {k: v.detach() for k, v in fakes.items()}
        with self._autocast():
            real_mip = g.axial_mip(y)
            return {
                "D_yy": 0.5 * (lsgan(n.disc_yy(g.crop(y)), real=True)
                               + lsgan(n.disc_yy(f["yy"]), real=False)),
                "D_aniso_proj": 0.5 * (lsgan(n.disc_aniso(real_mip), real=True)
                                       + 0.5 * (lsgan(n.disc_aniso(f["mip_y"]), real=False)
                                                + lsgan(n.disc_aniso(f["mip_x"]), real=False))),
                "D_iso_proj": 0.5 * (lsgan(n.disc_iso(real_mip), real=True)
                                     + lsgan(n.disc_iso(f["mip_axial"]), real=False)),
            }

    def discriminator_loss(self, terms: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        lc = self.config.loss
        lam = lc.gan * self.gan_ramp(step)
        return lam * (lc.yy * terms["D_yy"] + lc.aniso_proj * terms["D_aniso_proj"]
                      + lc.iso_proj * terms["D_iso_proj"])

    # -- one step ---------------------------------------------------------------------
    def set_learning_rates(self, step: int) -> float:
        o = self.config.optim
        factor = cosine_factor(step, self.config.steps, o.min_lr_ratio) if o.cosine else 1.0
        held = step < self.config.degrader_hold_share * self.config.steps
        for group, hold in zip(self.nets.opt_g.param_groups, (False, held), strict=True):
            group["lr"] = 0.0 if hold else o.lr_generator * group["scale"] * factor
        for group in self.nets.opt_d.param_groups:
            group["lr"] = o.lr_discriminator * factor
        return factor

    def train_step(self, batch: np.ndarray,
                   rotated: Callable[[np.ndarray], np.ndarray | None] | None = None,
                   real: np.ndarray | None = None) -> dict[str, float]:
        """One generator update then one discriminator update; returns every loss term.

        ``rotated(B)``: raw patches seen through the rotation ``B`` of this step's R
        (:meth:`PatchSampler.rotated_batch`), used for an oblique PSF's self-imitation pair.
        ``real``: the discriminators' real patches, if not ``batch``
        (:meth:`PatchSampler.real_batch`).
        """
        n = self.nets
        n.train()
        y = torch.from_numpy(batch).to(self.device)
        axis = AXES[int(self.rng.integers(0, len(AXES)))]
        factor = self.set_learning_rates(self.step)
        ry = None
        if rotated is not None and self.geometry.oblique and self.config.loss.self_imitation:
            r = rotated(self.geometry.rotation_matrix(axis))
            ry = None if r is None else torch.from_numpy(r).to(self.device)
        g_terms, fakes = self.generator_terms(y, axis, ry)
        loss_g = self.generator_loss(g_terms, self.step)
        n.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        n.opt_g.step()
        if n.D.project_() <= 0.0:
            raise TrainingError(f"D's blur kernel vanished at step {self.step + 1}; lower "
                                "optim.lr_degrader_scale in --config")
        y_real = y if real is None else torch.from_numpy(real).to(self.device)
        d_terms = self.discriminator_terms(y_real, fakes)
        loss_d = self.discriminator_loss(d_terms, self.step)
        n.opt_d.zero_grad(set_to_none=True)
        if loss_d.requires_grad:
            loss_d.backward()
            n.opt_d.step()
        self.step += 1
        out = {k: float(v.detach()) for k, v in {**g_terms, **d_terms}.items()}
        out["L_G"] = float(loss_g.detach())
        out["L_D"] = float(loss_d.detach())
        out["lr_factor"] = factor
        if not all(math.isfinite(v) for v in out.values()):
            bad = ", ".join(k for k, v in out.items() if not math.isfinite(v))
            raise TrainingError(f"training diverged at step {self.step} (non-finite {bad}); "
                                "lower the learning rates in --config")
        return out

    @torch.no_grad()
    def enhance(self, volume: np.ndarray) -> np.ndarray:
        """F on a normalized (Z, Y, X) block whose sides are multiples of the size multiple."""
        self.nets.F.eval()
        t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
        with self._autocast():
            out = self._f(t.to(self.device))
        return out.float()[0, 0].cpu().numpy()

    @torch.no_grad()
    def degrade(self, volume: np.ndarray) -> np.ndarray:
        """D on a normalized (Z, Y, X) block."""
        self.nets.D.eval()
        t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
        return self.nets.D(t.to(self.device)).float()[0, 0].cpu().numpy()

    @torch.no_grad()
    def validation_cycle(self, patches: list[np.ndarray]) -> float:
        """Mean cycle loss y vs D(F(y)) on fixed patches (ground-truth free)."""
        if not patches:
            return float("nan")
        self.nets.eval()
        losses = []
        for p in patches:
            y = torch.from_numpy(p)[None, None].to(self.device)
            with self._autocast():
                losses.append(float(self._cyc(self.nets.D(self._f(y)), y)))
        return float(np.mean(losses))

    # -- state ------------------------------------------------------------------------
    def state_dict_payload(self) -> dict[str, Any]:
        n = self.nets
        return {
            "generator": n.F.state_dict(),
            "degrader": n.D.state_dict(),
            "discriminators": {"yy": n.disc_yy.state_dict(), "aniso": n.disc_aniso.state_dict(),
                               "iso": n.disc_iso.state_dict()},
            "optimizers": {"generator": n.opt_g.state_dict(),
                           "discriminator": n.opt_d.state_dict()},
            "step": self.step,
            "noise": self.noise.record(),
            "rng": {"trainer": json.dumps(self.rng.bit_generator.state),
                    "torch": torch.get_rng_state()},
        }

    def load_payload(self, ckpt: dict[str, Any]) -> None:
        n = self.nets
        try:
            n.F.load_state_dict(ckpt["generator"])
            n.D.load_state_dict(ckpt["degrader"])
            n.disc_yy.load_state_dict(ckpt["discriminators"]["yy"])
            n.disc_aniso.load_state_dict(ckpt["discriminators"]["aniso"])
            n.disc_iso.load_state_dict(ckpt["discriminators"]["iso"])
            n.opt_g.load_state_dict(ckpt["optimizers"]["generator"])
            n.opt_d.load_state_dict(ckpt["optimizers"]["discriminator"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ResumeError(f"the checkpoint does not match this configuration ({exc})") from exc
        self.step = int(ckpt["step"])
        if "noise" in ckpt:
            self.noise = NoiseModel(**ckpt["noise"])
        self.rng.bit_generator.state = json.loads(ckpt["rng"]["trainer"])
        torch.set_rng_state(ckpt["rng"]["torch"])


# ---------------------------------------------------------------------------------------
def train(raw: str | os.PathLike, out: str | os.PathLike, config: TrainConfig | None = None,
          device: str = "auto", resume: bool = False, overwrite: bool = False,
          previews: bool = True, stop_after: int | None = None) -> Path:
    """Train on ``raw``; write the best-validated model to ``out`` and return its path.

    Beside ``out`` (``MODEL.pt``): ``MODEL.last.pt`` (full state, for ``resume``),
    ``MODEL.json`` (the config), ``MODEL.losses.csv`` and ``MODEL.previews/``; which of
    these may be replaced is :func:`resin.train.outputs.check_outputs`'s rule, checked first.
    ``stop_after``: stop (after saving the state) once this many steps are done, as an
    interruption would; a later ``resume=True`` call continues exactly.
    """
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pass one")
    config = config or TrainConfig()
    paths = Paths(Path(out))
    if paths.model.suffix != ".pt":
        raise UsageError(f"{out}: the model file must end in .pt")
    refusal = patch_refusal(config)
    if refusal is not None:
        raise UsageError(f"patches of {tuple(config.data.patch_size)} are {refusal}")
    check_outputs(paths, (*G_TERMS, *D_TERMS), overwrite=overwrite, resume=resume)
    make_parent(paths.model)  # a new output folder is created, as resin export does
    dev = resolve_device(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    resume_ckpt = None
    if resume:
        try:
            resume_ckpt = load_checkpoint(paths.state)
        except ModelError as exc:
            raise ResumeError(f"cannot resume: {exc}") from exc
        saved = TrainConfig.model_validate(resume_ckpt["config"])
        if resume_ckpt.get("fitted_steps") and saved.steps != config.steps:
            # the run fitted its schedule to its time cap: keep that schedule
            _log.log(f"resuming the schedule of {saved.steps} steps that this run fitted to "
                     "its time cap")
            config = config.model_copy(update={"steps": saved.steps})
        # The number of steps may grow on resume; nothing else may change.
        if saved.model_copy(update={"steps": config.steps}) != config:
            raise ResumeError(f"{paths.state} was made with a different configuration; resume "
                              "with the same options (only --steps may change)")

    checkpointed = _Saved(None if resume_ckpt is None else int(resume_ckpt["step"]))
    readers = open_readers(raw, config.data.channel, config.data.time)
    try:
        return _run(readers, paths, config, dev, resume_ckpt, previews, stop_after,
                    checkpointed)
    except KeyboardInterrupt:
        raise Interrupted(checkpointed.describe(paths, config)) from None
    finally:
        for reader in readers:
            reader.close()


#: ``--time all`` trains on at most this many time points, spread evenly over the series:
#: each is opened once and held open (a TIFF reader parses the whole file's pages and holds
#: two file handles, so hundreds would take minutes to open and could run out of handles)
SERIES_TIME_POINTS = 16


def series_time_points(count: int, most: int | None = None) -> list[int]:
    """The time points of a ``count``-long series that ``--time all`` trains on: all of a
    short one, else ``most`` (default :data:`SERIES_TIME_POINTS`) spread evenly from the
    first to the last."""
    most = SERIES_TIME_POINTS if most is None else most
    return list(range(count)) if count <= most else spread(count, most)


def open_readers(raw: str | os.PathLike, channel: int | None,
                 time: int | str | None) -> list[Any]:
    """The readers training reads: one, or with ``time="all"`` one per time point of a
    series that :func:`series_time_points` picks (one for a file that is not a series)."""
    if time != "all":
        return [open_volume(raw, channel, time)]  # type: ignore[arg-type]
    first = open_volume(raw, channel, 0)
    readers = [first]
    try:
        for t in series_time_points(int(getattr(first, "time_points", 1)))[1:]:
            readers.append(open_volume(raw, channel, t))
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    return readers


@dataclass
class _Saved:
    """The step of the training state last saved in ``MODEL.last.pt`` by this run (or the
    one it resumed), for what an interruption says."""

    step: int | None

    def describe(self, paths: Paths, config: TrainConfig) -> str:
        if self.step is None:
            first = min(config.checkpoint_every, config.steps)
            return (f"nothing was saved yet (the first checkpoint is at step {first}); rerun "
                    "with --overwrite to start over")
        return (f"the training state of step {self.step} is in {paths.state}; --resume "
                f"continues from step {self.step}")


def _run(readers: list[Any], paths: Paths, config: TrainConfig, dev: torch.device,
         resume_ckpt: dict[str, Any] | None, previews: bool, stop_after: int | None,
         checkpointed: _Saved) -> Path:
    reader = readers[0]
    if len(reader.shape) != 3:
        raise VolumeError(f"{reader.path}: expected a 3D ZYX volume, got shape {reader.shape}")
    grid = patch_grid(reader.shape, config.data.z_step)
    if any(q > n for q, n in zip(config.data.patch_size, grid, strict=True)):
        fitting = fit_patch(config, grid)
        if patch_refusal(fitting) is not None:
            raise too_small(reader.path, tuple(reader.shape), config)
        fits = " ".join(map(str, fitting.data.patch_size))
        on = f" (z-step {config.data.z_step}: {grid})" if config.data.z_step > 1 else ""
        raise VolumeError(f"{reader.path}: volume {tuple(reader.shape)}{on} is smaller than "
                          f"the training patch {tuple(config.data.patch_size)}; train with "
                          f"--patch {fits}, which fits")
    sampler = _sampler(readers, config)
    norm = sampler.norm
    trainer = Trainer(config, dev)
    val_patches = sampler.validation_patches(config.data.validation_patches, config.seed + 7)
    preview_region = sampler.preview_region(config.generator.size_multiple)
    preview_raw = sampler.read_region(preview_region)
    best: dict[str, Any] = {"score": None, "step": None}
    # keep="sound": the last validated generator the report did not warn on (its step, F)
    sound: dict[str, Any] = {"step": None, "generator": None}
    axial_sigma: float | None = None  # D's measured start (not re-measured on resume)
    noise: NoiseModel | None = None  # the raw volume's noise (likewise)
    # the run's configuration (a resume may add steps; check_outputs vetted the file as ours)
    paths.config.write_text(config.model_dump_json(indent=2))
    if resume_ckpt is not None:
        trainer.load_payload(resume_ckpt)
        sampler.set_state(resume_ckpt["rng"]["sampler"])
        best = dict(resume_ckpt.get("best", best))
        sound = dict(resume_ckpt.get("sound", sound))
        _truncate_csv(paths.losses, trainer.step)
        _log.log(f"resuming at step {trainer.step} of {config.steps}")
    else:
        _truncate_csv(paths.losses, 0)
        axial_sigma = _start_degrader(trainer, sampler, config)
        noise = _start_noise(trainer, sampler, config)
    _log_anisotropy(preview_raw, hint=not config.angle_deg, axial_sigma=axial_sigma)
    if noise is not None:
        _log_noise(noise)
    _log_sampling(getattr(reader, "voxel_size", None), config.data.z_step)
    what, levels = volume_label(reader), "normalization"
    if len(readers) > 1:
        used = len(getattr(sampler, "samplers", [sampler]))
        count = int(getattr(reader, "time_points", len(readers)))
        what = (f"{'all ' if used == count else ''}{used} "
                f"{'' if used == count else f'of {count} '}time points"
                f"{' (evenly spaced)' if len(readers) < count else ''} of "
                f"{Path(str(reader.path).rstrip('/')).name}")
        levels = (f"normalization per time point (time point "
                  f"{getattr(sampler.reader, 'time', 0)}:")
    _log.log(f"training on {what} {tuple(reader.shape)} {reader.dtype}, "
             f"device {dev}, patch {tuple(config.data.patch_size)}, {config.steps} steps; {levels} "
             f"p{config.normalization.low_percentile}={norm.low:.4g} "
             f"p{config.normalization.high_percentile}={norm.high:.4g}"
             + (")" if len(readers) > 1 else "")
             + (" (validation strip held out)" if sampler.holdout else ""))

    fitted = [bool(resume_ckpt.get("fitted_steps")) if resume_ckpt is not None else False]

    def payload() -> dict[str, Any]:
        p = trainer.state_dict_payload()
        p["rng"]["sampler"] = sampler.state()
        p.update(_metadata(config, norm, reader))
        p["best"] = best
        if config.keep == "sound":
            p["sound"] = sound
        p["fitted_steps"] = fitted[0]
        p["loss_window"] = list(window)
        return p

    # the steps since the last CSV row (each row averages them): saved with the state, so
    # that a resumed run writes the rows an uninterrupted one does
    window: list[dict[str, float]] = []
    if resume_ckpt is not None:
        window.extend(resume_ckpt.get("loss_window", []))
    t_start = time.perf_counter()
    limit = config.time_limit_minutes

    def log_window(step: int) -> None:
        mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
        window.clear()
        _append_csv(paths.losses, step, mean, time.perf_counter() - t_start)
        _log.log(f"step {step}: " + " ".join(f"{k}={mean[k]:.4f}" for k in (*G_TERMS, *D_TERMS)))

    def validate(step: int) -> None:
        nonlocal best, sound
        enhanced = trainer.enhance(preview_raw)
        score, parts = _validation_score(trainer, val_patches, enhanced, config)
        _log.log(f"step {step}: validation score {score:.4f} ({parts})")
        if config.keep == "best" and (best["score"] is None or score < best["score"]):
            best = {"score": score, "step": step}
            save_checkpoint(paths.model, payload())
        if config.keep == "sound" and not _warns(preview_raw, enhanced, config):
            sound = {"step": step, "generator": {k: v.detach().clone() for k, v in
                                                 trainer.nets.F.state_dict().items()}}

    fit_at = trainer.step + _FIT_AFTER if (limit is not None and resume_ckpt is None) else None
    warm_at = trainer.step + min(_FIT_WARMUP, _FIT_AFTER - 1)
    t_warm = t_start
    asked = config.steps
    marks: deque[tuple[int, float]] = deque(maxlen=3)  # (step, time) of the last re-fits
    with _log.progress(max(config.steps - trainer.step, 0), "training", unit="steps") as bar:
        while trainer.step < config.steps:
            window.append(trainer.train_step(sampler.batch(), sampler.rotated_batch,
                                             sampler.real_batch()))
            step = trainer.step
            bar.advance(1)
            if step == warm_at:
                t_warm = time.perf_counter()
            if (fit_at is not None and limit is not None and step >= fit_at
                    and (step - fit_at) % _REFIT_EVERY == 0):
                now = time.perf_counter()
                marks.append((step, now))
                rate = (step - warm_at) / max(now - t_warm, 1e-9)
                early = step < _REFIT_UNTIL * config.steps
                if not early and len(marks) > 2:
                    # late: the slower of the whole run's speed and the last 100 steps'
                    s0, t0 = marks[0]
                    rate = min(rate, (step - s0) / max(now - t0, 1e-9))
                steps = fit_steps(asked, step, now - t_start, limit, rate)
                if not early:
                    steps = min(steps, config.steps)   # late re-fits only shorten
                if steps != config.steps:
                    if step == fit_at:
                        _log.log(f"at {rate:.2f} steps/s, {asked} steps would overrun the "
                                 f"{limit:g} min cap: training {steps} steps, so the "
                                 "learning-rate schedule ends inside it")
                    elif abs(steps - config.steps) >= 0.02 * config.steps:
                        _log.log(f"step {step}: now {rate:.2f} steps/s, the schedule "
                                 f"re-fitted to {steps} steps")
                    config.steps = steps
                    fitted[0] = True
                    paths.config.write_text(config.model_dump_json(indent=2))
                    bar.set_total(steps)
            last = step == config.steps
            out_of_time = limit is not None and time.perf_counter() - t_start > 60 * limit
            if step % config.log_every == 0 or last or out_of_time:
                log_window(step)
            if step % config.validate_every == 0 or last or out_of_time:
                validate(step)
            if previews and (step % config.preview_every == 0 or last or out_of_time):
                from resin.train.preview import write_preview

                write_preview(paths.previews / f"step{step:07d}.png", preview_raw,
                              trainer.enhance(preview_raw))
            if step % config.checkpoint_every == 0 or last or out_of_time or step == stop_after:
                save_checkpoint(paths.state, payload())
                checkpointed.step = step
            if step == stop_after:
                _log.log(f"stopped at step {step} as asked; continue with --resume")
                return paths.model
            if out_of_time and not last:
                _log.log(f"time limit of {limit:g} min reached at step {step} of "
                         f"{config.steps}; stopped (--resume continues)")
                break
    if config.keep in ("last", "sound") or not paths.model.exists():
        best = {"score": None, "step": trainer.step}
        save_checkpoint(paths.model, payload())
    _log.log(f"{paths.model}: the generator of step {best['step']} (validation score "
             f"{best['score']}); full training state in {paths.state}")
    report = _final_report(trainer, paths, preview_raw, best["step"])
    if (config.keep == "sound" and report is not None and report.retry
            and sound["step"] is not None and sound["step"] != best["step"]):
        # the run ended in a dip an earlier generator did not have: keep that one
        last = best["step"]
        trainer.nets.F.load_state_dict(sound["generator"])
        best = {"score": None, "step": sound["step"]}
        save_checkpoint(paths.model, payload())
        _log.log(f"the report of step {last} warned; {paths.model} is the generator of step "
                 f"{best['step']}, the last validated one it did not warn on (step {last}'s "
                 f"is in {paths.state})")
        _final_report(trainer, paths, preview_raw, None)
    return paths.model


def _warns(block: np.ndarray, enhanced: np.ndarray, config: TrainConfig) -> bool:
    """Whether the end-of-training report on ``block`` would ask for another seed."""
    from resin.report import make_report

    try:
        return make_report(block, enhanced, None, config.angle_deg).retry
    except Exception:  # noqa: BLE001 - a validation aid must never stop training
        return True


def _final_report(trainer: Trainer, paths: Paths, block: np.ndarray, step: int | None
                  ) -> Any:
    """Log and write the ground-truth-free report (resin.report) of the kept generator
    (``step``: the generator in ``MODEL.pt`` when it is not the trainer's); returns it
    (None when it could not be made)."""
    from resin.report import make_report, write_report

    if step is not None and step != trainer.step:
        trainer.nets.F.load_state_dict(load_checkpoint(paths.model)["generator"])
    enhanced = trainer.enhance(block)
    degraded = trainer.degrade(enhanced)
    try:
        report = make_report(block, enhanced, degraded, trainer.config.angle_deg)
    except Exception as exc:  # noqa: BLE001 - a report must never fail a finished run
        _log.log(f"no report: {exc}")
        return None
    for line in report.lines():
        _log.log(line)
    write_report(paths.model.with_suffix(""), report, block, degraded, enhanced)
    return report


#: first steps of a time-capped run left out of its speed: they build the convolution
#: kernels and page the volume in (on 2 CPU cores the first 20 steps of one run took
#: 0.51 s each, the following ones 0.36 s)
_FIT_WARMUP = 10
#: steps done when a time-capped run fits its step count to the cap
_FIT_AFTER = 40
#: share of the cap the fitted schedule may use (validation, checkpoints, the report)
_FIT_SHARE = 0.9
#: a shared host's speed drifts by tens of percent over minutes (one run: 0.44 s a step
#: over steps 10-40, 0.33 s after step 300; another 0.36 s, then 0.5 s after step 700),
#: so the schedule is re-fitted to the speed since the warm-up every this many steps ...
_REFIT_EVERY = 50
#: ... freely until this share of it is done (an oblique D's hold ends at half); after it only
#: shortened, and on the slower of that speed and the last 100 steps', so that a late
#: slowdown still ends the schedule inside the cap
_REFIT_UNTIL = 0.4


def fit_steps(steps: int, done: int, elapsed: float, limit_minutes: float,
              rate: float) -> int:
    """Steps that fit in ``limit_minutes`` when ``done`` steps took ``elapsed`` seconds
    and the rest run at ``rate`` steps/s.

    A time-capped run (the quick preset) fits its schedule at step ``_FIT_AFTER`` and
    re-fits it every ``_REFIT_EVERY`` steps (only shorter after ``_REFIT_UNTIL`` of it), so
    that the cosine decay ends inside the cap on a slow machine instead of being cut off
    half-way; a fast machine keeps ``steps``. ``rate`` is measured after the warm-up steps,
    whose slowness would otherwise shrink the schedule well below what the cap holds. The
    fitted count is saved in the run's config, so ``--resume`` continues the same schedule.
    """
    if rate <= 0:
        return steps
    fitted = done + int(rate * (60.0 * limit_minutes * _FIT_SHARE - elapsed))
    return max(done + 1, min(steps, fitted))


def _log_anisotropy(block: np.ndarray, hint: bool = True,
                    axial_sigma: float | None = None) -> None:
    """Say how anisotropic the raw volume looks before training (spectral cut-offs); with
    ``hint``, suggest --angle / --z-step when z hardly looks blurred (an oblique run's
    blur is not along z, so it gets no hint). ``axial_sigma``: the axial blur D starts with;
    at 1 voxel or more the volume is blurred along z whatever the cut-offs say (on a stack of
    20 planes they hardly can), so no hint."""
    try:
        from resin.metrics import cutoff_frequencies

        cz, cy, cx = cutoff_frequencies(block)
    except Exception:  # noqa: BLE001 - information only
        return
    note = ""
    blurred = axial_sigma is not None and axial_sigma >= 1.0
    if hint and not blurred and min(cy, cx) / cz <= 1.15:
        note = (" (hardly anisotropic along z: is the PSF tilted (--angle) or z sampled "
                "coarser than x-y (--z-step)?")
        lateral = max(cy, cx) / min(cy, cx)
        if lateral > 1.5:
            note += (f" Or do the structures run mostly along one lateral axis? y and x "
                     f"differ {lateral:.2f}x")
        note += ")"
    _log.log(f"raw volume: spectral cut-off z {cz:.3f}, y {cy:.3f}, x {cx:.3f} cycles/voxel; "
             f"anisotropy (lateral / axial) y/z {cy / cz:.2f}, x/z {cx / cz:.2f}" + note)


#: z spacing / lateral spacing from which the file's voxel size suggests --z-step
Z_STEP_HINT = 1.5


def _log_sampling(voxel_size: tuple[float, float, float] | None, z_step: int) -> None:
    """When the file records z planes spaced well apart from its pixels and no --z-step
    matches, say so: F keeps its input's grid, so the output keeps the coarse z."""
    if voxel_size is None:
        return
    vz, vy, vx = (float(v) for v in voxel_size)
    ratio = vz / min(vy, vx)
    k = max(1, round(ratio))
    if ratio >= Z_STEP_HINT and k != z_step:
        _log.log(f"the file records voxels of {vz:g} x {vy:g} x {vx:g} um (z, y, x): z is "
                 f"sampled {ratio:.1f}x coarser than x-y; pass --z-step {k} for a model whose "
                 f"output has ~{vz / k:g} um planes (this run's --z-step {z_step} gives "
                 f"{vz / z_step:g} um)")


def _validation_score(trainer: Trainer, patches: list[np.ndarray], enhanced: np.ndarray,
                      config: TrainConfig) -> tuple[float, str]:
    """Ground-truth free: held-out cycle loss + |log isotropy_fourier(F(preview block))|
    (``enhanced``: F of the preview block)."""
    cyc = trainer.validation_cycle(patches)
    iso = _fourier_isotropy(enhanced, config.angle_deg)
    parts = f"cycle {cyc:.4f}"
    score = 0.0 if math.isnan(cyc) else cyc
    if iso is not None and math.isfinite(iso) and iso > 0:
        score += config.validation_isotropy_weight * abs(math.log(iso))
        parts += f", isotropy_fourier {iso:.3f}"
    return score, parts


def _fourier_isotropy(volume: np.ndarray, angle_deg: float) -> float | None:
    try:
        from resin.metrics import isotropy_fourier
    except ImportError:
        return None
    if angle_deg:
        return None  # the metric measures along z; an oblique axis would need resampling
    try:
        return float(isotropy_fourier(volume))
    except Exception:  # noqa: BLE001 - a validation aid must never stop training
        return None


def _sampler(readers: list[Any], config: TrainConfig) -> PatchSampler | SeriesSampler:
    """The patch sampler of one volume, or of a series' time points (each normalized by
    its own levels, from an equal share of the percentile sample)."""
    voxels = config.data.percentile_sample_voxels
    if len(readers) > 1:
        voxels = max(voxels // len(readers), 64 ** 3)
    samplers: list[PatchSampler] = []
    for reader in readers:
        source = str(reader.path)
        if len(readers) > 1:
            source += f" (time point {reader.time})"
        sample = volume_sample(reader, voxels, seed=config.seed, source=source)
        try:
            norm = compute_normalization(sample, config.normalization, source=source)
        except VolumeError:
            if len(readers) == 1:
                raise
            if reader is readers[-1] and not samplers:
                raise VolumeError(f"{reader.path}: every time point trained on is empty or "
                                  "constant; nothing to learn from") from None
            _log.warn(f"warning: {source} is constant (nothing to learn from): left out")
            continue
        level = foreground_level(sample, norm, config.data.foreground_percentile)
        del sample
        samplers.append(PatchSampler(reader, config.data, norm, level, config.angle_deg,
                                     seed=config.seed))
    if len(samplers) == 1:
        return samplers[0]
    return SeriesSampler(samplers, seed=config.seed)


def _start_degrader(trainer: Trainer, sampler: PatchSampler | SeriesSampler,
                    config: TrainConfig) -> float | None:
    """Start D as the axial blur measured from the raw volume (DegraderConfig.init); that
    blur's sigma, None when D does not start as a blur."""
    dc = config.degrader
    if dc.kind != "kernel" or (dc.init == "identity" and dc.init_sigma is None):
        return None
    from resin.metadata import axial_vector_from_angle
    from resin.train.psf import estimate_axial_blur

    if dc.init_sigma is not None:
        sigma, how = dc.init_sigma, "given"
    else:
        est = estimate_axial_blur(_blur_blocks(sampler, config), config.angle_deg)
        sigma = est.sigma
        how = f"measured from the raw volume's spectra over {est.frequencies} frequencies"
        if est.frequencies < 2:
            _log.warn("warning: the raw volume shows no axial blur above its noise, so D starts "
                     "as the identity; set degrader.init_sigma in --config if you know the PSF")
    # +-2 sigma (95% of a Gaussian's mass) must fit, or D cannot represent the blur
    if 2.0 * sigma > dc.kernel_size // 2:
        _log.warn(f"warning: a blur of sigma {sigma:.2f} is cut off by D's {dc.kernel_size}^3 "
                 f"kernel; set degrader.kernel_size to at least {2 * math.ceil(2 * sigma) + 1}")
    trainer.nets.D.reset_to_gaussian(sigma, axial_vector_from_angle(config.angle_deg))
    _log.log(f"D starts as an axial Gaussian blur of sigma {sigma:.2f} voxels ({how})")
    return sigma


def _start_noise(trainer: Trainer, sampler: PatchSampler | SeriesSampler, config: TrainConfig) -> NoiseModel:
    """Measure the raw volume's noise: for the log (:func:`_log_noise`) and, when
    DegraderConfig.noise asks, for D's outputs; the measured model."""
    from resin.train.noise import estimate_noise

    noise = estimate_noise(_raw_blocks(sampler, config), config.data.z_step)
    if config.degrader.noise == "none":
        return noise
    trainer.noise = noise
    if noise.silent:
        _log.log("D adds no noise: the raw volume measures as noise-free")
    else:
        _log.log(f"D adds back the noise its blur removes: {noise.describe()}")
    return noise


def _log_noise(noise: NoiseModel) -> None:
    """What the raw volume's noise is, and a warning when it is what limits the result."""
    snr = noise.bright_snr()
    if snr is None:
        _log.log("raw volume: no noise measured (noise-free, or too little data to measure)")
        return
    _log.log(f"raw volume: noise sigma {100 / snr:.1f} % of the range at its bright level "
             f"(signal-to-noise about {snr:.0f})")
    limited = noise.limited("the raw volume", "brightest structures")
    if limited is not None:
        _log.warn(f"warning: {limited}; a longer exposure or a denoiser first may help")


def _raw_blocks(sampler: PatchSampler | SeriesSampler, config: TrainConfig) -> list[np.ndarray]:
    """Normalized blocks of raw planes (no z interpolation) for measuring the noise, up to
    64 voxels a side (:func:`_brightest_blocks`)."""
    shape = tuple(int(s) for s in sampler.reader.shape)
    size = tuple(min(64, s) for s in shape)

    def read(start: tuple[int, ...]) -> np.ndarray:
        z, y, x = (slice(a, a + b) for a, b in zip(start, size, strict=True))
        return np.asarray(sampler.norm.apply(sampler.reader.read((z, y, x))), dtype=np.float32)

    return _brightest_blocks(shape, size, read, np.random.default_rng([config.seed, 5]))


def _blur_blocks(sampler: PatchSampler | SeriesSampler, config: TrainConfig) -> list[np.ndarray]:
    """Blocks spread over the volume for measuring the axial blur (:func:`_brightest_blocks`,
    so dense and sparse samples alike give the spectra enough structure). Up to 64 voxels
    a side; cubic for an oblique PSF."""
    shape = sampler.shape
    if config.angle_deg:
        side = min(64, *shape)
        size: tuple[int, ...] = (side, side, side)
    else:
        size = (min(64, shape[0]), min(64, shape[1]), min(64, shape[2]))
    return _brightest_blocks(shape, size,
                             lambda start: sampler.read_patch(start, size),  # type: ignore[arg-type]
                             np.random.default_rng([config.seed, 3]))


def _brightest_blocks(shape: tuple[int, ...], size: tuple[int, ...],
                      read: Callable[[tuple[int, ...]], np.ndarray], rng: np.random.Generator,
                      count: int = 8, candidates: int = 24) -> list[np.ndarray]:
    """The ``count`` brightest (by 99th percentile) of ``candidates`` blocks of ``size`` that
    ``read(start)`` returns at random starts within ``shape`` (ties: the earlier draw)."""
    scored: list[tuple[float, int, np.ndarray]] = []
    for _ in range(candidates):
        start = tuple(int(rng.integers(0, s - b + 1)) for s, b in zip(shape, size, strict=True))
        block = read(start)
        scored.append((float(np.percentile(block, 99)), len(scored), block))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [b for _, _, b in scored[:count]]


def _metadata(config: TrainConfig, norm: Normalization, reader: Any) -> dict[str, Any]:
    vs = getattr(reader, "voxel_size", None)
    if vs is not None and config.data.z_step > 1:
        vs = (vs[0] / config.data.z_step, vs[1], vs[2])
    return {
        "resin_version": __version__,
        "config": config.model_dump(mode="json"),
        "normalization": norm.record(),
        "scale": [float(config.data.z_step), 1.0, 1.0],
        "axial_angle_deg": float(config.angle_deg),
        "voxel_size": list(vs) if vs is not None else None,
    }


def _truncate_csv(path: Path, step: int) -> None:
    """Drop rows after ``step`` (a resumed run rewrites them identically)."""
    if not path.exists():
        return
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(keep if step > 0 else [])


def _append_csv(path: Path, step: int, losses: dict[str, float], seconds: float) -> None:
    keys = sorted(losses)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(["step", *keys, "seconds"])
        w.writerow([step, *(f"{losses[k]:.6g}" for k in keys), f"{seconds:.1f}"])
