"""ONNX export of the degradation network D beside F, for ``resin-run --report``.

D maps F's normalized output back to the normalized input; with it the runtime measures
the consistency residual ``|D(F(y)) - y|`` without PyTorch. The 'kernel' D convolves by
FFT in torch (cheap for long kernels while training); the ONNX graph is the same function
as one direct convolution of the replicate-padded input with the flipped kernel, which
every exporter and ONNX Runtime handle. The parity check compares it with torch's D.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np

from resin import _log
from resin.errors import ParityError
from resin.metadata import DEGRADER_KEY, DegraderMetadata, NormalizationRecord, degrader_halo

#: max |onnx - torch| / (torch output range) allowed (D is always exported in float32)
TOLERANCE = 1e-4


def has_degrader(ckpt: dict[str, Any]) -> bool:
    """Whether the checkpoint carries D's weights (a slim copy does not)."""
    return bool(ckpt.get("degrader"))


def _onnx_module(degrader: Any) -> Any:
    """The module to export: D's convolutions as they are, or for the 'kernel' kind the
    replicate-padded direct convolution equal to its FFT one."""
    import torch
    from torch import nn

    if degrader.kernel is None:
        return copy.deepcopy(degrader.net).float().eval()

    class _DirectKernel(nn.Module):
        def __init__(self, kernel: torch.Tensor) -> None:
            super().__init__()
            # torch's conv3d is a correlation; D's FFT product is a convolution
            self.weight = nn.Parameter(torch.flip(kernel, (0, 1, 2))[None, None].clone(),
                                       requires_grad=False)
            self.r = kernel.shape[0] // 2

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            padded = nn.functional.pad(x, (self.r,) * 6, mode="replicate")
            return nn.functional.conv3d(padded, self.weight)

    with torch.no_grad():
        return _DirectKernel(degrader.blur_kernel().detach().float()).eval()


def build_degrader_onnx(ckpt: dict[str, Any], path: Path, generator_sha256: str, *,
                        opset: int | None = None, exporter: str = "auto",
                        check: bool = True) -> DegraderMetadata:
    """Export D of ``ckpt`` to ``path`` (a temporary file the caller renames into place),
    parity-checked against torch's D, with its record linking it to F by
    ``generator_sha256``."""
    import torch
    from resin.export._onnx import (
        _attach_metadata,
        check_opset,
        export_graph,
        parity,
        realistic_patch,
    )
    from resin.export.metadata import weights_sha256

    from resin.checkpoint import build_degrader, z_step_of

    check_opset(opset, exporter)
    degrader = build_degrader(ckpt)
    norm = NormalizationRecord.model_validate(ckpt["normalization"])
    halo = degrader_halo(ckpt["config"].get("degrader"))
    used, written = export_graph(_onnx_module(degrader), torch.rand((1, 1, 12, 14, 16)), path,
                                 opset, exporter)
    errors: list[float] = []
    if check:
        rng = np.random.default_rng(0)
        inputs = [rng.uniform(0.0, 1.0, (20, 24, 28)).astype(np.float32),
                  realistic_patch((24, 20, 32), norm.low_percentile, norm.high_percentile,
                                  seed=1)]
        errors = parity(path, degrader, inputs)
        _log.log(f"parity of D, ONNX Runtime CPU vs torch ({used} exporter): random "
                 f"{errors[0]:.2e}, patch {errors[1]:.2e} of the output range (limit "
                 f"{TOLERANCE:.0e})")
        if not all(e <= TOLERANCE for e in errors):
            raise ParityError(f"exported D does not match torch: max error {max(errors):.2e} "
                              f"of the output range exceeds {TOLERANCE:.0e}; nothing was written")
    meta = DegraderMetadata.model_validate({
        "generator_sha256": generator_sha256,
        "weights_sha256": weights_sha256(degrader.state_dict()),
        "kind": degrader.config.kind,
        "receptive_field": tuple(2 * h + 1 for h in halo),
        "halo": halo,
        "z_step": z_step_of(ckpt),
        "normalization": norm,
        "export": {"exporter": used, "opset": written,
                   "parity_max_rel_error": {"random": errors[0], "patch": errors[1]}
                   if errors else None},
    })
    _attach_metadata(path, meta, key=DEGRADER_KEY)
    return meta


def export_degrader(checkpoint: str | os.PathLike | dict[str, Any], out: str | os.PathLike,
                    *, opset: int | None = None, exporter: str = "auto", check: bool = True,
                    overwrite: bool = False) -> DegraderMetadata:
    """Export D of ``checkpoint`` alone to ``out`` (``MODEL.degrader.onnx`` beside
    ``MODEL.onnx``); the file appears only after the parity check passed."""
    from resin.export._onnx import load_generator, partial_path
    from resin.export.metadata import weights_sha256

    from resin.errors import OutputExistsError

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    ckpt, generator = load_generator(checkpoint)
    tmp = partial_path(out)
    try:
        meta = build_degrader_onnx(ckpt, tmp, weights_sha256(generator.state_dict()),
                                   opset=opset, exporter=exporter, check=check)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    _log.log(f"wrote {out}")
    return meta
