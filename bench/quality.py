"""RESIN restoration quality on simulated volumes: four settings, the same rows in each.

Each setting simulates its own volume (``resin.simulate``, seed 0, default shape
64x128x128) and scores every method against that volume's truth:

* ``paper``: tubes, PSF sigma 1 lateral / 5 axial, blurred only (``noise=False``: no
  noise, background or offset), the RESIN paper's setting;
* ``noisy``: the same tubes and PSF with shot noise, read noise, background and offset;
* ``oblique45``: as ``noisy`` with the PSF's long axis tilted 45 degrees from z towards x;
* ``nuclei``: dense nuclei, sigma 1.2 / 3.0, noise, and raw z sampled every 2nd plane
  (``z_step`` 2). Methods that restore the z sampling give ``(Zraw - 1) 2 + 1`` planes on
  the truth's grid, scored against that many first planes of the truth; the raw row and
  Richardson-Lucy's input are the raw linearly interpolated in z the same way (the
  interpolation ``resin train`` and the Self-Net baseline use).

Rows, in every setting: the raw input; the truth blurred by a Gaussian of the lateral
sigma along all three axes (the best a restoration can sensibly do); Richardson-Lucy with
the true PSF on the offset-subtracted raw, at its best iteration count by RMSE against the
truth (two advantages no other row has); the Self-Net baseline (``bench/selfnet.py``, a
few minutes; it supports a PSF along z only, so ``oblique45`` shows ``n/a``); RESIN
trained here on that setting's raw volume alone (the ``quick`` preset, unless ``--model``
gives one) and run by the runtime (``Enhancer``, PyTorch backend, tiled with the measured
halo; the raw is passed as float32 so the output is not rounded or clipped to uint16);
rows of other trained models (``--extra``); the truth itself. Every volume is scored as
the method returns it: no clipping or floor is applied here (the Self-Net baseline
floors its own output at its normalisation's background level). A checkpoint trained with
``z_step`` K records scale K and the runtime runs it behind the z interpolation it was
trained behind (``resin.models.ZInterpolated``), keeping the planes on training's grid.

Columns: ``resin.metrics.evaluate`` (rmse, ssim, psnr, isotropy_ratio, isotropy_fourier;
the isotropy measures look along z, also for ``oblique45``, whose PSF axis they cannot
follow), ``rmse_lsq`` (the same 255.998-scaled RMSE after the least-squares intensity
match ``a * pred + b`` to the truth, on the truth's min-max range: what is left once
offset and gain are forgiven) and ``mip_ssim`` (2-D SSIM, Gaussian window sigma 1.5, of
the min-max normalised lateral maximum-intensity projections: is lateral detail kept).
The named reference is the raw input (ratios = method / raw); a summary says per setting
whether RESIN quick beats the raw input and Self-Net on rmse, ssim and isotropy
(isotropy_ratio closer to the truth's).

For ``noisy`` a last table explains the SSIM column: SSIM is averaged over every voxel and
most of these volumes are background far from any tube, where the truth is constant. There
the structure term is ~1 and the luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1),
C1 = 1e-4, falls to 0.9 as soon as a method's background sits 0.003 of its range above its
own minimum, which the min-max normalisation puts at the darkest noise dip. The table
splits SSIM by region: tubes, background within 8 voxels of a tube, far background.

    python bench/quality.py --json bench/results/quality.json     # trains everything here
    python bench/quality.py --settings paper noisy --model noisy=models/noisy.pt \
        --extra "noisy=RESIN trained longer=models/longer.pt" --workdir /tmp/quality
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# On a shared CPU, OpenMP threads that spin while waiting make every step several times
# slower as soon as another process is busy; this only acts before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHAPE = (64, 128, 128)
SEED = 0
SELFNET_MINUTES = 4.0
#: the printed columns (the JSON has every key of ``evaluate`` as well)
COLUMNS = ("rmse", "rmse_lsq", "ssim", "psnr", "isotropy_ratio", "isotropy_fourier",
           "mip_ssim")
RAW, BLURRED, RL, SELFNET, QUICK, LONG, TRUTH = (
    "raw input", "truth blurred isotropically (lateral sigma)", "Richardson-Lucy, true PSF",
    "Self-Net (baseline)", "RESIN quick", "RESIN long", "truth (for reference)")


@dataclass(frozen=True)
class Setting:
    """One simulated acquisition; ``simulate`` keyword arguments besides shape and seed."""

    name: str
    title: str
    kind: str = "tubes"
    sigma: tuple[float, float] | None = (1.0, 5.0)
    angle_deg: float = 0.0
    noise: bool = True

    def simulate(self, shape: tuple[int, int, int]):
        from resin.simulate import simulate

        return simulate(shape, sigma=self.sigma, angle_deg=self.angle_deg, seed=SEED,
                        kind=self.kind, noise=self.noise)


SETTINGS = {s.name: s for s in (
    Setting("paper", "tubes, sigma 1/5, blurred only (the RESIN paper's setting)",
            noise=False),
    Setting("noisy", "tubes, sigma 1/5, noise"),
    Setting("oblique45", "tubes, sigma 1/5 tilted 45 deg (z towards x), noise; isotropy "
            "measured along z, not along the PSF axis", angle_deg=45.0),
    Setting("nuclei", "nuclei, sigma 1.2/3, raw z step 2, noise; scored on the first "
            "(Zraw - 1) 2 + 1 truth planes", kind="nuclei", sigma=None),
)}


# --------------------------------------------------------------------------- scoring


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return (a - a.min()) / (a.max() - a.min())


def rmse_lsq(pred: np.ndarray, truth: np.ndarray) -> float:
    """255.998 x RMSE of ``a * pred + b`` (least-squares fit to the truth) and the truth,
    on the truth's min-max range."""
    from resin.metrics import RMSE_SCALE

    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=np.float64).ravel()
    pc = p - p.mean()
    var = float(pc @ pc)
    a = float(pc @ (t - t.mean())) / var if var > 0 else 0.0
    resid = a * pc + t.mean() - t
    return RMSE_SCALE * math.sqrt(float(resid @ resid) / t.size) / float(t.max() - t.min())


