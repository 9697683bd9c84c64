"""ONNX export of the generator F, with the metadata record and a numerical parity check.

Two torch exporters exist: the current one (``dynamo=True``, needs onnxscript) and the
legacy TorchScript-based one. Both give exact parity on the RESIN U-Net; the legacy
graph ran faster in ONNX Runtime CPU (``bench/export_exporters.py`` measures it), so it
is tried first and the dynamo exporter is the fallback.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resin import _log
from resin.errors import ModelError, ParityError, UsageError
from resin.metadata import METADATA_KEY, DegraderMetadata, ModelMetadata

if TYPE_CHECKING:
    from resin.export._halo import Halos

#: tried in this order by ``exporter="auto"``
EXPORTER_ORDER = ("legacy", "dynamo")
DEFAULT_OPSET = 17
#: the lowest opset each exporter really writes for resin's networks: the legacy one has
#: no 3-D trilinear upsampling below 9; the dynamo one builds opset-18 graphs and reaches
#: older opsets only through a version converter that fails on Pad and then keeps 18
OPSET_FLOOR = {"legacy": 9, "dynamo": 18}
#: max |onnx - torch| / (torch output range) allowed
TOLERANCE = {"float32": 1e-4, "float16": 1e-2}


def load_generator(checkpoint: str | os.PathLike | dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(checkpoint dict, generator in eval mode) from a path or an already loaded dict."""
    from resin.checkpoint import FORMAT, build_generator, load_checkpoint

    if isinstance(checkpoint, dict):
        ckpt = checkpoint
        if ckpt.get("format") not in (None, FORMAT) or "generator" not in ckpt or "config" not in ckpt:
            raise ModelError("the checkpoint dict is not a resin checkpoint (no config/generator)")
    else:
        ckpt = load_checkpoint(checkpoint)
    return ckpt, build_generator(ckpt)


def check_tile(tile: Sequence[int], size_multiple: int, what: str = "--tile") -> tuple[int, int, int]:
    """A (z, y, x) tile with every side a positive multiple of the model's size multiple."""
    if len(tile) != 3:
        raise UsageError(f"{what} needs three sizes Z Y X, got {len(tile)}")
    z, y, x = (int(v) for v in tile)
    for v in (z, y, x):
        if v <= 0 or v % size_multiple:
            raise UsageError(
                f"{what} {z} {y} {x}: every side must be a positive multiple of the model's "
                f"size multiple {size_multiple}"
            )
    return (z, y, x)


def opset_range(exporter: str) -> tuple[int, int]:
    """The opsets ``exporter`` (``legacy``, ``dynamo`` or ``auto``: either) can write, as
    (lowest, highest) with the installed torch and onnx."""
    from resin._optional import require

    onnx = require("onnx", "ONNX export", extra="export")
    torch = require("torch", "ONNX export", extra="export")
    newest = int(onnx.defs.onnx_opset_version())
    # the legacy exporter's own limit; 20 (what torch 2.x all write) if torch hides it
    legacy = getattr(getattr(torch.onnx, "_constants", None), "ONNX_MAX_OPSET", 20)
    top = {"legacy": min(int(legacy), newest), "dynamo": newest}
    names = EXPORTER_ORDER if exporter == "auto" else (exporter,)
    return min(OPSET_FLOOR[n] for n in names), max(top[n] for n in names)


def check_opset(opset: int | None, exporter: str = "auto") -> None:
    """Refuse, before any work, an opset the chosen exporter cannot write."""
    if exporter not in ("auto", *EXPORTER_ORDER):
        raise UsageError(f"unknown exporter {exporter!r}; use auto, legacy or dynamo")
    if opset is None:
        return
    low, high = opset_range(exporter)
    if not low <= opset <= high:
        who = "torch's ONNX exporters write" if exporter == "auto" else \
            f"the {exporter} exporter writes"
        raise UsageError(f"--opset {opset}: {who} opset {low} to {high} only; choose one "
                         "of those")


