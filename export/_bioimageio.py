"""A bioimage.io model package (format 0.5) of an exported generator.

The folder holds ``rdf.yaml`` with the ONNX weights and, as their parent, the torch
state dict (architecture ``resin.models.generator_from_config``), a normalized test input
with the ONNX Runtime output for it, a cover image, a README and the resin metadata record
(``resin.json``); a TensorRT plan, which is no bioimage.io weight format, rides along as an
attachment. The description is built with bioimage.io.spec's own descriptors and validated
(local files only, nothing fetched) before the folder appears under its final name.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resin import _log
from resin._atomic import replace_dir
from resin.errors import ModelError, OutputExistsError, UsageError
from resin.io._common import make_parent
from resin.metadata import ModelMetadata

#: the RESIN paper; a search link until the package can cite a DOI
PAPER = ("Wang et al., \"RESIN: A self-supervised framework for enhancing axial resolution "
         "of volumetric imaging data\"")
PAPER_URL = ("https://scholar.google.com/scholar?q=RESIN%3A+A+self-supervised+framework+for"
             "+enhancing+axial+resolution+of+volumetric+imaging+data")
LICENSE = "BSD-3-Clause"
#: the rdf's author when none is given: the account that ran the export
def default_author() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return "unknown"

TAGS = ("3d", "fluorescence-light-microscopy", "light-sheet-microscopy", "image-restoration",
        "axial-resolution", "isotropic-reconstruction", "self-supervised", "resin")
#: voxels beyond the halo on each side of the test input's core
TEST_CORE = 16
COVER_HALF = 256
#: file names inside the package
ONNX_FILE = "weights.onnx"
TORCH_FILE = "weights.pt"
TEST_INPUT = "test_input.npy"
TEST_OUTPUT = "test_output.npy"
SAMPLE_INPUT = "sample_input.tif"
SAMPLE_OUTPUT = "sample_output.tif"
COVER = "cover.png"
README = "README.md"
METADATA_FILE = "resin.json"
_NAME_OK = re.compile(r"[A-Za-z0-9_+\- ()]{5,128}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def exact_scale(value: float) -> float:
    """``value`` rounded to 30 significant bits (relative change below 1e-9).

    bioimage.io derives an output size as ``int(n * scale_in / scale_out)`` and checks that
    ``halo * scale_out / scale_in`` is whole; with a decimal voxel size such as 0.1 the
    product can land a hair below ``n`` and truncate. With scales of 30 significant bits
    (and the input scale a whole multiple of the output's) that arithmetic is exact.
    """
    mantissa, exponent = math.frexp(value)
    return math.ldexp(round(mantissa * 2**30), exponent - 30)


def _whole_scale(meta: ModelMetadata) -> tuple[int, int, int]:
    if any(s < 1 or abs(s - round(s)) > 1e-6 for s in meta.scale):
        raise ModelError(f"the model's scale {meta.scale} is not a whole number >= 1 per axis; "
                         "a bioimage.io package cannot describe it")
    z, y, x = (int(round(s)) for s in meta.scale)
    return (z, y, x)


def input_minimum(meta: ModelMetadata) -> tuple[int, int, int]:
    """Smallest input side per axis: a multiple of the size multiple, at least the minimum
    tile, and larger than twice the halo (bioimage.io wants something left after cropping)."""
    m = meta.size_multiple
    tile = meta.min_tile or (m, m, m)
    z, y, x = (m * math.ceil(max(t, 2 * h + 1) / m) for t, h in zip(tile, meta.halo, strict=True))
    return (z, y, x)


def _test_input_shape(meta: ModelMetadata) -> tuple[int, int, int]:
    """The test input's shape: valid for the parameterized size, a core beyond the halo."""
    m = meta.size_multiple
    lo = input_minimum(meta)
    z, y, x = (lo_ + m * math.ceil(max(0, 2 * h + TEST_CORE - lo_) / m)
               for lo_, h in zip(lo, meta.halo, strict=True))
    return (z, y, x)


def _to_uint8(img: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (img.astype(np.float32) - low) / max(high - low, 1e-12)
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def _mip_panel(volume: np.ndarray, aspect: int) -> np.ndarray:
    """The lateral MIP (along z) and the axial x-z MIP (along y, stretched by ``aspect``),
    side by side or stacked, whichever is closer to square."""
    lateral = volume.max(axis=0)
    axial = np.repeat(volume.max(axis=1), aspect, axis=0)
    gap = 2  # a dark line between the views
    h, w = max(lateral.shape[0], axial.shape[0]), lateral.shape[1] + gap + axial.shape[1]
    stacked_h = lateral.shape[0] + gap + axial.shape[0]
    stacked_w = lateral.shape[1]
    if max(h, w) / min(h, w) <= max(stacked_h, stacked_w) / min(stacked_h, stacked_w):
        side = np.zeros((h, w), np.float32)
        side[:lateral.shape[0], :lateral.shape[1]] = lateral
        side[:axial.shape[0], lateral.shape[1] + gap:] = axial
        return side
    return np.concatenate([lateral, np.zeros((gap, lateral.shape[1]), np.float32), axial])


def _fit(panel: np.ndarray, side: int) -> np.ndarray:
    """``panel`` scaled (nearest neighbour, aspect kept) and centred in a ``side`` square."""
    f = side / max(panel.shape)
    h, w = (max(1, min(side, round(n * f))) for n in panel.shape)
    rows = np.minimum((np.arange(h) / f).astype(int), panel.shape[0] - 1)
    cols = np.minimum((np.arange(w) / f).astype(int), panel.shape[1] - 1)
    square = np.zeros((side, side), panel.dtype)
    y0, x0 = (side - h) // 2, (side - w) // 2
    square[y0:y0 + h, x0:x0 + w] = panel[np.ix_(rows, cols)]
    return square


def cover_image(test_input: np.ndarray, test_output: np.ndarray,
                voxel_size: tuple[float, float, float] | None) -> np.ndarray:
    """A 2:1 grey image: MIPs of the test input (left half) and of its output (right half).

    Both halves use the input's intensity range, so a sharper axial profile shows as is;
    the axial views are stretched by the voxel aspect so they look as the sample does.
    """
    aspect = 1
    if voxel_size is not None and voxel_size[2] > 0:
        aspect = max(1, round(voxel_size[0] / voxel_size[2]))
    raw = np.asarray(test_input, np.float32).reshape(test_input.shape[-3:])
    out = np.asarray(test_output, np.float32).reshape(test_output.shape[-3:])
    low, high = (float(v) for v in np.percentile(raw, [0.5, 99.8]))
    out_aspect = max(1, round(aspect * test_input.shape[-3] / max(1, test_output.shape[-3])))
    halves = [_fit(_to_uint8(_mip_panel(raw, aspect), low, high), COVER_HALF),
              _fit(_to_uint8(_mip_panel(out, out_aspect), low, high), COVER_HALF)]
    return np.concatenate(halves, axis=1)


def _default_name(checkpoint: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_+\-() ]+", "-", checkpoint.stem).strip("- ") or "model"
    return f"RESIN axial enhancement {stem}"[:64].rstrip()


def _zyx(values: Sequence[Any]) -> str:
    return " x ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _readme(name: str, meta: ModelMetadata, ckpt: dict[str, Any], shape: Sequence[int],
            minimum: Sequence[int], plan: Path | None) -> str:
    cfg = ckpt.get("config", {})
    data = cfg.get("data", {})
    norm = meta.normalization
    lo, hi = f"p{norm.low_percentile:g}", f"p{norm.high_percentile:g}"
    m = meta.size_multiple
    features = meta.generator.get("features", "?") if meta.generator else "?"
    blur = ("along z" if meta.axial_angle_deg == 0
            else f"along an axis {meta.axial_angle_deg:g} degrees from z towards x")
    voxel = "unknown" if meta.voxel_size is None else f"{_zyx(meta.voxel_size)} um (z, y, x)"
    tile = _zyx([m * math.ceil((2 * h + 64) / m) for h in meta.halo])
    plan_text = "" if plan is None else (
        f"\nThe TensorRT plan `{plan.name}` (metadata in `{plan.name}.json`) is attached as "
        "is; it runs only on the GPU model and TensorRT version it was built with:\n"
        f"`resin-run --engine {plan.name} raw.tif -o enhanced.tif`.\n")
    return f"""# {name}

RESIN restores the axial resolution of volumetric fluorescence microscopy data. Its
generator F, a residual 3D U-Net (features {features}), maps a raw anisotropic volume,
blurred {blur}, to one whose axial resolution approaches the lateral resolution.
Output voxels per input voxel (z, y, x): {_zyx(meta.scale)}.

## Training

Trained self-supervised on the raw volume alone, without ground truth: F is learned
together with a degradation model D under cycle-consistency and adversarial constraints on
lateral and axial maximum-intensity projections, as described in {PAPER}.

- steps: {cfg.get("steps", "?")}; patch size: {data.get("patch_size", "?")}; batch size: {data.get("batch_size", "?")}
- training voxel size: {voxel}
- normalization: the {norm.low_percentile:g}th and {norm.high_percentile:g}th percentiles of the whole volume

## Input and output

One channel; axes batch, channel, z, y, x; {meta.input_dtype}. The input is normalized per
volume as `(x - {lo}) / ({hi} - {lo})`, with the percentiles of the whole volume (the
`scale_range` preprocessing). The output is in the same normalized units: multiply by
`{hi} - {lo}` and add `{lo}` to return to the input's intensities, as resin does.
Every input side must be a multiple of {m}, at least {_zyx(minimum)} voxels (z, y, x).

## Tiles and halo

The receptive field, measured by impulse response, is {_zyx(meta.receptive_field)} voxels
(z, y, x). Run large volumes in overlapping tiles and discard a halo of
{_zyx(meta.halo)} voxels (z, y, x) at every inner tile border: the kept cores then equal
whole-volume inference. Tiles of about {tile} voxels are a reasonable start; larger tiles
waste less on halos where memory allows. Normalize with percentiles of the whole volume,
never per tile.

## Running it with resin

```
pip install 'resin[gpu]'      # or `pip install resin` for the CPU only
resin-run --engine {ONNX_FILE} raw.tif -o enhanced.tif --mip mips/
```

`resin-run` reads the metadata record in the ONNX (a copy is `{METADATA_FILE}`), tiles with
this halo, normalizes with the training percentiles and streams TIFF or (OME-)Zarr volumes of
any size. From Python: `resin.runtime.Enhancer("{ONNX_FILE}").enhance(volume)`. The torch
weights `{TORCH_FILE}` load into `resin.models.generator_from_config(**kwargs)` with the
kwargs given in `rdf.yaml`.
{plan_text}
## Validation

`{TEST_INPUT}`, a synthetic microscopy-like patch of {_zyx(shape)} voxels (already
normalized), and `{TEST_OUTPUT}`, its output from ONNX Runtime on the CPU, let a consumer
check that it reproduces the model. To measure quality on your own data, image a sample at
isotropic resolution (or make one with `resin simulate`), blur or subsample it axially,
enhance it, and compare with `resin eval PRED TRUTH` (RMSE, SSIM, PSNR and the isotropy
ratio, as in the paper).

## License and citation

{LICENSE}. Please cite {PAPER}.
"""


def _check_out_dir(out_dir: Path, inputs: list[Path], overwrite: bool) -> None:
    """The package folder may be new, empty, or (with overwrite) an earlier package only.

    Replacing a folder deletes what is in it, so --overwrite never replaces a folder that
    is not a bioimage.io package (no rdf.yaml) or that holds one of this export's inputs.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a folder; choose another output folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise OutputExistsError(f"{out_dir} already exists and is not empty; pass "
                                "--overwrite to replace it")
    inside = [p for p in inputs if p.resolve().is_relative_to(out_dir)]
    if inside:
        raise UsageError(f"--bioimageio {out_dir} holds {inside[0].name}, an input of this "
                         "export; choose a folder of its own for the package")
    if not (out_dir / "rdf.yaml").is_file():
        raise UsageError(f"--bioimageio {out_dir} is not a bioimage.io package (no rdf.yaml); "
                         "--overwrite only replaces an earlier package: choose a new folder")


def _check_plan(plan: Path, meta: ModelMetadata) -> Path:
    sidecar = plan.with_name(plan.name + ".json")
    if not plan.is_file():
        raise ModelError(f"{plan}: no such TensorRT plan")
    if not sidecar.is_file():
        raise ModelError(f"{plan}: its metadata file {sidecar.name} is missing")
    record = ModelMetadata.from_json(sidecar.read_text(), source=str(sidecar))
    if record.weights_sha256 != meta.weights_sha256:
        raise ModelError(f"{plan} was not built from this model (its weights hash differs)")
    return sidecar


def _onnx_opset(path: Path) -> int:
    import onnx
    from resin.export._onnx import graph_opset

    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelError(f"{path}: keeps its weights in an external data file; export a "
                             "single-file ONNX for a bioimage.io package")
    return graph_opset(model)


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])


def _write_files(folder: Path, checkpoint: Path, onnx_path: Path, plan: Path | None,
                 name: str | None) -> dict[str, Any]:
    """Check the inputs and write every package file but ``rdf.yaml`` into ``folder``."""
    import tifffile
    import torch
    from resin.export._onnx import load_generator, realistic_patch
    from resin.export.metadata import read_onnx_metadata, weights_sha256

    from resin._png import write_png

    meta = read_onnx_metadata(onnx_path)
    if (meta.input_dtype, meta.output_dtype) != ("float32", "float32"):
        raise ModelError(f"{onnx_path} is a {meta.input_dtype} model; bioimage.io tensors have "
                         "no float16, so package the float32 ONNX (export without --fp16)")
    opset = _onnx_opset(onnx_path)
    ckpt, generator = load_generator(checkpoint)
    if getattr(generator, "k", 1) > 1:
        raise ModelError(f"{checkpoint} was trained with --z-step {generator.k}: its network "
                         "runs behind a z interpolation that a bioimage.io package's "
                         "architecture cannot describe yet; use the ONNX model itself")
    if meta.weights_sha256 and meta.weights_sha256 != weights_sha256(generator.state_dict()):
        raise ModelError(f"{onnx_path} was not exported from {checkpoint} (the weights differ)")
    if meta.generator is None:
        raise ModelError(f"{onnx_path}: its metadata has no generator config")
    sidecar = _check_plan(plan, meta) if plan is not None else None
    name = name or _default_name(checkpoint)
    if not _NAME_OK.fullmatch(name):
        raise UsageError(f"package name {name!r}: use 5-128 letters, digits, spaces or _+-()")
    scale = _whole_scale(meta)

    shutil.copyfile(onnx_path, folder / ONNX_FILE)
    state = {k: v.detach().cpu().float().contiguous() for k, v in generator.state_dict().items()}
    torch.save(state, folder / TORCH_FILE)
    (folder / METADATA_FILE).write_text(meta.to_json() + "\n")

    shape = _test_input_shape(meta)
    norm = meta.normalization
    x = realistic_patch(shape, norm.low_percentile, norm.high_percentile)[None, None]
    y = _run_onnx(onnx_path, x)
    expect = (1, 1, *(n * s for n, s in zip(shape, scale, strict=True)))
    if y.shape != expect:
        raise ModelError(f"{onnx_path} returned shape {y.shape} for input {x.shape}; its "
                         f"metadata promises scale {meta.scale}")
    np.save(folder / TEST_INPUT, x)
    np.save(folder / TEST_OUTPUT, y)
    tifffile.imwrite(folder / SAMPLE_INPUT, x[0, 0])
    tifffile.imwrite(folder / SAMPLE_OUTPUT, y[0, 0])
    write_png(folder / COVER, cover_image(x, y, meta.voxel_size))
    (folder / README).write_text(_readme(name, meta, ckpt, shape, input_minimum(meta), plan))

    attachments = [METADATA_FILE]
    for src in (plan, sidecar):
        if src is None:
            continue
        if (folder / src.name).exists():
            raise UsageError(f"{src.name}: a package file has that name; rename the plan")
        shutil.copyfile(src, folder / src.name)
        attachments.append(src.name)
    return {"meta": meta, "ckpt": ckpt, "name": name, "scale": scale, "opset": opset,
            "attachments": attachments, "torch_version": torch.__version__.split("+")[0]}


def _describe(folder: Path, meta: ModelMetadata, ckpt: dict[str, Any], name: str,
              scale: tuple[int, int, int], opset: int, attachments: list[str],
              torch_version: str, authors: Sequence[str] | None = None) -> Any:
    """The bioimage.io ModelDescr of the files in ``folder`` (relative paths, with hashes)."""
    from bioimageio.spec.model import v0_5 as bio

    from resin.config import GeneratorConfig

    def file(source: str) -> bio.FileDescr:
        return bio.FileDescr(source=source, sha256=bio.Sha256(_sha256(folder / source)))

    minimum = input_minimum(meta)
    unit = "micrometer" if meta.voxel_size is not None else None
    in_axes: list[Any] = [bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier("raw")])]
    out_axes: list[Any] = [bio.BatchAxis(),
                           bio.ChannelAxis(channel_names=[bio.Identifier("enhanced")])]
    for i, axis in enumerate("zyx"):
        out_scale = exact_scale(meta.voxel_size[i] / scale[i]) if meta.voxel_size else 1.0
        aid = bio.AxisId(axis)
        in_axes.append(bio.SpaceInputAxis(
            id=aid, unit=unit, scale=out_scale * scale[i],
            size=bio.ParameterizedSize(min=minimum[i], step=meta.size_multiple)))
        ref = bio.SizeReference(tensor_id=bio.TensorId("input"), axis_id=aid)
        halo = meta.halo[i] * scale[i]  # bioimage.io counts the halo in output voxels
        if halo > 0:
            out_axes.append(bio.SpaceOutputAxisWithHalo(id=aid, unit=unit, scale=out_scale,
                                                        size=ref, halo=halo))
        else:
            out_axes.append(bio.SpaceOutputAxis(id=aid, unit=unit, scale=out_scale, size=ref))

    norm = meta.normalization
    scale_range = bio.ScaleRangeDescr(kwargs=bio.ScaleRangeKwargs(
        axes=[bio.AxisId(a) for a in "zyx"], min_percentile=norm.low_percentile,
        max_percentile=norm.high_percentile))
    inputs = [bio.InputTensorDescr(
        id=bio.TensorId("input"), axes=in_axes, description="raw volume, one channel",
        test_tensor=file(TEST_INPUT), sample_tensor=file(SAMPLE_INPUT),
        data=bio.IntervalOrRatioDataDescr(type="float32"), preprocessing=[scale_range])]
    outputs = [bio.OutputTensorDescr(
        id=bio.TensorId("output"), axes=out_axes,
        description="axially enhanced volume, in the normalized units of the input",
        test_tensor=file(TEST_OUTPUT), sample_tensor=file(SAMPLE_OUTPUT),
        data=bio.IntervalOrRatioDataDescr(type="float32"))]

    # every field of the generator config, so the architecture cannot drift from the weights
    kwargs = GeneratorConfig.model_validate(meta.generator).model_dump(mode="json")
    weights = bio.WeightsDescr(
        pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
            source=TORCH_FILE, sha256=bio.Sha256(_sha256(folder / TORCH_FILE)),
            architecture=bio.ArchitectureFromLibraryDescr(
                import_from="resin.models", callable=bio.Identifier("generator_from_config"),
                kwargs=kwargs),
            pytorch_version=bio.Version(torch_version),
            comment="the generator F of the resin checkpoint; needs the resin package"),
        onnx=bio.OnnxWeightsDescr(
            source=ONNX_FILE, sha256=bio.Sha256(_sha256(folder / ONNX_FILE)),
            opset_version=opset, parent="pytorch_state_dict",
            comment="exported by resin export; carries the resin metadata record"))
    cfg = ckpt.get("config", {})
    return bio.ModelDescr(
        name=name,
        description=("RESIN generator: restores axial resolution of a 3D fluorescence "
                     "microscopy volume, learned self-supervised from the raw volume alone."),
        authors=[bio.Author(name=a) for a in (authors or [default_author()])],
        cite=[bio.CiteEntry(text=PAPER, url=bio.HttpUrl(PAPER_URL))],
        license=LICENSE,
        tags=list(TAGS),
        documentation=bio.FileDescr(source=README),
        covers=[bio.FileDescr(source=COVER)],
        attachments=[file(a) for a in attachments],
        inputs=inputs,
        outputs=outputs,
        weights=weights,
        config=bio.Config(bioimageio=bio.BioimageioConfig(
            architecture_type="3D U-Net",
            task="axial resolution enhancement",
            training=bio.TrainingDetails(
                training_batch_size=cfg.get("data", {}).get("batch_size"),
                initial_learning_rate=cfg.get("optim", {}).get("lr_generator"),
                optimizer="Adam",
                training_preprocessing=(f"percentile normalization p{norm.low_percentile:g}"
                                        f" to p{norm.high_percentile:g} per volume")),
        )),
    )


def validate_package(rdf: str | os.PathLike) -> Any:
    """Load and validate a package offline: local files hashed and checked, no URL fetched.

    Returns the validation summary (``.status`` is ``"passed"``, ``"valid-format"`` or
    ``"failed"``).
    """
    from bioimageio.spec import load_description

    return load_description(Path(rdf), perform_io_checks=True, known_files={PAPER_URL: None}
                            ).validation_summary


def write_bioimageio(
    checkpoint: str | os.PathLike,
    onnx_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    plan: str | os.PathLike | None = None,
    name: str | None = None,
    authors: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bioimage.io model package (format 0.5) to ``out_dir``; return its ``rdf.yaml``.

    ``onnx_path`` must have been exported from ``checkpoint`` (the weights hashes are
    compared); ``plan`` (a TensorRT plan with its ``.json`` sidecar) is attached as is.
    The package is written beside ``out_dir``, validated, then renamed into place: a
    failure leaves nothing behind.
    """
    from resin._optional import require

    require("bioimageio.spec", "writing a bioimage.io package", extra="export")
    # resolved: "." has no name to put a staging folder beside
    out_dir, checkpoint, onnx_path = Path(out_dir).resolve(), Path(checkpoint), Path(onnx_path)
    plan_path = Path(plan) if plan is not None else None
    inputs = [checkpoint, onnx_path] + ([plan_path] if plan_path is not None else [])
    _check_out_dir(out_dir, inputs, overwrite)
    make_parent(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.partial")
    old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _write(staging, checkpoint, onnx_path, plan_path, name, authors)
        replace_dir(staging, out_dir, aside=old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    _log.log(f"wrote the bioimage.io package {out_dir}")
    return out_dir / "rdf.yaml"


def _write(folder: Path, checkpoint: Path, onnx_path: Path, plan: Path | None,
           name: str | None, authors: Sequence[str] | None = None) -> None:
    from bioimageio.spec import ValidationContext, save_bioimageio_yaml_only

    files = _write_files(folder, checkpoint, onnx_path, plan, name)
    # hashes are given, so nothing needs reading here; the saved package is checked below
    with ValidationContext(root=folder, perform_io_checks=False, log_warnings=False):
        try:
            descr = _describe(folder, authors=authors, **files)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            reason = " ".join(str(exc).split())[:500]
            raise ModelError(f"could not describe the model for bioimage.io: {reason}") from exc
    save_bioimageio_yaml_only(descr, file=folder / "rdf.yaml")
    summary = validate_package(folder / "rdf.yaml")
    if summary.status == "failed":
        errors = "; ".join(f"{'.'.join(map(str, e.loc))}: {' '.join(e.msg.split())}"
                           for e in summary.errors)
        raise ModelError(f"the bioimage.io package did not validate: {errors[:500]}")