def mip_ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    """2-D SSIM of the lateral MIPs (max over z), each min-max normalised; the window and
    constants of ``resin.metrics.ssim``."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_unit(truth.max(axis=0)), _unit(pred.max(axis=0)),
                                       gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0))


def score(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from resin.metrics import evaluate

    return {**evaluate(pred, truth), "rmse_lsq": rmse_lsq(pred, truth),
            "mip_ssim": mip_ssim(pred, truth)}


def ssim_regions(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean SSIM (the metric's window and constants, min-max volumes) over the tubes, the
    background within 8 voxels of a tube, and the far background; interior voxels only."""
    from scipy import ndimage as ndi
    from skimage.metrics import structural_similarity

    t = _unit(truth)
    _, smap = structural_similarity(t, _unit(pred), gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0, full=True)
    tube = t > 0.1
    near = ndi.binary_dilation(tube, structure=np.ones((3, 3, 3), bool), iterations=8) & ~tube
    far = ~(tube | near)
    inner = np.zeros_like(tube)
    inner[5:-5, 5:-5, 5:-5] = True
    return {name: float(smap[mask & inner].mean()) if (mask & inner).any() else math.nan
            for name, mask in (("tube", tube), ("near", near), ("far", far))}


# --------------------------------------------------------------------------- methods


def _selfnet() -> ModuleType:
    """``bench/selfnet.py``, the file beside this one (imports torch)."""
    spec = importlib.util.spec_from_file_location("selfnet", Path(__file__).with_name("selfnet.py"))
    assert spec is not None and spec.loader is not None
    module = sys.modules.get("selfnet")
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["selfnet"] = module
        spec.loader.exec_module(module)
    return module


def on_grid(raw: np.ndarray, z_step: int) -> np.ndarray:
    """Raw linearly interpolated in z onto the truth's grid: (Z - 1) z_step + 1 planes."""
    return _selfnet()._interpolate_z(raw, z_step)


