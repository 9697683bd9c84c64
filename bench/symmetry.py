"""Averaging a model's output over the symmetries its PSF keeps (test-time augmentation).

    python bench/quality.py --workdir /tmp/quality          # keeps SETTING_quick.pt there
    python bench/symmetry.py --workdir /tmp/quality paper noisy nuclei
    python bench/symmetry.py --model paper=/path/to/model.pt

A model trained with random flips and lateral transposes (``resin.data.psf_symmetries``,
the set used here too) should answer a flipped volume with the flipped output. Where it
does not exactly, the mean of its outputs over those symmetries (each turned back) averages
out what the model made up differently each time.
For each model, ``bench/quality.py``'s metrics on its setting's volume (seed 0) for one
pass of the runtime (``Enhancer``) beside the mean over the first 2, 4 and all of the
symmetries. An axial PSF keeps 16 (flip z, y, x; swap y and x); a PSF tilted from z
towards x keeps 4 (flip y; turn the z-x plane by 180 degrees). It costs that many passes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import quality  # noqa: E402

from resin.data import Symmetry, apply_symmetry, psf_symmetries, undo_symmetry  # noqa: E402


def outputs(model: Path, raw: np.ndarray, z_step: int, ops: list[Symmetry]
            ) -> list[np.ndarray]:
    """The runtime's output for each symmetry of ``raw``, turned back, on training's grid.
    A scale-K model's first ``(Zraw - 1) K + 1`` planes are the raw planes' span, so
    flipping z maps that span onto itself."""
    n = (raw.shape[0] - 1) * z_step + 1
    return [undo_symmetry(quality.enhance(model, apply_symmetry(raw, op), z_step)[0][:n], op)
            for op in ops]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="*", metavar="SETTING",
                    help="score WORKDIR/SETTING_quick.pt for these settings "
                    f"({', '.join(quality.SETTINGS)})")
    ap.add_argument("--workdir", type=Path, help="folder holding SETTING_quick.pt "
                    "(bench/quality.py --workdir)")
    ap.add_argument("--model", action="append", default=[], metavar="SETTING=PATH",
                    help="score this model on SETTING's volume (repeatable)")
    args = ap.parse_args(argv)
    jobs: list[tuple[str, Path]] = []
    if args.settings:
        if args.workdir is None:
            ap.error("settings given without --workdir")
        unknown = [name for name in args.settings if name not in quality.SETTINGS]
        if unknown:
            ap.error(f"unknown setting {unknown[0]!r}; choose from {', '.join(quality.SETTINGS)}")
        jobs += [(name, args.workdir / f"{name}_quick.pt") for name in args.settings]
    for item in args.model:
        name, _, path = item.partition("=")
        if name not in quality.SETTINGS or not path:
            ap.error(f"--model {item!r}: expected SETTING=PATH, SETTING one of "
                     f"{', '.join(quality.SETTINGS)}")
        jobs.append((name, Path(path)))
    if not jobs:
        ap.error("nothing to score: name settings with --workdir, or use --model")
    cols = ("rmse", "rmse_lsq", "ssim", "isotropy_ratio", "isotropy_fourier", "mip_ssim")
    print("| setting | model | passes | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for name, model in jobs:
        sim = quality.SETTINGS[name].simulate(quality.SHAPE)
        k = sim.z_step
        truth = sim.truth[:(sim.raw.shape[0] - 1) * k + 1]
        ops = psf_symmetries(oblique=bool(sim.angle_deg))
        t0 = time.perf_counter()
        outs = outputs(model, sim.raw.astype(np.float32), k, ops)
        seconds = time.perf_counter() - t0
        for m in sorted({1, 2, 4, len(ops)}):
            mean = np.mean(np.stack(outs[:m]), axis=0, dtype=np.float64).astype(np.float32)
            s = quality.score(mean, truth)
            print(f"| {name} | {model} | {m} | " + " | ".join(f"{s[c]:.3f}" for c in cols)
                  + " |", flush=True)
        print(f"symmetry: {name}: {len(ops)} passes in {seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
