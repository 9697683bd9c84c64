"""Baseline: Self-Net (Ning et al., Light Sci. Appl. 2023) on a few minutes of 2 CPU cores.

Self-Net restores the axial resolution of one anisotropic volume from that volume alone.
Lateral (x-y) slices are sharp; axial (x-z, y-z) slices are blurred along z.

1. Degradation: learn a map that makes a lateral slice look like an axial slice, treating
   one lateral axis as "z". Self-Net trains a CycleGAN between the two slice domains; this
   baseline fits a symmetric 1-D Gaussian blur along that axis (plus the z sampling and
   the noise the blur removed) so that the degraded lateral slices have the axial slices'
   1-D power spectrum. See docs/selfnet.md for why and what that changes.
2. Deblurring: a small 2-D U-Net learns degraded lateral crop -> lateral crop
   (Charbonnier + 0.1 (1 - SSIM), as Self-Net), then restores every x-z and every y-z
   slice; the two volumes are averaged.

Nothing here sees the ground truth or the PSF. The volume is normalized with its global
0.5 / 99.9 percentiles (resin's rule) and mapped back at the end. With ``z_step = K`` the
raw z axis is first linearly interpolated to ``(Z - 1) K + 1`` planes, as ``resin train``
does. An oblique PSF (``angle_deg != 0``) is not supported.

    python bench/selfnet.py raw.tif -o selfnet.tif              # ~4 minutes
    python bench/selfnet.py raw.tif -o selfnet.tif --minutes 1 --z-step 2
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from resin.data import bright_draw
from resin.errors import MissingDependencyError

# On a shared CPU, OpenMP threads that spin while waiting make every step several times
# slower as soon as another process is busy; this only acts if torch is not imported yet.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError("torch", "train", "the Self-Net baseline") from exc

CROP = 64  # training crop side, as Self-Net
BATCH = 8
LR = 1e-3
LR_FINAL = 1e-4
SSIM_WEIGHT = 0.1  # Self-Net's weight of (1 - SSIM) next to the Charbonnier loss
FEATURES = (16, 32, 64)  # U-Net widths per level: two 2x poolings
SPECTRUM_SLICES = 8  # lateral slices per orientation used to fit the degradation
SIGMA_GRID = np.arange(0.0, 16.01, 0.5)
FOREGROUND_TRIES = 10
NOISE_BINS = 24
INFER_BATCH = 8


# --------------------------------------------------------------------------- volume prep


def _interpolate_z(vol: np.ndarray, k: int) -> np.ndarray:
    """Linear interpolation along z by ``k``: (Z - 1) k + 1 planes, raw planes kept."""
    if k == 1:
        return vol
    from resin.data import lerp_planes

    return lerp_planes(vol, np.arange((vol.shape[0] - 1) * k + 1) / k)


@dataclass(frozen=True)
class NoiseModel:
    """Noise variance ``gain * mean + floor`` in normalized units, measured along raw z."""

    gain: float
    floor: float

    def variance(self, mean: np.ndarray) -> np.ndarray:
        return np.maximum(self.gain * mean + self.floor, 0.0)


def estimate_noise(vol: np.ndarray) -> NoiseModel:
    """Fit a Poisson-Gaussian noise model from second differences along raw z.

    The axial blur is wide compared with the z sampling, so the second difference along z
    is nearly all noise; its robust variance, binned by the local mean, gives the model.
    """
    if vol.shape[0] < 3:
        return NoiseModel(0.0, 0.0)
    d = (2 * vol[1:-1] - vol[:-2] - vol[2:]) / math.sqrt(6.0)
    m = (vol[1:-1] + vol[:-2] + vol[2:]) / 3.0
    d, m = d.ravel(), m.ravel()
    edges = np.unique(np.quantile(m, np.linspace(0, 1, NOISE_BINS + 1)))
    which = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, len(edges) - 2)
    xs, ys, ws = [], [], []
    for b in range(len(edges) - 1):
        sel = d[which == b]
        if sel.size < 50:
            continue
        mad = np.median(np.abs(sel - np.median(sel)))
        xs.append(float(np.median(m[which == b])))
        ys.append(float((1.4826 * mad) ** 2))
        ws.append(float(sel.size))
    if len(xs) < 2:
        return NoiseModel(0.0, float(np.var(d)))
    gain, floor = np.polyfit(xs, ys, 1, w=np.sqrt(ws))
    gain = max(float(gain), 0.0)
    floor = float(np.median(np.asarray(ys) - gain * np.asarray(xs)))
    return NoiseModel(gain, floor)


# --------------------------------------------------------------------------- stage 1


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Sampled 1-D Gaussian (sum 1, radius int(4 sigma + 0.5)); a delta for sigma 0."""
    if sigma <= 0:
        return np.ones(1, dtype=np.float32)
    r = int(4.0 * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


@dataclass(frozen=True)
class Degradation:
    """Lateral -> axial look-alike along axis 0 of a 2-D image: blur, z sampling, noise."""

    sigma: float
    z_step: int
    noise: NoiseModel

    @property
    def kernel(self) -> np.ndarray:
        return gaussian_kernel(self.sigma)

    @property
    def radius(self) -> int:
        return len(self.kernel) // 2

    def extra_variance(self, blurred: np.ndarray) -> np.ndarray:
        """Noise to add back: the blur averaged away all but sum(k^2) of it."""
        return self.noise.variance(blurred) * max(0.0, 1.0 - float(np.sum(self.kernel ** 2)))

    def apply(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade a stack (N, H, W) along H; the output is H - 2 radius rows high."""
        from scipy import ndimage

        r = self.radius
        b = ndimage.convolve1d(images, self.kernel, axis=1, mode="reflect")
        b = b[:, r:b.shape[1] - r] if r else b
        return self._sample_and_noise(b, rng)

    def _sample_and_noise(self, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        k = self.z_step
        h = b.shape[1]
        phase = int(rng.integers(0, k)) if k > 1 else 0
        rows = np.arange(phase, h, k)
        kept = b[:, rows]
        kept = kept + rng.standard_normal(kept.shape).astype(np.float32) * np.sqrt(
            self.extra_variance(kept)).astype(np.float32)
        if k == 1:
            return kept.astype(np.float32)
        # linear interpolation back to every row (edges held), as the raw z axis is
        t = (np.arange(h) - phase) / k
        i0 = np.clip(np.floor(t).astype(int), 0, len(rows) - 1)
        i1 = np.clip(i0 + 1, 0, len(rows) - 1)
        w = np.clip(t - np.floor(t), 0, 1).astype(np.float32)
        w = np.where(t < 0, 0.0, w).astype(np.float32)[None, :, None]
        return (kept[:, i0] * (1 - w) + kept[:, i1] * w).astype(np.float32)


def _row_spectrum(images: np.ndarray, length: int) -> np.ndarray:
    """Mean power spectrum along axis 1 of (N, H, W), Hann-windowed segments of ``length``."""
    h = images.shape[1]
    starts = sorted({round(s) for s in np.linspace(0, h - length, max(1, -(-h // length)))})
    win = np.hanning(length + 2)[1:-1].astype(np.float32)[None, :, None]
    acc = np.zeros(length // 2 + 1)
    for s in starts:
        seg = images[:, s:s + length]
        seg = (seg - seg.mean(axis=1, keepdims=True)) * win
        acc += (np.abs(np.fft.rfft(seg, axis=1)) ** 2).mean(axis=(0, 2))
    return acc / len(starts)


def fit_degradation(vol: np.ndarray, iso: np.ndarray, z_step: int, noise: NoiseModel,
                    seed: int) -> tuple[Degradation, float]:
    """Pick the blur whose degraded lateral slices best match the axial power spectrum.

    ``vol``: normalized raw volume; ``iso``: the same interpolated to isotropic sampling.
    The mismatch is the mean squared log-ratio of the two spectra over all non-zero
    frequencies; the noise model makes the high frequencies comparable. Same noise draws
    for every candidate, so the mismatch is a smooth function of sigma.
    """
    length = min(iso.shape[0], CROP)
    target = _row_spectrum(iso.transpose(1, 0, 2), length)  # along z
    zs = np.unique(np.linspace(0, vol.shape[0] - 1, SPECTRUM_SLICES).round().astype(int))
    lateral = [vol[zs], np.ascontiguousarray(vol[zs].transpose(0, 2, 1))]

    def mismatch(sigma: float) -> float:
        deg = Degradation(float(sigma), z_step, noise)
        if min(im.shape[1] for im in lateral) - 2 * deg.radius < length:
            return math.inf
        rng = np.random.default_rng(seed)
        spec = np.mean([_row_spectrum(deg.apply(im, rng), length) for im in lateral], axis=0)
        return float(np.mean((np.log(spec[1:] + 1e-12) - np.log(target[1:] + 1e-12)) ** 2))

    coarse = [(mismatch(s), float(s)) for s in SIGMA_GRID]
    best = min(coarse)[1]
    fine = [(mismatch(s), float(s)) for s in np.arange(max(0.0, best - 0.4), best + 0.41, 0.1)]
    err, sigma = min(coarse + fine)
    return Degradation(round(sigma, 2), z_step, noise), err


# --------------------------------------------------------------------------- stage 2


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.LeakyReLU(0.2, True))


class UNet2d(nn.Module):
    """Self-Net's deblurring network, shrunk: a 2-D U-Net with a global residual."""

    size_multiple = 2 ** (len(FEATURES) - 1)  # input sides must be multiples of this

    def __init__(self) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        c = 1
        for f in FEATURES:
            self.down.append(_block(c, f))
            c = f
        self.up_convs = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for hi, lo in zip(reversed(FEATURES[1:]), reversed(FEATURES[:-1]), strict=True):
            self.up_convs.append(nn.Conv2d(hi, lo, 3, padding=1))
            self.up_blocks.append(_block(2 * lo, lo))
        self.head = nn.Conv2d(FEATURES[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, h = [], x
        for i, b in enumerate(self.down):
            h = b(h)
            if i < len(self.down) - 1:
                skips.append(h)
                h = nn.functional.max_pool2d(h, 2)
        for up, b in zip(self.up_convs, self.up_blocks, strict=True):
            skip = skips.pop()
            h = up(nn.functional.interpolate(h, size=skip.shape[2:], mode="bilinear",
                                             align_corners=False))
            h = b(torch.cat([h, skip], dim=1))
        return x + self.head(h)


def _ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean 2-D SSIM, 11-tap Gaussian window (sigma 1.5), data range 1, valid region."""
    x = torch.arange(11, dtype=a.dtype) - 5
    g = torch.exp(-0.5 * (x / 1.5) ** 2)
    g = g / g.sum()
    w = (g[:, None] * g[None, :])[None, None]

    def f(t: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(t, w)

    ua, ub = f(a), f(b)
    va, vb, cov = f(a * a) - ua * ua, f(b * b) - ub * ub, f(a * b) - ua * ub
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * ua * ub + c1) * (2 * cov + c2)) / ((ua * ua + ub * ub + c1) * (va + vb + c2))
    return s.mean()


class _PairSampler:
    """Random foreground lateral crops, flipped / transposed, and their degraded versions."""

    def __init__(self, vol: np.ndarray, deg: Degradation, seed: int) -> None:
        self.vol = vol
        self.deg = deg
        self.rng = np.random.default_rng(seed)
        self.level = float(np.percentile(vol, 99.0))
        r = deg.radius
        # lateral slices too small for a crop plus the blur's margin are reflect-padded
        need = CROP + 2 * r
        pad_y = max(0, need - vol.shape[1])
        pad_x = max(0, need - vol.shape[2])
        if pad_y or pad_x:
            self.vol = np.pad(vol, ((0, 0), (pad_y // 2 + pad_y % 2, pad_y // 2),
                                    (pad_x // 2 + pad_x % 2, pad_x // 2)), mode="reflect")

    def _crop(self) -> np.ndarray:
        r = self.deg.radius
        nz = self.vol.shape[0]

        def draw() -> np.ndarray:
            z = int(self.rng.integers(0, nz))
            img = self.vol[z] if self.rng.integers(0, 2) else self.vol[z].T
            h, w = img.shape
            y0 = int(self.rng.integers(0, h - CROP - 2 * r + 1))
            x0 = int(self.rng.integers(0, w - CROP + 1))
            return img[y0:y0 + CROP + 2 * r, x0:x0 + CROP]

        # the brightest of the central CROP rows decides (the margins are blur context)
        best = bright_draw(draw, lambda crop: crop[r:r + CROP].max(), self.level,
                           FOREGROUND_TRIES)
        if self.rng.integers(0, 2):
            best = best[::-1]
        if self.rng.integers(0, 2):
            best = best[:, ::-1]
        return best

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """(degraded, target), each (BATCH, 1, CROP, CROP) float32."""
        r = self.deg.radius
        wide = np.stack([self._crop() for _ in range(BATCH)]).astype(np.float32)
        degraded = self.deg.apply(wide, self.rng)
        target = wide[:, r:r + CROP]
        return degraded[:, None], np.ascontiguousarray(target)[:, None]


def _restore_slices(net: UNet2d, slices: np.ndarray) -> np.ndarray:
    """Run the net on (N, H, W) axial slices (H = z), reflect-padded to a multiple of 4."""
    m = net.size_multiple
    n, h, w = slices.shape
    ph, pw = (-h) % m, (-w) % m
    out = np.empty_like(slices)
    with torch.inference_mode():
        for i in range(0, n, INFER_BATCH):
            x = torch.from_numpy(np.ascontiguousarray(slices[i:i + INFER_BATCH]))[:, None]
            if ph or pw:
                mode = "reflect" if ph < h and pw < w else "replicate"
                x = nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
            out[i:i + INFER_BATCH] = net(x)[:, 0, :h, :w].numpy()
    return out


def _restore_volume(net: UNet2d, iso: np.ndarray) -> np.ndarray:
    """Self-Net's fusion: mean of the x-z and y-z restorations."""
    xz = _restore_slices(net, np.ascontiguousarray(iso.transpose(1, 0, 2)))
    out = xz.transpose(1, 0, 2).copy()
    del xz
    yz = _restore_slices(net, np.ascontiguousarray(iso.transpose(2, 0, 1)))
    out += yz.transpose(1, 2, 0)
    out *= 0.5
    return out


# --------------------------------------------------------------------------- the baseline


def selfnet_enhance(raw: np.ndarray, *, z_step: int = 1, angle_deg: float = 0.0, seed: int = 0,
                    minutes: float = 4.0, log: Callable[[str], object] = print,
                    steps: int | None = None, threads: int = 2) -> np.ndarray:
    """Self-Net baseline on one ZYX volume; float32 of shape ((Z - 1) z_step + 1, Y, X).

    ``minutes`` is the wall-clock budget for everything (the training gets what the fit
    and the predicted inference time leave); ``steps`` fixes the number of training steps
    instead, which makes the result reproducible for a ``seed`` and ``threads``. Values
    are in the raw's units (the global 0.5 / 99.9 percentile normalization undone).
    """
    from resin.config import NormalizationConfig
    from resin.data import compute_normalization
    from resin.errors import UsageError, VolumeError

    t_start = time.perf_counter()
    if float(angle_deg) % 180.0 != 0.0:
        raise NotImplementedError("the Self-Net baseline slices along z: it supports only "
                                  "angle_deg = 0 (PSF long axis along z)")
    if int(z_step) != z_step or z_step < 1:
        raise UsageError(f"z_step must be a positive integer, got {z_step}")
    if int(threads) < 1:
        raise UsageError(f"threads must be at least 1, got {threads}")
    if not minutes > 0 and steps is None:
        raise UsageError(f"minutes must be positive, got {minutes}")
    raw = np.asarray(raw)
    if raw.ndim != 3 or raw.shape[0] < 2:
        raise VolumeError(f"Self-Net needs a ZYX volume with at least 2 planes, got {raw.shape}")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise VolumeError("the volume contains NaN or infinite values")
    z_step = int(z_step)
    budget = float(minutes) * 60.0

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    try:
        norm = compute_normalization(raw.ravel(), NormalizationConfig())
        vol = norm.apply(raw)
        iso = _interpolate_z(vol, z_step)
        if min(iso.shape[0], raw.shape[1], raw.shape[2]) < 8:
            raise VolumeError(f"volume {raw.shape} (z-step {z_step}: {iso.shape}) is too small; "
                              "Self-Net needs at least 8 samples along each axis")

        # stage 1: the degradation, from the data alone
        noise = estimate_noise(vol)
        deg, err = fit_degradation(vol, iso, z_step, noise, seed)
        log(f"selfnet: noise var {noise.gain:.3g} * mean + {noise.floor:.3g}; degradation: "
            f"1-D Gaussian sigma {deg.sigma:g} px along the to-be-axial axis, z-step {z_step} "
            f"(spectrum mismatch {err:.3g}) [{time.perf_counter() - t_start:.1f} s]")

        # stage 2: deblurring network on (degraded lateral -> lateral) pairs
        net = UNet2d()
        sampler = _PairSampler(vol, deg, seed)
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        # reserve the predicted inference time, from a batch of x-z slices; y-z slices
        # cost Y / X as much each and there are X of them
        probe = np.ascontiguousarray(iso[:, :INFER_BATCH, :].transpose(1, 0, 2))
        timings = []
        for _ in range(3):  # the first call sets up the convolutions; the min skips busy spells
            t0 = time.perf_counter()
            _restore_slices(net, probe)
            timings.append(time.perf_counter() - t0)
        per_slice = min(timings) / len(probe)
        reserve = 1.2 * per_slice * 2 * raw.shape[1] + 1.0
        deadline = t_start + budget - reserve
        train_start = time.perf_counter()
        train_time = max(deadline - train_start, 1e-3)
        plan = f"{steps} steps" if steps else f"{train_time:.0f} s"
        log(f"selfnet: training for {plan}, {reserve:.0f} s kept for inference")

        net.train()
        step, next_report = 0, 0.1
        recent: list[float] = []
        while True:
            progress = step / steps if steps else (time.perf_counter() - train_start) / train_time
            if progress >= 1.0 and step > 0:
                break
            for g in opt.param_groups:
                g["lr"] = LR * (LR_FINAL / LR) ** min(progress, 1.0)
            src, tgt = sampler.batch()
            x, y = torch.from_numpy(src), torch.from_numpy(tgt)
            out = net(x)
            charb = torch.sqrt((out - y) ** 2 + 1e-6).mean()
            loss = charb + SSIM_WEIGHT * (1 - _ssim(out, y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            recent = [*recent[-19:], loss.item()]
            if progress >= next_report:
                log(f"selfnet: step {step}, loss {np.mean(recent):.4f} (last 20), "
                    f"{time.perf_counter() - t_start:.0f} s")
                while next_report <= progress:
                    next_report += 0.1
        log(f"selfnet: {step} steps, loss {np.mean(recent):.4f} (last 20) "
            f"[{time.perf_counter() - t_start:.1f} s]")

        net.eval()
        out = _restore_volume(net, iso)
        log(f"selfnet: restored {out.shape[1]} x-z and {out.shape[2]} y-z slices "
            f"[{time.perf_counter() - t_start:.1f} s]")
        # below the background (normalized 0) is only ringing and noise: Self-Net clips its
        # output to the normalization range, RESIN to the same floor (output_floor 0)
        np.maximum(out, 0.0, out=out)
        return norm.invert(out).astype(np.float32)
    finally:
        torch.set_num_threads(previous_threads)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("raw", help="anisotropic ZYX volume (.tif / .zarr)")
    ap.add_argument("-o", "--output", required=True, help="restored volume (.tif / .zarr)")
    ap.add_argument("--minutes", type=float, default=4.0, help="wall-clock budget")
    ap.add_argument("--steps", type=int, help="fixed training steps instead of the budget")
    ap.add_argument("--z-step", type=int, default=1, help="raw z spacing / lateral spacing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)

    from pathlib import Path

    from resin.errors import OutputExistsError, ResinError
    from resin.io import open_volume, volume_format, write_volume

    try:
        volume_format(args.output)
        if Path(args.output).exists() and not args.overwrite:
            raise OutputExistsError(f"{args.output} exists; pass --overwrite to replace it")
        with open_volume(args.raw) as reader:
            raw = reader.read()
            vs = reader.voxel_size
        t0 = time.perf_counter()
        out = selfnet_enhance(raw, z_step=args.z_step, seed=args.seed, minutes=args.minutes,
                              steps=args.steps, threads=args.threads,
                              log=lambda s: print(s, file=sys.stderr))
        seconds = time.perf_counter() - t0
        if vs is not None:
            vs = (vs[0] / args.z_step, vs[1], vs[2])
        write_volume(args.output, out, voxel_size=vs, overwrite=args.overwrite)
    except ResinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {out.shape} float32 to {args.output} in {seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