def richardson_lucy_best(sim, iterations=(5, 10, 20, 40)) -> tuple[np.ndarray, int]:
    """RL with the true PSF on the offset-subtracted raw (on the truth's grid); the
    iteration count with the lowest RMSE against the truth."""
    from skimage.restoration import richardson_lucy

    from resin.metrics import rmse

    grid = on_grid(sim.raw, sim.z_step).astype(np.float32)
    counts = np.clip(grid - np.float32(sim.offset), 0.0, None)
    truth = sim.truth[:grid.shape[0]]
    best: tuple[float, np.ndarray, int] | None = None
    for n in iterations:
        out = richardson_lucy(counts, sim.psf(), num_iter=n, clip=False).astype(np.float32)
        err = rmse(out, truth)
        if best is None or err < best[0]:
            best = (err, out, n)
    assert best is not None
    return best[1], best[2]


def blurred_truth(sim) -> np.ndarray:
    """The truth blurred by the lateral sigma along all three axes (edges reflected)."""
    from scipy import ndimage as ndi

    lateral = float(sim.psf_sigma_zyx[1])
    return ndi.gaussian_filter(sim.truth.astype(np.float32), lateral, truncate=4.0)


def _train_info(model: Path) -> str:
    """Steps and wall time of a training run, from its checkpoint and loss CSV."""
    from resin.checkpoint import load_checkpoint

    ckpt = load_checkpoint(model)
    losses = model.with_suffix("").with_name(model.stem + ".losses.csv")
    seconds = ""
    if losses.is_file():
        with losses.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            seconds = f", {float(rows[-1]['seconds']) / 60:.1f} min"
    feats = ckpt["config"]["generator"]["features"]
    return f"step {ckpt['step']}{seconds}, F {feats}"


def train_preset(preset: str, raw_path: Path, out: Path, angle: float, z_step: int,
                 grid: tuple[int, int, int], steps: int | None,
                 face_margin: float = 0.0, d_noise: bool = False,
                 patch: tuple[int, int, int] | None = None, seed: int = 0) -> float:
    """Train ``preset`` (quick or long) on ``raw_path``; the wall time in seconds.
    ``patch``: this training patch instead of the preset's fitted to ``grid``."""
    from resin.config import fit_patch, preset_config
    from resin.train import train

    overrides: dict = {"angle_deg": angle, "seed": seed, "data": {}}
    if z_step > 1:
        overrides["data"]["z_step"] = z_step
    if face_margin:
        overrides["data"]["face_margin"] = face_margin
    if d_noise:
        overrides["degrader"] = {"noise": "measured"}
    if steps:
        overrides["steps"] = steps
    if patch is not None:
        overrides["data"]["patch_size"] = patch
    config = preset_config(preset, overrides)
    if patch is None:
        config = fit_patch(config, grid)
    t0 = time.perf_counter()
    train(raw_path, out, config, device="cpu", overwrite=True, previews=False)
    return time.perf_counter() - t0


def enhance(model: Path, raw: np.ndarray, z_step: int,
            faces: str = "repeat") -> tuple[np.ndarray, str]:
    """The runtime's result (float32 in, so float32 out: no uint16 rounding or clip), and a
    note for a z-step model. A model trained with ``z_step`` K gives ``Zraw K`` planes (its
    last K - 1 past the last raw plane); the first ``(Zraw - 1) K + 1``, training's grid,
    are kept. ``faces``: the runtime's face mode."""
    from resin.runtime import Enhancer

    backend = "torch" if Path(model).suffix == ".pt" else "onnxruntime"
    with Enhancer(model, backend=backend, device="cpu", faces=faces) as enh:
        out = enh.enhance(raw.astype(np.float32))
    if z_step == 1:
        return out, ""
    return out[:(raw.shape[0] - 1) * z_step + 1], f"scale-{z_step} model run by the runtime; "


# --------------------------------------------------------------------------- one setting


def _note(message: str) -> None:
    print(f"quality: {message}", file=sys.stderr, flush=True)


