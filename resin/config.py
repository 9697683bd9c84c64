"""Configuration models (pydantic, ``extra="forbid"``), saved beside every checkpoint/model."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: the smallest training patch side (``data.patch_size``)
MIN_PATCH_SIDE = 8


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GeneratorConfig(_Strict):
    """Architecture of the super-resolution generator F (a residual 3D U-Net)."""

    features: list[int] = Field(default_factory=lambda: [64, 128, 256], min_length=1, max_length=5)
    """Channels per U-Net level; len(features) - 1 poolings."""
    in_channels: int = Field(1, ge=1, le=4)
    """Image channels (1 for fluorescence volumes)."""
    residual: bool = True
    """Global residual: output = input + correction."""
    multiplicative: bool = False
    """With ``residual``: output = input x exp(correction), a gain per voxel (as
    Richardson-Lucy updates are multiplicative): F can move intensity along the blur but
    cannot create dark halos below the background or light in empty space."""
    output_floor: float | None = None
    """Lowest output value in normalized units (0 = the low percentile, i.e. background) at
    inference and in exported models; None: unbounded. Below the background is only noise."""

    @field_validator("features")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(f <= 0 for f in v):
            raise ValueError("every feature count must be positive")
        return v

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.features) - 1)


class NormalizationConfig(_Strict):
    """Global percentile normalization: x -> (x - p_low) / (p_high - p_low), once per volume."""

    low_percentile: float = Field(0.5, ge=0.0, lt=50.0)
    """Lower percentile of the whole volume mapped to 0."""
    high_percentile: float = Field(99.9, gt=50.0, le=100.0)
    """Upper percentile of the whole volume mapped to 1."""


class DegraderConfig(_Strict):
    """The degradation network D: high-resolution volume -> raw-looking volume."""

    kind: Literal["kernel", "linear", "cnn"] = "kernel"
    """'kernel': one learnable blur kernel (sum 1) applied by FFT; 'linear': a bias-free stack
    of convolutions (the same function class, over-parameterised); 'cnn': adds LeakyReLUs."""
    kernel_size: int = Field(21, ge=1, le=63)
    """Side of the 'kernel' blur (odd); cover the PSF's long axis (~4 sigma)."""
    kernel_sizes: list[int] = Field(default_factory=lambda: [9, 7, 5, 3], min_length=1,
                                    max_length=8)
    """Kernel size of each 3D convolution (odd); the blur's extent is sum(k - 1) + 1."""
    channels: int = Field(8, ge=1, le=128)
    """Hidden channels between the convolutions."""
    init: Literal["spectrum", "identity"] = "spectrum"
    """How D starts ('kernel' kind): 'spectrum' as an axial Gaussian whose sigma is measured
    from the raw volume's axial vs lateral power spectra (no ground truth); 'identity'."""
    init_sigma: float | None = Field(None, ge=0.0, le=30.0)
    """Extra axial sigma (voxels) to start D with, instead of measuring it."""
    noise: Literal["none", "measured"] = "none"
    """'none': D only blurs. 'measured' (experimental, docs/training.md): D's outputs in
    training get back the noise its blur averaged away, from a Poisson-Gaussian model fitted
    on the raw volume (``resin.train.noise``), so that degraded patches look like raw ones,
    noise and all."""

    @field_validator("kernel_sizes")
    @classmethod
    def _odd(cls, v: list[int]) -> list[int]:
        if any(k < 1 or k % 2 == 0 for k in v):
            raise ValueError("every kernel size must be a positive odd number")
        return v

    @field_validator("kernel_size")
    @classmethod
    def _odd_one(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("kernel_size must be odd")
        return v


class DiscriminatorConfig(_Strict):
    """PatchGAN discriminators (kernel 4, LeakyReLU 0.2): one 3D for cubes, 2D for MIPs."""

    features: int = Field(16, ge=1, le=512)
    """Channels of the first layer; doubled at each downsampling layer (capped at 8x)."""
    layers: int = Field(2, ge=1, le=5)
    """Stride-2 layers; the patch a score sees grows with it (use 3 for 64^3 patches)."""
    zero_last: bool = False
    """Start each discriminator's last layer at zero, so that it scores every input 0 and
    gives F no gradient until it has learned something from the data. With random last
    layers the random functions the discriminators start as push F one way or another at
    its highest learning rate, and on noisy data that decided whether a short run restored
    (docs/training.md, "The discriminators' start")."""

    @property
    def min_input(self) -> int:
        """Smallest side these PatchGANs accept (at least one output score): each layer is a
        kernel-4 convolution of stride 2 and padding 1, the last one of stride 1 scores."""
        n = 1
        while True:
            s = n
            for _ in range(self.layers):
                s = (s + 2 - 4) // 2 + 1
            if s - 2 >= 1:
                return n
            n += 1


class LossConfig(_Strict):
    """Weights of the RESIN objective: L_G = cycle1 + cycle2 + lambda * (GAN terms)."""

    cycle_l1: float = Field(10.0, ge=0.0)
    """Weight of the L1 part of each cycle loss."""
    cycle_ssim: float = Field(1.0, ge=0.0)
    """Weight of the (1 - SSIM3D) part of each cycle loss."""
    cycle1: float = Field(1.0, ge=0.0)
    """Weight of L_cycle1 (y vs D(F(y)))."""
    cycle2: float = Field(1.0, ge=0.0)
    """Weight of L_cycle2 (y vs D(R^-1(F(D(R(x))))))."""
    gan: float = Field(1.0, ge=0.0)
    """lambda: weight of all adversarial terms, for G and for the discriminators."""
    yy: float = Field(1.0, ge=0.0)
    """Weight of the rotational-equivariance terms L_G_yy / L_D_yy."""
    aniso_proj: float = Field(1.0, ge=0.0)
    """Weight of L_G_aniso_proj / L_D_aniso_proj (MIPs of x along the lateral axes)."""
    iso_proj: float = Field(1.0, ge=0.0)
    """Weight of L_G_iso_proj / L_D_iso_proj (MIP of x along the axial axis)."""
    self_imitation: float = Field(1.0, ge=0.0)
    """Weight of L_self: F must restore R(y) from D(R(y)) (raw patches turned by R, then
    degraded by D, both held fixed): the lateral detail of the raw data teaches F the axial
    inverse of D."""
    nonneg: float = Field(1.0, ge=0.0)
    """Weight of L_nonneg = mean(relu(min(y, 0) - F(y))) x 100: F may not make any voxel
    darker than the background (a deblurring that undershoots creates dark halos)."""
    ssim_window: int = Field(11, ge=3, le=21)
    """Gaussian SSIM window size (odd; shrunk to fit small patches)."""
    ssim_sigma: float = Field(1.5, gt=0.0)
    """Gaussian SSIM window sigma."""

    @field_validator("ssim_window")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("ssim_window must be odd")
        return v


class DataConfig(_Strict):
    """Patch sampling from the raw volume."""

    patch_size: tuple[int, int, int] = (64, 64, 64)
    """Training patch (Z, Y, X) in voxels of the (z-step resampled) volume; multiples of 4."""
    batch_size: int = Field(1, ge=1, le=64)
    """Patches per step."""
    foreground_percentile: float = Field(90.0, ge=0.0, le=100.0)
    """A patch counts as foreground if its 99th percentile reaches this global percentile."""
    foreground_tries: int = Field(20, ge=1, le=1000)
    """Random draws per patch before the brightest draw is taken instead."""
    augment: bool = True
    """Random flips and lateral transposes (only those that keep the PSF's axis)."""
    face_margin: float = Field(0.0, ge=0.0, le=0.5)
    """How far (share of the patch side) a patch may reach past a face of the volume, the
    outside filled as the runtime pads faces (each face plane repeated), so the network
    meets in training the faces it meets at inference. Every axis for an axial PSF; only y
    for an oblique one (repeated z or x faces streak across its tilt).
    Experimental, off by default until measured in every benchmark setting
    (docs/training.md); the discriminators' real patches stay inside the volume."""
    channel: int | None = Field(None, ge=0)
    """Channel of a multi-channel raw file to train on (0-based; required for one)."""
    time: Annotated[int, Field(ge=0)] | Literal["all"] | None = None
    """Time point of a time-series raw file to train on (0-based; required for one), or
    ``"all"``: every time point, each patch drawn from one at random and normalized by that
    time point's own levels, as ``resin-run --time all`` normalizes each."""
    z_step: int = Field(1, ge=1, le=16)
    """Axial sampling step K: raw z is interpolated by K to isotropic sampling first."""
    validation_patches: int = Field(4, ge=0, le=64)
    """Fixed patches (held out where the volume allows) for the validation score."""
    percentile_sample_voxels: int = Field(16_000_000, ge=10_000)  # resin.data.SAMPLE_VOXELS
    """At most this many voxels are read to compute the global normalization percentiles."""

    @field_validator("patch_size")
    @classmethod
    def _mult4(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(s < MIN_PATCH_SIDE or s % 4 for s in v):
            raise ValueError(f"every patch side must be a multiple of 4 and at least "
                             f"{MIN_PATCH_SIDE}")
        return v


class OptimConfig(_Strict):
    """Adam for all networks, with optional cosine decay."""

    lr_generator: float = Field(1e-4, gt=0.0, le=1.0)
    """Learning rate of F and D."""
    lr_discriminator: float = Field(1e-4, gt=0.0, le=1.0)
    """Learning rate of the discriminators."""
    lr_degrader_scale: float | None = Field(None, gt=0.0, le=1000.0)
    """D's learning rate as a multiple of F's; None: 0.1 when D starts at the blur measured
    from the data (it only fine-tunes it: Adam moves a kernel weight ~lr per step, and a
    faster D drifts to the identity, where both cycles hold without deblurring), else 10."""
    degrader_hold: float = Field(0.0, ge=0.0, le=1.0)
    """Share of the run during which D keeps its start (learning rate 0). While F is still
    near the identity it starts as, the cycle losses pull D towards the identity too
    (D(F(y)) = y then needs no blur), and F follows it into restoring less; holding D at
    the blur measured from the data lets F learn to invert that blur first."""
    degrader_hold_oblique: float | None = Field(None, ge=0.0, le=1.0)
    """``degrader_hold`` for an oblique PSF (``angle_deg`` not 0); None: the same. The
    quick preset holds an axial D all run but an oblique one half the run: held all run,
    the 45-degree volume came out less restored (docs/benchmarks.md)."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas."""
    cosine: bool = True
    """Cosine decay of the learning rates to lr * min_lr_ratio over the run."""
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0)
    """Final learning rate as a fraction of the initial one."""
    warmup_steps: int = Field(0, ge=0)
    """Steps with only the cycle losses (adversarial weight ramps in linearly after them)."""


class TrainConfig(_Strict):
    """Everything `resin train` needs; saved in the checkpoint and as JSON beside it."""

    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    """F's architecture."""
    degrader: DegraderConfig = Field(default_factory=DegraderConfig)
    """D's architecture."""
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)
    """The PatchGAN discriminators' architecture."""
    loss: LossConfig = Field(default_factory=LossConfig)
    """Loss weights."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Patch sampling."""
    optim: OptimConfig = Field(default_factory=OptimConfig)
    """Optimizers and schedule."""
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)
    """Global percentile normalization of the raw volume."""
    steps: int = Field(20_000, ge=1, le=10_000_000)
    """Training steps (one G update and one discriminator update each)."""
    seed: int = Field(0, ge=0)
    """Seed of every random choice (patches, augmentation, R's axis, initial weights)."""
    angle_deg: float = Field(0.0, ge=-90.0, le=90.0)
    """Angle of the PSF's long axis from z towards x (0: axial = z)."""
    checkpoint_every: int = Field(500, ge=1)
    """Steps between resumable checkpoints."""
    validate_every: int = Field(250, ge=1)
    """Steps between validation scores (the best-scoring generator is kept)."""
    preview_every: int = Field(500, ge=1)
    """Steps between PNG previews."""
    log_every: int = Field(50, ge=1)
    """Steps between loss lines in the log and rows in the CSV."""
    generator_init_scale: float = Field(1.0, ge=0.0, le=1.0)
    """Scale of F's last layer at initialisation (0: F starts as the exact identity)."""
    keep: Literal["best", "last", "sound"] = "best"
    """Which generator MODEL.pt gets: the best validation score, the last step, or
    ("sound") the last step unless the end-of-training report warns of a run another seed
    may fix (``Report.retry``) where an earlier validation's generator drew no such warning
    on the same block: then the last of those."""
    validation_isotropy_weight: float = Field(1.0, ge=0.0)
    """Weight of |log isotropy_fourier(F(y))| in the validation score (beside the cycle loss)."""
    amp: bool = True
    """Mixed precision (bfloat16 autocast) on CUDA; ignored on CPU."""
    threads: int | None = Field(None, ge=1, le=256)
    """CPU threads for torch (None: torch's default)."""
    time_limit_minutes: float | None = Field(None, gt=0.0)
    """Stop early (saving everything) once training has run this long; None: no limit."""

    @property
    def degrader_lr_scale(self) -> float:
        """``optim.lr_degrader_scale``, or its default for how D starts."""
        if self.optim.lr_degrader_scale is not None:
            return self.optim.lr_degrader_scale
        measured = self.degrader.kind == "kernel" and (
            self.degrader.init == "spectrum" or self.degrader.init_sigma is not None)
        return 0.1 if measured else 10.0

    @property
    def degrader_hold_share(self) -> float:
        """Share of the schedule D's learning rate stays 0: ``optim.degrader_hold``, or
        ``optim.degrader_hold_oblique`` when it is set and the PSF is oblique."""
        o = self.optim
        if self.angle_deg != 0.0 and o.degrader_hold_oblique is not None:
            return o.degrader_hold_oblique
        return o.degrader_hold

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        m = self.generator.size_multiple
        if any(s % m for s in self.data.patch_size):
            raise ValueError(f"every patch side must be a multiple of the generator's size "
                             f"multiple {m}")
        if self.angle_deg != 0.0 and len(set(self.data.patch_size)) != 1:
            raise ValueError("an oblique --angle needs cubic patches (all sides equal)")
        return self


