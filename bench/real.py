"""Real data: a widefield stack of a neuron, restored with no ground truth.

The stack is the ``neuron-25pct`` dataset that the flowdec package (Apache-2.0) ships in
its wheel on PyPI: a fluorescence image of a single neuron, 50 x 256 x 256 float32 (values
24-255), blurred along z about 1.5-1.7x as much as across by its spectra. No truth exists,
so what is measured is what ``resin-run --report`` measures on any user's data: the
anisotropy of the spectral cut-offs per axis pair before and after, how much the model
changed the volume, and the consistency residual |D(F(y)) - y| of a trained model. Each
row runs the command-line tools as a user would: the bundled model (trained on simulated
tubes), and ``resin train --preset quick`` (or another preset) on the stack itself.

    python bench/real.py --workdir /tmp/real             # downloads the wheel once (3 MB)
    python bench/real.py --workdir /tmp/real --wheel flowdec-1.1.0-py3-none-any.whl

The wheel comes from PyPI with ``pip download`` (the registry the project installs from);
the stack's SHA-256 is checked, so the figures are always of the same bytes. An x-z
picture of every output (``xz.png``: maxima over a 120-voxel band along y, and one x-z
slice, raw first) is written to the workdir.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

#: the flowdec release whose wheel holds the stack, and the stack's bytes
WHEEL = "flowdec==1.1.0"
MEMBER = "flowdec/datasets/neuron-25pct/data.tif"
SHA256 = "24d347e01b12646421862cdcb50395209fb79592c3085ce5c7d6f5b8ebcb907e"


def stack(workdir: Path, wheel: Path | None) -> Path:
    """The neuron stack in ``workdir`` (from ``wheel``, or a wheel pip downloads there)."""
    out = workdir / "neuron.tif"
    if out.exists() and hashlib.sha256(out.read_bytes()).hexdigest() == SHA256:
        return out
    if wheel is None:
        found = sorted(workdir.glob("flowdec-1.1.0-*.whl"))
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            "-d", str(workdir), WHEEL], check=True)
            found = sorted(workdir.glob("flowdec-1.1.0-*.whl"))
        wheel = found[0]
    with zipfile.ZipFile(wheel) as z:
        data = z.read(MEMBER)
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise SystemExit(f"{wheel}: {MEMBER} is not the stack these figures are of")
    out.write_bytes(data)
    return out


def _tool(name: str) -> str:
    """A console script of this interpreter's environment."""
    return str(Path(sys.executable).with_name(name))


def run(cmd: list[str], log: Path) -> float:
    """Run a command (its output to ``log``); seconds taken."""
    t = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}); see {log}")
    return time.perf_counter() - t


def enhance(model: Path | None, raw: Path, out: Path) -> dict:
    """``resin-run --report`` on the stack; its report with the run's seconds."""
    cmd = [_tool("resin-run"), str(raw), "-o", str(out), "--report", "--overwrite"]
    if model is not None:
        cmd[1:1] = ["--engine", str(model)]
    seconds = run(cmd, out.with_suffix(".log"))
    report = json.loads(Path(f"{out}.report.json").read_text())
    report["seconds"] = seconds
    return report


def grain_of(raw, volume) -> float:
    """Background grain of ``volume`` (an array the shape of ``raw``): the standard
    deviation of its high-pass part (the volume minus its 3-voxel box mean) over the raw's
    darker half (its 9-voxel box mean below the median). A model that sharpens noise along
    with structure raises it."""
    import numpy as np
    from scipy import ndimage

    raw = np.asarray(raw, np.float32)
    v = np.asarray(volume, np.float32)
    dark = ndimage.uniform_filter(raw, 9) < np.median(raw)
    if not dark.any():  # a blur-only volume whose darker half is one value: no grain
        return float("nan")
    return float((v - ndimage.uniform_filter(v, 3))[dark].std())


def grain(raw_path: Path, path: Path) -> float:
    """:func:`grain_of` of the TIFF at ``path``, the raw read from ``raw_path``."""
    import tifffile

    return grain_of(tifffile.imread(raw_path), tifffile.imread(path))