def run_setting(setting: Setting, shape: tuple[int, int, int], model: Path | None,
                extras: dict[str, Path], selfnet_minutes: float, quick_steps: int | None,
                workdir: Path, long: bool = False,
                face_margin: float = 0.0,
                d_noise: bool = False, quick_seeds: Sequence[int] = ()
                ) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every row of one setting, and the scored volumes (on the truth's grid) by method."""
    from resin.errors import ResinError
    from resin.io import write_volume

    sim = setting.simulate(shape)
    k = sim.z_step
    n = (sim.raw.shape[0] - 1) * k + 1
    truth = sim.truth[:n]
    grid = (n, shape[1], shape[2])
    rows: list[dict] = []
    volumes: dict[str, np.ndarray] = {}

    def add(method: str, pred: np.ndarray | None, detail: str = "") -> None:
        row: dict = {"method": method, "detail": detail}
        if pred is not None:
            if pred.shape[0] < n or pred.shape[1:] != truth.shape[1:]:
                raise RuntimeError(f"{setting.name}: {method} returned shape {pred.shape}; "
                                   f"the truth's grid is {truth.shape}")
            volumes[method] = pred[:n]
            row.update(score(pred[:n], truth))
        rows.append(row)

    def timed(name: str, fn: Callable[[], T]) -> tuple[T, float]:
        _note(f"{setting.name}: {name}")
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    add(RAW, on_grid(sim.raw, k), "linearly interpolated in z" if k > 1 else "")
    add(BLURRED, blurred_truth(sim)[:n], f"sigma {sim.psf_sigma_zyx[1]:g} along z, y, x")
    (rl, n_iter), _ = timed(RL, lambda: richardson_lucy_best(sim))
    add(RL, rl, f"{n_iter} iterations, offset {sim.offset:g} subtracted")

    selfnet = _selfnet()
    log: list[str] = []

    def keep_log(line: str) -> None:
        log.append(line)
        print(line, file=sys.stderr, flush=True)

    try:
        out, seconds = timed(SELFNET, lambda: selfnet.selfnet_enhance(
            sim.raw, z_step=k, angle_deg=sim.angle_deg, seed=0, minutes=selfnet_minutes,
            log=keep_log))
    except NotImplementedError:
        add(SELFNET, None, "n/a: the baseline slices along z, so it needs the PSF along z")
    else:
        steps = next((line.split()[1] for line in reversed(log)
                      if line.startswith("selfnet: ") and " steps, loss" in line), "?")
        add(SELFNET, out, f"{seconds / 60:.1f} min, {steps} steps")

    raw_path = workdir / f"{setting.name}_raw.tif"
    write_volume(raw_path, sim.raw, overwrite=True)
    models: dict[str, tuple[str, Path | None]] = {QUICK: ("quick", model)}
    # the quick rows trained here and their seeds (run to run; a given model is not one)
    seeds = {QUICK: 0} if model is None else {}
    for extra_seed in quick_seeds:
        seeds[f"{QUICK}, seed {extra_seed}"] = extra_seed
        models[f"{QUICK}, seed {extra_seed}"] = ("quick", None)
    if long:
        models[LONG] = ("long", None)
    models.update({name: ("", path) for name, path in extras.items()})
    for name, (preset, path) in models.items():
        detail = ""
        if path is None:
            seed = seeds.get(name, 0)
            path = workdir / f"{setting.name}_{preset}{f'_s{seed}' if seed else ''}.pt"
            _note(f"{setting.name}: training {name}")
            seconds = train_preset(preset, raw_path, path, sim.angle_deg, k, grid,
                                   quick_steps if preset == "quick" else None, face_margin,
                                   d_noise, seed=seed)
            detail = f"trained here in {seconds / 60:.1f} min; "
            if face_margin:
                detail += f"face_margin {face_margin:g}; "
            if d_noise:
                detail += "D adds the measured noise; "
        detail += _train_info(path)
        try:
            (pred, note), _ = timed(name, functools.partial(enhance, path, sim.raw, k))
        except ResinError as exc:
            _note(f"{setting.name}: {name} failed: {exc}")
            add(name, None, f"n/a: {exc}")
            continue
        add(name, pred, note + detail)
    if quick_seeds:
        scored = [r for r in rows if r["method"] in seeds and "rmse" in r]
        if scored:
            rows.append({"method": f"{QUICK}, mean of {len(scored)} runs",
                         "detail": "seeds " + ", ".join(str(seeds[r["method"]]) for r in scored),
                         **{c: float(np.mean([r[c] for r in scored])) for c in COLUMNS}})
    add(TRUTH, truth)
    return rows, volumes


# --------------------------------------------------------------------------- output


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"  # type: ignore[arg-type]


def print_table(title: str, rows: list[dict]) -> None:
    ref = rows[0]
    print(f"\n### {title}\n")
    head = ["method", *COLUMNS, "rmse/raw", "ssim/raw", "detail"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        vals = [_fmt(r.get(k)) for k in COLUMNS]
        ratios = [_fmt(float(r[k]) / float(ref[k]) if k in r else None) for k in ("rmse", "ssim")]
        print(f"| {r['method']} | " + " | ".join(vals) + " | " + " | ".join(ratios)
              + f" | {r['detail']} |")


def print_regions_table(rows: list[dict]) -> None:
    print("\n### Where SSIM is lost (noisy; mean SSIM by region)\n")
    print("| method | SSIM tubes | SSIM near | SSIM far | SSIM |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['tube']:.3f} | {r['near']:.3f} | {r['far']:.3f} | "
              f"{r['ssim']:.3f} |")


def _compare(a: dict | None, b: dict | None, key: str, truth: dict) -> dict | None:
    """Whether row ``a`` beats row ``b`` on ``key``, with the numbers compared (None: a
    number is missing). rmse: lower; ssim: higher; isotropy: closer to the truth's."""
    if a is None or b is None:
        return None
    x, y = a.get(key), b.get(key)
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return None
    if key == "rmse":
        return {"beats": x < y, "ratio": x / y}
    if key == "ssim":
        return {"beats": x > y, "ratio": x / y}
    target = truth.get(key)
    if target is None or not math.isfinite(target):
        return None
    return {"beats": abs(x - target) < abs(y - target), "distance": abs(x - target),
            "other_distance": abs(y - target)}


def summary(results: dict[str, list[dict]]) -> list[dict]:
    """Per setting and RESIN row (quick, and long where it ran): does it beat the raw input
    and Self-Net on rmse, ssim and isotropy."""
    out = []
    for name, rows in results.items():
        by = {r["method"]: r for r in rows}
        truth = by[TRUTH]
        for method in (QUICK, LONG):
            if method not in by:
                continue
            entry: dict = {"setting": name, "method": method}
            for other, label in ((RAW, "raw"), (SELFNET, "selfnet")):
                for key in ("rmse", "ssim", "isotropy_ratio"):
                    entry[f"{label}_{key}"] = _compare(by[method], by.get(other), key, truth)
            out.append(entry)
    return out


def print_summary(entries: list[dict]) -> None:
    def cell(c: dict | None) -> str:
        if c is None:
            return "n/a"
        verdict = "yes" if c["beats"] else "no"
        if "ratio" in c:
            return f"{verdict} ({c['ratio']:.3f})"
        return f"{verdict} ({c['distance']:.2f} vs {c['other_distance']:.2f})"

    print("\n### Does RESIN beat the raw input and Self-Net? (rmse, ssim: RESIN / other; "
          "isotropy: distance of isotropy_ratio to the truth's, RESIN vs other)\n")
    head = ["setting", "RESIN", "rmse < raw", "ssim > raw", "isotropy vs raw", "rmse < Self-Net",
            "ssim > Self-Net", "isotropy vs Self-Net"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for e in entries:
        cells = [cell(e[f"{who}_{key}"]) for who in ("raw", "selfnet")
                 for key in ("rmse", "ssim", "isotropy_ratio")]
        print(f"| {e['setting']} | {e['method'].removeprefix('RESIN ')} | "
              + " | ".join(cells) + " |")


def _jsonable(value: object) -> object:
    """NaN and infinities (undefined isotropy, the truth's PSNR) as null: strict JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------- CLI


def _pairs(items: list[str], flag: str, parts: int, ap: argparse.ArgumentParser) -> list[list[str]]:
    out = []
    for item in items:
        fields = item.split("=", parts - 1)
        if len(fields) != parts or not all(fields):
            form = "SETTING=PATH" if parts == 2 else "SETTING=NAME=PATH"
            ap.error(f"{flag} takes {form}, got {item!r}")
        if fields[0] not in SETTINGS:
            ap.error(f"{flag} {item!r}: unknown setting {fields[0]!r}; "
                     f"choose one of {', '.join(SETTINGS)}")
        if not Path(fields[-1]).is_file():
            ap.error(f"{flag} {item!r}: {fields[-1]} is not a file")
        out.append(fields)
    return out


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from resin.config import DataConfig

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS),
                    help="which settings to run (default: all four)")
    ap.add_argument("--shape", nargs=3, type=int, default=list(SHAPE), metavar=("Z", "Y", "X"),
                    help="the truth's shape (default %(default)s)")
    ap.add_argument("--selfnet-minutes", type=float, default=SELFNET_MINUTES,
                    help="wall-clock budget of each Self-Net baseline (default %(default)s)")
    ap.add_argument("--quick-steps", type=int, help="steps for the quick models trained here")
    ap.add_argument("--quick-seeds", nargs="+", type=int, default=[], metavar="SEED",
                    help="also train the quick preset with these seeds (run to run: a row "
                         "each and their mean with seed 0's)")
    ap.add_argument("--long", nargs="+", choices=list(SETTINGS), default=[], metavar="SETTING",
                    help="also train the long preset (about 30 min each on 2 CPU cores) in "
                         "these settings: a 'RESIN long' row")
    ap.add_argument("--face-margin", type=float, default=0.0, metavar="SHARE",
                    help="train the RESIN models here with data.face_margin SHARE (patches "
                         "reaching that share of their side past the faces; default 0)")
    ap.add_argument("--d-noise", action="store_true",
                    help="train the RESIN models here with degrader.noise 'measured' (D's "
                         "outputs get the raw volume's noise back; experimental)")
    ap.add_argument("--model", action="append", default=[], metavar="SETTING=PATH",
                    help="score this model as RESIN quick in SETTING instead of training one")
    ap.add_argument("--extra", action="append", default=[], metavar="SETTING=NAME=PATH",
                    help="another row in SETTING's table (e.g. a longer run)")
    ap.add_argument("--workdir", type=Path,
                    help="keep the raw volumes and trained models here (default: a temporary "
                         "folder)")
    ap.add_argument("--json", type=Path, help="write every row here")
    args = ap.parse_args(argv)
    shape = (args.shape[0], args.shape[1], args.shape[2])
    models = {s: Path(p) for s, p in _pairs(args.model, "--model", 2, ap)}
    extras: dict[str, dict[str, Path]] = {s: {} for s in SETTINGS}
    for s, name, p in _pairs(args.extra, "--extra", 3, ap):
        if name in (RAW, BLURRED, RL, SELFNET, QUICK, LONG, TRUTH):
            ap.error(f"--extra: the name {name!r} is taken by a standard row")
        extras[s][name] = Path(p)
    if args.json is not None and not args.json.parent.is_dir():
        ap.error(f"--json: folder {args.json.parent} does not exist")
    try:  # the config's own bound, checked before minutes of simulation and baselines
        DataConfig(face_margin=args.face_margin)
    except ValidationError as exc:
        ap.error(f"--face-margin: {exc.errors()[0]['msg']}")
    if not args.selfnet_minutes > 0:
        ap.error("--selfnet-minutes must be positive")
    chosen = list(dict.fromkeys(args.settings))

    results: dict[str, list[dict]] = {}
    record: dict = {"shape": list(shape), "seed": SEED, "selfnet_minutes": args.selfnet_minutes,
                    "quick_steps": args.quick_steps, "long": args.long,
                    "face_margin": args.face_margin, "d_noise": args.d_noise,
                    "quick_seeds": args.quick_seeds, "settings": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in chosen:
            setting = SETTINGS[name]
            rows, volumes = run_setting(setting, shape, models.get(name), extras[name],
                                        args.selfnet_minutes, args.quick_steps, work,
                                        long=name in args.long,
                                        face_margin=args.face_margin, d_noise=args.d_noise,
                                        quick_seeds=[q for q in dict.fromkeys(args.quick_seeds)
                                                     if q != 0])
            title = f"{name}: {setting.title}; truth {shape}, seed {SEED}"
            print_table(title, rows)
            results[name] = rows
            record["settings"][name] = {"title": title, "rows": rows}
            if name == "noisy":
                truth = volumes[TRUTH]
                regions = [{"method": m, **ssim_regions(v, truth),
                            "ssim": next(r["ssim"] for r in rows if r["method"] == m)}
                           for m, v in volumes.items()]
                print_regions_table(regions)
                record["noisy_ssim_regions"] = regions
    record["summary"] = summary(results)
    print_summary(record["summary"])
    if args.json:
        args.json.write_text(json.dumps(_jsonable(record), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
