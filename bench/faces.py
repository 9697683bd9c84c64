"""What the padding at a volume's faces does to a trained model's scores.

    python bench/quality.py --workdir /tmp/quality          # keeps SETTING_quick.pt there
    python bench/faces.py --workdir /tmp/quality paper oblique45
    python bench/faces.py --workdir /tmp/quality --preset long paper   # after --long paper
    python bench/faces.py --model resin/data/default.pt paper noisy    # any checkpoint

For each setting, the same checkpoint is run three ways on that setting's raw volume and
scored against its truth (``bench/quality.py``'s metrics and volumes, seed 0): through the
runtime with its default faces (``Enhancer``, tiled, the volume padded by the halo with
each face plane repeated); through the runtime with ``faces="zeros"`` (nothing padded:
each convolution zero-pads its own input at the faces, as on a training patch and as in
one call on the whole volume); and as one call of the network on the whole normalized
volume mirrored by ``--pad`` voxels at every face (NumPy 'reflect', the usual
alternative; not for a z-step model, which is scored on the truth's grid as
``bench/quality.py`` scores it). Also printed: RMSE on the interior (a border of ``--border`` voxels dropped), the
output's maximum beside the truth's, and the raw input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import quality  # noqa: E402


def one_call(model: Path, raw: np.ndarray, mirror: int) -> np.ndarray:
    """The network once on the whole volume, normalized as the checkpoint records, mirrored
    by ``mirror`` voxels at every face (rounded up to the network's size multiple), cropped
    back. (The zero-padded call is the runtime's ``faces="zeros"``.)"""
    import torch

    from resin.checkpoint import build_generator, load_checkpoint
    from resin.data import Normalization

    ckpt = load_checkpoint(model)
    n = ckpt["normalization"]
    norm = Normalization(n["low_percentile"], n["high_percentile"], n["train_low"],
                         n["train_high"])
    net = build_generator(ckpt)
    x = norm.apply(raw)
    pads = [(mirror, mirror + (-(s + 2 * mirror) % net.size_multiple)) for s in x.shape]
    x = np.pad(x, pads, mode="reflect")
    with torch.inference_mode():
        y = net(torch.from_numpy(np.ascontiguousarray(x))[None, None])[0, 0].numpy()
    y = y[tuple(slice(a, a + s) for (a, _), s in zip(pads, raw.shape, strict=True))]
    return norm.invert(y)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", choices=list(quality.SETTINGS))
    ap.add_argument("--workdir", type=Path, default=None,
                    help="folder holding SETTING_PRESET.pt (bench/quality.py --workdir)")
    ap.add_argument("--preset", choices=["quick", "long"], default="quick",
                    help="which of the checkpoints bench/quality.py keeps to run "
                         "(long: those of --long SETTING)")
    ap.add_argument("--model", type=Path, default=None,
                    help="run this checkpoint on every setting instead of the workdir's "
                         "(through the runtime only: the mirrored one-call run normalizes "
                         "by the levels a model was trained on, which fit only its own "
                         "volume)")
    ap.add_argument("--border", type=int, default=4)
    ap.add_argument("--pad", type=int, default=16, help="mirror padding of the middle run")
    ap.add_argument("--crop", type=int, default=0, metavar="M",
                    help="score the centre of a volume M voxels larger at every face (raw "
                         "planes along z): the faces are then cuts through a continuing "
                         "sample, as a microscope's field of view is, and the run on the "
                         "whole larger volume, cropped, is the context the faces lack")
    ap.add_argument("--face-pads", type=int, nargs="*", default=[], metavar="N",
                    help="also run the runtime with --faces N (each face repeated N voxels, "
                         "at most the halo; the network's zero padding beyond)")
    args = ap.parse_args(argv)
    if (args.model is None) == (args.workdir is None):
        ap.error("give --workdir (its SETTING_PRESET.pt checkpoints) or --model, not both")
    inner = (slice(args.border, -args.border),) * 3
    print("| setting | run | rmse | rmse_lsq | ssim | isotropy | rmse, interior "
          "| output max (truth's) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.settings:
        m = args.crop
        setting = quality.SETTINGS[name]
        # a z-step setting is scored on the truth's grid, as bench/quality.py scores it
        k = setting.simulate((8, 8, 8)).z_step
        z, y, x = quality.SHAPE
        sim = setting.simulate((z + 2 * m * k, y + 2 * m, x + 2 * m))
        model = args.model or args.workdir / f"{name}_{args.preset}.pt"
        raw = sim.raw[m:sim.raw.shape[0] - m, m:-m or None, m:-m or None]
        n = (raw.shape[0] - 1) * k + 1
        truth = sim.truth[m * k:m * k + n, m:-m or None, m:-m or None]
        runs = {"raw input": quality.on_grid(raw, k)[:n].astype(np.float32)}
        if m:
            whole = quality.enhance(model, sim.raw, k)[0]
            runs["whole larger volume, cropped (the faces' true context)"] = (
                whole[m * k:m * k + n, m:-m, m:-m])
        runs["runtime (faces repeated)"] = quality.enhance(model, raw, k)[0][:n]
        runs["runtime, faces zero-padded"] = quality.enhance(model, raw, k, "zeros")[0][:n]
        for pad in args.face_pads:
            runs[f"runtime, faces padded by {pad}"] = quality.enhance(model, raw, k,
                                                                     str(pad))[0][:n]
        if args.model is None and k == 1 and not m:  # one_call: the training levels
            runs[f"one call, faces mirrored by {args.pad}"] = one_call(model, raw, args.pad)
        for run, pred in runs.items():
            if pred.shape[0] < n:  # a model without the setting's z step (the bundled
                pred = quality.on_grid(pred, k)[:n]  # one): interpolated as the raw is
            w = quality.score(pred, truth)
            interior = quality.score(pred[inner], truth[inner])
            print(f"| {name} | {run} | {w['rmse']:.3f} | {w['rmse_lsq']:.3f} | {w['ssim']:.3f} "
                  f"| {w['isotropy_ratio']:.3f} | {interior['rmse']:.3f} "
                  f"| {float(pred.max()):.0f} ({int(truth.max())}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