# Small enough for a laptop CPU in ~10 minutes; already beats the raw input.
_QUICK: dict = {
    "generator": {"features": [8, 16, 32], "multiplicative": True},
    # discriminators that start at zero: with random ones the noisy tubes restored or not
    # by the seed (docs/training.md)
    "discriminator": {"features": 8, "layers": 2, "zero_last": True},
    # batch 2: CPU 3D convolutions take the much faster oneDNN path for N > 1
    "data": {"patch_size": (32, 32, 32), "batch_size": 2, "validation_patches": 2},
    # D held at its measured start all run for an axial PSF: released at half time it drifts
    # to a weaker blur, and a noisy volume of flat tubes came out with each tube split in
    # two along z (worse than its input); an oblique D is released at half time
    "optim": {"lr_generator": 1e-3, "lr_discriminator": 1e-3, "lr_degrader_scale": 0.01,
              "degrader_hold": 1.0, "degrader_hold_oblique": 0.5},
    # the cycle and self-imitation losses are L1 only: their targets are raw data, noise
    # and all, and with the SSIM part too, noisy volumes came out noisier (or not
    # restored) at the step counts a 9-minute cap allows; adversarial weight 0.1: at
    # 0.3 the small network sharpened past the truth and away from the data (RMSE up,
    # lateral detail lost; docs/training.md)
    "loss": {"gan": 0.1, "cycle_ssim": 0.0},
    "generator_init_scale": 0.0,
    "keep": "last",
    # more than fit in the cap on 2 cores: the run fits its schedule to the cap
    "steps": 2000,
    "time_limit_minutes": 9.0,
    "checkpoint_every": 200,
    "validate_every": 200,
    "preview_every": 200,
    "log_every": 50,
}

