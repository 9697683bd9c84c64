"""``resin demo``: simulate a volume, enhance it with the bundled model, score it.

Writes ``raw.tif``, ``truth.tif``, ``enhanced.tif`` and ``mip.png`` (rows: raw, enhanced,
truth; columns: lateral MIP, axial x-z MIP) into the output folder, refusing before any
work to replace any of them unless ``overwrite``, and returns the paper's metrics of the
raw input and of the enhanced volume against the truth. Needs the ``dev`` extra for the
metrics (scipy, scikit-image); torch is not needed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from resin import _log
from resin.errors import OutputExistsError, UsageError

DEMO_SHAPE = (48, 128, 128)
DEMO_FILES = ("raw.tif", "truth.tif", "enhanced.tif", "mip.png")


DEMO_SIGMA = (1.0, 5.0)


def demo_simulation(shape: tuple[int, int, int] = DEMO_SHAPE, seed: int = 0) -> Any:
    """The volume ``resin demo`` enhances: tubes, Gaussian PSF sigma 1 lateral / 5 axial,
    camera noise (a :class:`resin.simulate.Simulation`)."""
    from resin.simulate import simulate

    return simulate(shape=shape, sigma=DEMO_SIGMA, seed=seed)


def run_demo(out_dir: str | os.PathLike = "demo-out",
             shape: tuple[int, int, int] = DEMO_SHAPE, seed: int = 0,
             engine: str | os.PathLike | None = None, backend: str = "auto",
             device: str = "auto", overwrite: bool = False) -> dict[str, Any]:
    """Run the demo; returns ``{"raw": metrics, "enhanced": metrics, "files": [...], ...}``.

    The output folder, the shape and the model are checked before anything is made; a
    demo that fails later removes the folder it created (never one that was there).
    """
    out = Path(out_dir)
    check_demo_output(out, overwrite)
    from resin.kernels import mip
    from resin.runtime.enhancer import Enhancer
    from resin.runtime.mips import comparison_image
    from resin.runtime.pipeline import Mips

    from resin._png import write_png
    from resin.io import write_volume
    from resin.io._common import check_folder, make_folder, missing_folders
    from resin.metrics import evaluate
    from resin.simulate import check_simulation_shape

    shape = check_simulation_shape(shape)
    check_folder(out)
    t0 = time.perf_counter()
    with Enhancer(engine, backend=backend, device=device) as enh:
        folder = Path(os.path.abspath(out))  # "a/../b" is b: a is neither made nor left
        made = missing_folders(folder)
        created = made[-1] if made else None
        make_folder(folder)
        try:
            _log.log(f"demo: simulating a {'x'.join(map(str, shape))} volume of tubes "
                     "(Gaussian PSF sigma 1 lateral / 5 axial, camera noise)")
            t_sim = time.perf_counter()
            sim = demo_simulation(shape, seed)
            t_sim = time.perf_counter() - t_sim
            _log.log(f"demo: {enh.backend_reason}")
            t1 = time.perf_counter()
            enhanced = enh.enhance(sim.raw)
            t_enh = time.perf_counter() - t1
            files = []
            for name, vol in (("raw.tif", sim.raw), ("truth.tif", sim.truth),
                              ("enhanced.tif", enhanced)):
                write_volume(out / name, vol, voxel_size=(1.0, 1.0, 1.0), overwrite=True)
                files.append(str(out / name))
            raw_m, enh_m, truth_m = (Mips(*mip(v)) for v in (sim.raw, enhanced, sim.truth))
            write_png(out / "mip.png", comparison_image(raw_m, enh_m, None, extra=[truth_m]))
            files.append(str(out / "mip.png"))
            _log.log("demo: scoring against the truth (the paper's metrics)")
            metrics_raw = evaluate(sim.raw, sim.truth)
            metrics_enh = evaluate(enhanced, sim.truth)
        except BaseException:
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
            raise
    n = int(np.prod(shape))
    return {"raw": metrics_raw, "enhanced": metrics_enh, "files": files,
            "seconds_simulate": t_sim, "seconds_enhance": t_enh,
            "voxels_per_second": n / t_enh if t_enh > 0 else float("inf"),
            "seconds_total": time.perf_counter() - t0}


def check_demo_output(out: Path, overwrite: bool) -> None:
    """Refuse an output folder holding any of :data:`DEMO_FILES` unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is not a folder; pass --out DIR with a folder for the demo")
    for name in DEMO_FILES:
        path = out / name
        if not (path.exists() or path.is_symlink()):
            continue
        if not overwrite:
            raise OutputExistsError(f"{path} exists; pass --overwrite to replace the demo's "
                                    "files there or choose another --out folder")
        if not path.is_file():
            raise OutputExistsError(f"{path} is not a file; --overwrite replaces only files, "
                                    "so move it away or choose another --out folder")