def graph_opset(model: Any) -> int:
    """The default-domain opset an ONNX model (a ``ModelProto``) is stamped with."""
    return next(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def realistic_patch(shape: Sequence[int], low_percentile: float, high_percentile: float,
                    seed: int = 0) -> np.ndarray:
    """A microscopy-like normalized patch: axially blurred blobs and fibres, shot noise.

    Normalized globally with the model's training percentiles, as the runtime does.
    """
    rng = np.random.default_rng(seed)
    z, y, x = (int(s) for s in shape)
    zz, yy, xx = np.meshgrid(np.arange(z), np.arange(y), np.arange(x), indexing="ij", sparse=True)
    signal = np.zeros((z, y, x), np.float64)
    sig_lat, sig_ax = 1.2, 3.5
    for _ in range(max(3, (z * y * x) // 4000)):
        c = rng.uniform(0, 1, 3) * (z, y, x)
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        length = rng.uniform(0, 0.5) * max(z, y, x)
        brightness = rng.uniform(500, 3000)
        for t in np.linspace(-length / 2, length / 2, max(1, int(length))):
            p = c + t * d
            signal += brightness * np.exp(
                -((zz - p[0]) ** 2) / (2 * sig_ax**2)
                - ((yy - p[1]) ** 2 + (xx - p[2]) ** 2) / (2 * sig_lat**2)
            )
    raw = rng.poisson(signal + 100.0).astype(np.float64) + rng.normal(0, 2.0, signal.shape)
    lo, hi = np.percentile(raw, [low_percentile, high_percentile])
    return ((raw - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def _export_legacy(net: Any, example: Any, path: Path, opset: int, dynamic: bool) -> None:
    import torch

    axes = {0: "n", 2: "z", 3: "y", 4: "x"}
    torch.onnx.export(
        net, (example,), str(path), dynamo=False, opset_version=opset,
        input_names=["input"], output_names=["output"],
        dynamic_axes={"input": axes, "output": axes} if dynamic else None,
    )


def _export_dynamo(net: Any, example: Any, path: Path, opset: int, dynamic: bool,
                   size_multiple: int) -> None:
    import torch
    from torch.export import Dim

    from resin._optional import require

    require("onnxscript", "the dynamo ONNX exporter", extra="export")
    shapes = None
    if dynamic:
        m = size_multiple
        spatial = {a: Dim(n, min=1, max=1 << 16) for a, n in ((2, "z"), (3, "y"), (4, "x"))}
        shapes = {"x": {0: Dim("n", min=1, max=1024),
                        **{a: (m * d if m > 1 else d) for a, d in spatial.items()}}}
    # its registry warns on stderr about every torchvision op it skips (no torchvision
    # here): noise, not the user's business unless --debug
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    if not _log.is_debug():
        registry.setLevel(logging.ERROR)
    try:
        torch.onnx.export(
            net, (example,), str(path), dynamo=True, opset_version=opset,
            input_names=["input"], output_names=["output"], dynamic_shapes=shapes,
            optimize=True, verbose=False,
        )
    finally:
        registry.setLevel(level)


def partial_path(out: Path) -> Path:
    """The hidden file an export writes before its checks pass (its folder is created)."""
    from resin.io._common import make_parent

    make_parent(out)
    return out.with_name(f".{out.name}.{os.getpid()}.partial")


def export_graph(net: Any, example: Any, path: Path, opset: int | None = None,
                 exporter: str = "auto", dynamic: bool = True,
                 size_multiple: int = 1) -> tuple[str, int]:
    """Export ``net`` to ``path`` with the first exporter that works (``exporter="auto"``:
    :data:`EXPORTER_ORDER`, skipping one that cannot write ``opset``); returns its name and
    the opset written. Input ``"input"``, output ``"output"``. ``opset=None``: each
    exporter's own default (:data:`DEFAULT_OPSET`, or its lowest opset if higher); a file
    stamped with another opset than the one asked for counts as a failed export."""
    import onnx

    check_opset(opset, exporter)
    order = EXPORTER_ORDER if exporter == "auto" else (exporter,)
    failures = []
    for name in order:
        low, high = opset_range(name)
        want = opset if opset is not None else max(DEFAULT_OPSET, low)
        if not low <= want <= high:
            failures.append(f"{name}: writes opset {low} to {high} only")
            continue
        try:
            # torch's exporters warn about their own internals ("Constant folding - Only
            # steps=1 ...", deprecations): debug lines, not the user's business
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if name == "legacy":
                    _export_legacy(net, example, path, want, dynamic=dynamic)
                else:
                    _export_dynamo(net, example, path, want, dynamic=dynamic,
                                   size_multiple=size_multiple)
            for note in dict.fromkeys(str(w.message).split("\n")[0] for w in caught):
                _log.debug(f"{name} exporter: {note}")
            written = graph_opset(onnx.load(str(path), load_external_data=False))
            if written != want:
                raise ModelError(f"wrote opset {written}, not the requested {want}")
            return name, want
        except Exception as exc:  # noqa: BLE001 - collect and try the next exporter
            failures.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            _log.debug(f"{name} exporter failed: {exc}")
            path.unlink(missing_ok=True)
    raise ModelError("ONNX export failed with every exporter: " + "; ".join(failures))


def _attach_metadata(path: Path, meta: ModelMetadata | DegraderMetadata,
                     key: str = METADATA_KEY) -> None:
    import onnx

    model = onnx.load(str(path))
    for prop in list(model.metadata_props):
        if prop.key == key:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key = key
    entry.value = meta.to_json()
    model.producer_name = "resin"
    model.producer_version = meta.resin_version
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def parity(onnx_path: str | os.PathLike, generator: Any, inputs: Sequence[np.ndarray],
           dtype: str = "float32") -> list[float]:
    """max |ONNX Runtime CPU - torch fp32| / (torch output range), one figure per input."""
    import torch

    from resin._optional import require

    ort = require("onnxruntime", "the parity check of every export", extra="cpu")

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref_net = copy.deepcopy(generator).float().eval()
    errors = []
    for x in inputs:
        batch = x[None, None].astype(np.float32)
        with torch.no_grad():
            ref = ref_net(torch.from_numpy(batch)).numpy()
        out = sess.run(["output"], {"input": batch.astype(dtype)})[0].astype(np.float32)
        if out.shape != ref.shape:
            raise ParityError(f"ONNX output shape {out.shape} differs from torch's {ref.shape}")
        span = float(ref.max() - ref.min()) or 1.0
        err = float(np.max(np.abs(out - ref))) / span
        errors.append(err if np.isfinite(err) else float("inf"))
    return errors


def export_onnx(
    checkpoint: str | os.PathLike | dict[str, Any],
    out: str | os.PathLike,
    opset: int | None = None,
    fp16: bool = False,
    static_tile: Sequence[int] | None = None,
    check: bool = True,
    *,
    exporter: str = "auto",
    overwrite: bool = False,
    halo: Halos | None = None,
    halo_tolerance: float | None = None,
) -> ModelMetadata:
    """Export F to ONNX at ``out`` with the resin metadata record; parity-checked.

    Input ``"input"`` and output ``"output"`` are ``[N, 1, Z, Y, X]`` (float32, or float16
    with ``fp16``); Z/Y/X are dynamic (multiples of the size multiple) unless
    ``static_tile`` fixes them. The file appears only after the parity check passed.
    ``opset`` (default :data:`DEFAULT_OPSET`) is checked before any work (:func:`check_opset`).
    """
    import torch
    from resin.export.metadata import metadata_from_checkpoint

    out = Path(out)
    if out.exists() and not overwrite:
        from resin.errors import OutputExistsError

        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    check_opset(opset, exporter)
    ckpt, generator = load_generator(checkpoint)
    m = int(generator.size_multiple)
    tile = check_tile(static_tile, m) if static_tile is not None else None
    dtype = "float16" if fp16 else "float32"
    _log.log("measuring the receptive field by impulse response ...")
    meta = metadata_from_checkpoint(ckpt, generator, dtype=dtype, halo=halo,
                                    halo_tolerance=halo_tolerance)
    _log.log(f"receptive field {meta.receptive_field}, halo {meta.halo} voxels (z, y, x); "
             f"{meta.halo_tolerant} keeps every change within {meta.halo_tolerance:g} of the "
             "output range")

    side = max(16, 4 * m)
    example_shape = tile or (side, side, side)
    net = copy.deepcopy(generator).eval()
    example = torch.rand((1, 1, *example_shape))
    if fp16:
        net = net.half()
        example = example.half()

    tmp = partial_path(out)
    try:
        used, written = export_graph(net, example, tmp, opset, exporter,
                                     dynamic=tile is None, size_multiple=m)
        errors: list[float] = []
        if check:
            shapes = [tile, tile] if tile else [
                (side + m, side + 2 * m, side),
                (side, side + 2 * m, side + 3 * m),
            ]
            norm = meta.normalization
            rng = np.random.default_rng(0)
            inputs = [
                rng.uniform(0.0, 1.0, shapes[0]).astype(np.float32),
                realistic_patch(shapes[1], norm.low_percentile, norm.high_percentile, seed=1),
            ]
            errors = parity(tmp, generator, inputs, dtype)
            tol = TOLERANCE[dtype]
            _log.log(f"parity ONNX Runtime CPU vs torch ({dtype}, {used} exporter): "
                     f"random {errors[0]:.2e}, patch {errors[1]:.2e} of the output range "
                     f"(limit {tol:.0e})")
            if not all(e <= tol for e in errors):
                raise ParityError(
                    f"exported ONNX does not match torch: max error {max(errors):.2e} of the "
                    f"output range exceeds {tol:.0e}; nothing was written"
                )
        meta = ModelMetadata.model_validate({
            **meta.model_dump(),
            "export": {
                "exporter": used,
                "opset": written,
                "static_tile": list(tile) if tile else None,
                "parity_max_rel_error": {"random": errors[0], "patch": errors[1]} if errors
                else None,
            },
        })
        _attach_metadata(tmp, meta)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    _log.log(f"wrote {out}")
    return meta