PRESETS: dict[str, dict] = {
    "quick": _QUICK,
    # The quick recipe trained four times longer: the longer CPU run (22-30 minutes on
    # 2 cores). Same network, patches and losses as quick, so the two differ only in steps.
    "long": {**_QUICK, "steps": 8000, "time_limit_minutes": 30.0, "checkpoint_every": 500,
             "validate_every": 1000, "preview_every": 1000, "log_every": 100},
    # The paper-size configuration, for a GPU.
    "default": {
        "generator": {"features": [64, 128, 256], "multiplicative": True},
        "discriminator": {"features": 32, "layers": 3},
        "data": {"patch_size": (64, 64, 64), "batch_size": 2},
        "optim": {"lr_generator": 1e-4, "lr_discriminator": 1e-4, "betas": (0.9, 0.99),
                  "cosine": True, "degrader_hold": 0.5},
        "loss": {"gan": 0.3},
        "generator_init_scale": 0.0,
        "keep": "last",
        "steps": 20_000,
    },
}


def preset_config(name: str, overrides: dict | None = None) -> TrainConfig:
    """A preset's TrainConfig, with ``overrides`` (nested dicts) merged on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    merged = _merge(PRESETS[name], overrides or {})
    return TrainConfig.model_validate(merged)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def patch_grid(shape: tuple[int, ...], z_step: int) -> tuple[int, int, int]:
    """The (Z, Y, X) grid patches are drawn from: a raw ``shape`` with z resampled by
    ``z_step`` (``(Z - 1) z_step + 1`` planes)."""
    z, y, x = (int(s) for s in shape)
    return ((z - 1) * z_step + 1, y, x)


def fit_patch(config: TrainConfig, grid: tuple[int, int, int]) -> TrainConfig:
    """``config`` with its training patch fitted to a volume of ``grid`` (its
    :func:`patch_grid`) that is not larger than the patch along some axis.

    Every side at least as long as the volume's becomes the largest multiple of the
    generator's size multiple (and of 4) below the volume's side, so that patches still move
    along that axis: patches spanning a thin stack's whole depth all share its first and last
    plane, and on three 20-24 plane simulations they restored less faithfully (least-squares
    RMSE up, the output sharpened past the truth's isotropy) than patches a few planes
    shorter; a side that would then be too short for the discriminators takes the volume's
    whole side instead where that is long enough (a 12-plane stack, PSF along z). The patch
    stays a cube when it was one: a flat patch's MIPs are maxima over fewer planes along z
    than along x and y, which the MIP discriminators tell apart by that alone. ``config``
    itself when every side is shorter than the volume's.
    """
    p = config.data.patch_size
    if all(q < n for q, n in zip(p, grid, strict=True)):
        return config
    m = math.lcm(4, config.generator.size_multiple)
    need = config.discriminator.min_input
    sides = []
    for q, n in zip(p, grid, strict=True):
        side = q if q < n else (n - 1) // m * m
        if side < need <= n // m * m and config.angle_deg == 0.0:
            side = n // m * m  # a stack as deep as the smallest patch: every patch spans it
        sides.append(side)
    if len(set(p)) == 1 or config.angle_deg != 0.0:
        sides = [min(sides)] * 3
    data = config.data.model_copy(update={"patch_size": tuple(sides)})
    return config.model_copy(update={"data": data})