def xz_picture(raw: Path, outputs: dict[str, Path], path: Path) -> None:
    """Raw and every output side by side as x-z views, on the raw's display range."""
    import numpy as np
    import tifffile
    from PIL import Image

    vols = {"raw": tifffile.imread(raw), **{k: tifffile.imread(v) for k, v in outputs.items()}}
    lo, hi = np.percentile(vols["raw"], [0.5, 99.9])
    rows = []
    for v in vols.values():
        band = v[:, 80:200, 40:216].astype(np.float32)
        for view in (band.max(axis=1), band[:, 70]):
            rows += [np.clip((view - lo) / (hi - lo), 0, 1) * 255, np.zeros((3, 176))]
    img = np.concatenate(rows).astype(np.uint8)
    Image.fromarray(img).resize((img.shape[1] * 3, img.shape[0] * 3), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--wheel", type=Path, default=None,
                    help="a flowdec 1.1.0 wheel already at hand (else pip downloads one)")
    ap.add_argument("--preset", default="quick", help="resin train's preset (default quick)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path, default=None,
                    help="a checkpoint already trained on the stack (skips training)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    raw = stack(args.workdir, args.wheel)
    model = args.model or args.workdir / f"neuron_{args.preset}.pt"
    train_log = model.with_suffix(".train.log")
    train_seconds = None
    if args.model is None:
        train_seconds = run([_tool("resin"), "train", str(raw), "--preset", args.preset,
                             "--seed", str(args.seed), "-o", str(model)], train_log)
    steps = next((line.split(": ", 1)[1].split(" (")[0] for line in
                  train_log.read_text().splitlines() if ": the generator of step" in line),
                 "") if train_log.exists() else ""
    rows = {"bundled model": enhance(None, raw, args.workdir / "bundled.tif"),
            f"RESIN {args.preset}, trained on the stack": enhance(
                model, raw, args.workdir / f"{args.preset}.tif")}
    xz_picture(raw, {k: args.workdir / ("bundled.tif" if k == "bundled model"
                                        else f"{args.preset}.tif") for k in rows},
               args.workdir / "xz.png")
    first = next(iter(rows.values()))
    trained = (f"training {train_seconds:.0f} s ({steps})" if train_seconds is not None
               else f"model {model} ({steps or 'trained before'})")
    print(f"real stack: {MEMBER} of {WHEEL}, 50x256x256; input signal-to-noise "
          f"{first['input_snr']:.0f}; {trained}")
    print("| run | anisotropy y/z | anisotropy x/z | share of the anisotropy closed "
          "| volume changed | consistency residual (p99) | background grain |")
    print("|---|---|---|---|---|---|---|")
    before = first["ratios_before"]
    raw_grain = grain(raw, raw)
    print(f"| raw input | {before['y/z']:.3f} | {before['x/z']:.3f} | | | | {raw_grain:.2f} |")
    outputs = {"bundled model": args.workdir / "bundled.tif"}
    outputs[f"RESIN {args.preset}, trained on the stack"] = args.workdir / f"{args.preset}.tif"
    for name, r in rows.items():
        r["grain"] = grain(raw, outputs[name])
        after = r["ratios_after"]
        closed = [(before[k] - after[k]) / (before[k] - 1.0) for k in ("y/z", "x/z")]
        r["closed"] = closed
        residual = (f"{r['residual']:.4f} ({r['residual_p99']:.4f})"
                    if r.get("residual") is not None else "(no D)")
        print(f"| {name} | {after['y/z']:.3f} | {after['x/z']:.3f} | "
              f"{100 * closed[0]:.0f} % / {100 * closed[1]:.0f} % | {100 * r['change']:.1f} % "
              f"| {residual} | {r['grain']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"stack": {"wheel": WHEEL, "member": MEMBER,
                                                   "sha256": SHA256}, "raw_grain": raw_grain,
                                         "train_seconds": train_seconds, "train": steps,
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
