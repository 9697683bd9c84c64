"""A ground-truth-free report on what a model did to a volume, for users without a truth.

Two questions a microscopist can check on their own data:

- **Did the resolution become more isotropic?** The spectral cut-off frequency per axis
  (:func:`resin.metrics.cutoff_frequencies`) before and after, and their ratios per axis
  pair (lateral / axial; 1 = as sharp along z as across).
- **Is the output still consistent with the input?** The model's own degradation D maps
  the output back to what the microscope should have recorded; the residual
  ``|D(F(y)) - y|`` (in units of the input's normalized range, 0 = its 0.5th percentile,
  1 = its 99.9th) is small where the output explains the data, and large where the model
  invented or removed structure. Its maximum along z is written as a picture
  (:func:`write_report`) beside the input's, so a user sees *where*. ``resin train``
  measures it at its end; ``resin-run --report`` when D was exported beside F
  (:mod:`resin.consistency`).

Also the relative change ``sum |F(y) - y| / sum |y|``: a model that changed the volume by
under ~2 % has learned (close to) the identity. A mean residual above
:data:`INCONSISTENT_RESIDUAL` is reported as a warning: the model does not fit the volume.

And **did the model remove structure?** Restoring along the PSF's axis leaves the MIP along
that axis (the lateral view) as bright or brighter where the input has structure; a
structure that runs along the axis looks like blur, and a model can take it away.
:func:`lateral_lost` is the share of the input's bright MIP pixels the output dims below
half; above :data:`LOST_LATERAL` it is a warning.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from resin._png import write_png

if TYPE_CHECKING:
    from resin.io import VolumeReader

#: below this relative change a model is (close to) the identity
IDENTITY_CHANGE = 0.02
#: above this mean |D(F(y)) - y| (units of the input's normalized range) the output does not
#: explain the input. Models on the data they were trained on measured 0.0007-0.011; the
#: bundled tubes model on dense nuclei (an output 60x too bright in places) 1.06.
INCONSISTENT_RESIDUAL = 0.05
#: a model that closes less than this share of the raw block's anisotropy (the summed |log|
#: of its y/z and x/z cut-off ratios) has hardly restored anything, however much it changed
#: the volume (two quick runs on the noisy tubes that did restore closed 45 % and 77 %)
LEAST_CLOSED = 0.25
#: below this mean lateral / axial cut-off ratio the output is much sharper along z than
#: across: every recorded model that ended there was worse than its input or over-sharpened
#: (0.44-0.63: a model splitting tubes along z, nuclei at signal-to-noise 8 and 13), every
#: one that restored read 0.71 or more (docs/benchmarks.md, "Harder acquisitions")
OVERSHARP = 0.65
#: above this share of the input's bright MIP pixels (along the PSF axis) dimmed below half
#: in the output, the model removed structure: a quick model that lost a tube running along
#: z read 0.010; 39 other model files on 10 simulated volumes (some of them identical
#: retrainings; models that restored, failed to, or over-sharpened) and 6 outputs on a real
#: stack read 0 (docs/benchmarks.md, "Run to run")
LOST_LATERAL = 0.003
#: the MIPs' pixels that count as structure: brighter than this share of the range ...
LOST_BRIGHT = 0.3
#: ... after a mean over this many pixels a side (noise alone rarely gets there)
LOST_SMOOTH = 3
AXES = ("z", "y", "x")


@dataclass(frozen=True)
class Report:
    """What :func:`make_report` measured; all fields are plain numbers (JSON-ready)."""

    cutoff_before: dict[str, float]
    """Spectral cut-off per axis of the input, cycles/voxel."""
    cutoff_after: dict[str, float]
    """The same for the output."""
    change: float
    """sum |F(y) - y| / sum |y| over the block."""
    residual: float | None = None
    """mean |D(F(y)) - y| in units of the normalized range; None without D."""
    residual_p99: float | None = None
    """99th percentile of |D(F(y)) - y|, same units."""
    notes: list[str] = field(default_factory=list)
    """Warnings for the user (identity model, anisotropy not reduced)."""
    consistency: dict | None = None
    """Where the residual was measured (``resin-run --report``: D's file, the output region,
    D's halo, the units); None without D or for the end of training."""
    retry: bool = False
    """A warning that another seed may fix (structure lost, restored little): what
    ``resin train --retries`` acts on."""
    lateral_lost: float | None = None
    """Share of the input's bright pixels in its MIP along the PSF axis that are under half
    as bright in the output's (:func:`lateral_lost`); None when the input has none."""
    input_snr: float | None = None
    """Signal-to-noise of the input at its bright level (normalized 1 over the noise sigma
    there, :meth:`resin.train.noise.NoiseModel.bright_snr`); None when not measured (the
    end of training, whose start logs it) or noise-free."""

    def with_consistency(self, residual: float | None, residual_p99: float | None,
                         record: dict | None = None) -> Report:
        """This report with the consistency residual measured (None: not measured), and a
        warning when its mean is above :data:`INCONSISTENT_RESIDUAL`."""
        notes = list(self.notes)
        if residual is not None and residual > INCONSISTENT_RESIDUAL:
            notes.append(
                f"the output does not explain the input: D(F(y)) differs from it by "
                f"{residual:.3f} of its range on average (above {INCONSISTENT_RESIDUAL}; models "
                "on their own training data measured 0.0007-0.011). The model was probably trained "
                "on other structures or another PSF: do not trust this output; train a model "
                "on this volume (resin train)")
        return replace(self, residual=residual, residual_p99=residual_p99, notes=notes,
                       consistency=record)

    def ratios(self, which: str) -> dict[str, float]:
        """Lateral over axial cut-off per axis pair ('y/z', 'x/z') and 'y/x', of 'before'/'after'."""
        c = self.cutoff_before if which == "before" else self.cutoff_after
        return {"y/z": c["y"] / c["z"], "x/z": c["x"] / c["z"], "y/x": c["y"] / c["x"]}

    def lines(self) -> list[str]:
        """The report as short log lines."""
        b, a = self.ratios("before"), self.ratios("after")
        out = ["anisotropy (lateral / axial spectral cut-off, 1 = isotropic): "
               + ", ".join(f"{k} {b[k]:.2f} -> {a[k]:.2f}" for k in ("y/z", "x/z", "y/x")),
               f"the model changed the volume by {100 * self.change:.1f} % (sum |F(y) - y| / "
               "sum |y|)"]
        if self.residual is not None:
            out.append(f"consistency |D(F(y)) - y|: mean {self.residual:.4f}, 99th percentile "
                       f"{self.residual_p99:.4f} of the input's range (0 = fully consistent)")
        if self.lateral_lost is not None:
            out.append(f"structure kept: {100 * (1 - self.lateral_lost):.1f} % of the input's "
                       "bright MIP pixels along the PSF axis are at least half as bright in "
                       "the output")
        if self.input_snr is not None:
            out.append(f"input signal-to-noise about {self.input_snr:.0f} at its bright level")
        return out + [f"warning: {n}" for n in self.notes]

    def with_input_noise(self, raw: np.ndarray) -> Report:
        """This report with the normalized input block's signal-to-noise, and a warning
        when it is under :data:`resin.train.noise.NOISY_SNR`."""
        from resin.train.noise import estimate_noise

        noise = estimate_noise([raw])
        limited = noise.limited("the input", "bright level")
        notes = list(self.notes) + ([] if limited is None else [limited])
        return replace(self, input_snr=noise.bright_snr(), notes=notes)

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` atomically (:func:`resin._atomic.atomic_write`)."""
        from resin._atomic import atomic_write

        return atomic_write(path, self.to_json())

    def to_json(self) -> str:
        d = asdict(self)
        d["ratios_before"] = self.ratios("before")
        d["ratios_after"] = self.ratios("after")
        return json.dumps(d, indent=2)


def _cutoffs(volume: np.ndarray) -> dict[str, float]:
    from resin.metrics import cutoff_frequencies

    return dict(zip(AXES, (float(c) for c in cutoff_frequencies(volume)), strict=True))


def make_report(raw: np.ndarray, enhanced: np.ndarray,
                degraded: np.ndarray | None = None, angle_deg: float = 0.0) -> Report:
    """Report on normalized ``raw`` (y), ``enhanced`` (F(y)) and optionally ``degraded``
    (D(F(y))), three (Z, Y, X) arrays of one shape, each side at least 16 voxels;
    ``angle_deg``: the PSF's axis, tilted from z towards x (the model's)."""
    y = np.asarray(raw, dtype=np.float64)
    x = np.asarray(enhanced, dtype=np.float64)
    if y.shape != x.shape or (degraded is not None and degraded.shape != y.shape):
        raise ValueError("raw, enhanced and degraded must have one shape")
    before, after = _cutoffs(y), _cutoffs(x)
    change = float(np.abs(x - y).sum() / max(np.abs(y).sum(), 1e-12))
    residual = p99 = None
    if degraded is not None:
        residual, p99 = residual_stats(y, degraded)
    notes = []
    retry = False
    if change < IDENTITY_CHANGE:
        notes.append(f"the model changed the volume by less than {100 * IDENTITY_CHANGE:.0f} % "
                     "of its intensity: it is (close to) the identity. Check that the volume is "
                     "anisotropic along z (or pass --angle), that --z-step matches the z "
                     "spacing, and try more steps or degrader.init_sigma in --config")
    rb = {k: v for k, v in zip(("y/z", "x/z"), (before["y"] / before["z"],
                                                before["x"] / before["z"]), strict=True)}
    ra = {k: v for k, v in zip(("y/z", "x/z"), (after["y"] / after["z"],
                                                after["x"] / after["z"]), strict=True)}
    gap_b = sum(abs(math.log(v)) for v in rb.values())
    gap_a = sum(abs(math.log(v)) for v in ra.values())
    lateral_axial = (0.5 * (rb["y/z"] + rb["x/z"]), 0.5 * (ra["y/z"] + ra["x/z"]))
    if change >= IDENTITY_CHANGE and lateral_axial[1] < min(OVERSHARP, lateral_axial[0]):
        notes.append(f"the output is much sharper along z than across (lateral / axial cut-off "
                     f"{lateral_axial[1]:.2f}; 1 = isotropic): the model may be adding axial "
                     "detail the sample does not have. Compare x-z views with the input; "
                     "models that ended like this on simulations were worse than their input "
                     "or over-sharpened")
    lost = lateral_lost(y, x, angle_deg)
    if lost is not None and lost > LOST_LATERAL:
        along = "z" if not angle_deg else f"the PSF axis, {angle_deg:g} deg from z"
        notes.append(f"the output lost structure the input shows: {100 * lost:.1f} % of the "
                     f"bright pixels of the input's MIP along {along} are under half as bright "
                     "in the output's. A structure running along that axis looks like blur, "
                     "and this model took it away: compare the MIPs, and train again with "
                     "another --seed")
        retry = True
    if change >= IDENTITY_CHANGE and gap_a >= gap_b:
        notes.append("the output is not more isotropic than the input by its spectra")
        retry = True
    elif change >= IDENTITY_CHANGE and gap_b > 0.1 and gap_a > (1.0 - LEAST_CLOSED) * gap_b:
        notes.append(f"the output is hardly more isotropic than the input by its spectra (it "
                     f"closed {100 * (1 - gap_a / gap_b):.0f} % of the anisotropy): the model "
                     "restored little. Train again (another --seed, or more steps) and compare")
        retry = True
    return Report(before, after, change, notes=notes, retry=retry,
                  lateral_lost=lost).with_consistency(residual, p99)


def lateral_lost(raw: np.ndarray, enhanced: np.ndarray, angle_deg: float = 0.0) -> float | None:
    """Share of the pixels of ``raw``'s MIP along the PSF axis (:func:`resin.kernels.
    slanted_mip`; along z at 0 degrees), averaged over :data:`LOST_SMOOTH` pixels a side,
    brighter than :data:`LOST_BRIGHT` (normalized arrays: 1 = the input's 99.9th
    percentile) where ``enhanced``'s MIP, averaged alike, is under half of it; None when no
    pixel is that bright."""
    from scipy.ndimage import uniform_filter

    def mip(v: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(v, dtype=np.float32)
        if not angle_deg:
            return np.asarray(v.max(axis=0), dtype=np.float64)
        from resin.kernels import slanted_mip

        return np.asarray(slanted_mip(v, angle_deg), dtype=np.float64)

    before = uniform_filter(mip(raw), LOST_SMOOTH, mode="nearest")
    after = uniform_filter(mip(enhanced), LOST_SMOOTH, mode="nearest")
    bright = before > LOST_BRIGHT
    if not bright.any():
        return None
    return float(np.mean(after[bright] < 0.5 * before[bright]))


def residual_stats(raw: np.ndarray, degraded: np.ndarray) -> tuple[float, float]:
    """(mean, 99th percentile) of ``|degraded - raw|``."""
    r = np.abs(np.asarray(degraded, dtype=np.float64) - np.asarray(raw, dtype=np.float64))
    return float(r.mean()), float(np.percentile(r, 99))


def report_image(raw: np.ndarray, residual: np.ndarray, gap: int = 4,
                 enhanced: np.ndarray | None = None) -> np.ndarray:
    """uint8 picture: MIP along z of the input | (of the output, ``enhanced``) | of
    |D(F(y)) - y|.

    The input is scaled to its 0.1-99.9 percentiles; the output on the same scale (a
    structure of the input missing there is one the model removed); the residual to the
    same range (so a residual as bright as the structures means the output does not explain
    them).
    """
    m_raw = np.asarray(raw, dtype=np.float32).max(axis=0)
    lo, hi = np.percentile(m_raw, [0.1, 99.9])
    scale = 255.0 / max(float(hi - lo), 1e-12)
    panels = [np.clip((m_raw - lo) * scale, 0, 255).astype(np.uint8)]
    if enhanced is not None:
        m_out = np.asarray(enhanced, dtype=np.float32).max(axis=0)
        panels.append(np.clip((m_out - lo) * scale, 0, 255).astype(np.uint8))
    m_res = np.asarray(residual, dtype=np.float32).max(axis=0)
    panels.append(np.clip(m_res * scale, 0, 255).astype(np.uint8))
    sep = np.zeros((m_raw.shape[0], gap), np.uint8)
    out = [panels[0]]
    for panel in panels[1:]:
        out += [sep, panel]
    return np.concatenate(out, axis=1)


def write_report(path_stem: str | os.PathLike, report: Report, raw: np.ndarray,
                 degraded: np.ndarray | None, enhanced: np.ndarray | None = None) -> list[Path]:
    """``STEM.report.json`` and, with ``degraded``, ``STEM.report.png``
    (:func:`report_image`, with the output's MIP when ``enhanced`` is given); the paths."""
    stem = str(path_stem)
    out = [report.save(f"{stem}.report.json")]
    if degraded is not None:
        residual = np.abs(np.asarray(degraded) - np.asarray(raw))
        out.append(write_png(f"{stem}.report.png",
                             report_image(raw, residual, enhanced=enhanced)))
    return out


def report_path(output: str | os.PathLike) -> Path:
    """Where ``resin-run --report`` writes: ``OUTPUT.report.json`` beside the output."""
    return Path(f"{os.fspath(output).rstrip('/')}.report.json")


def sample_regions(in_shape: tuple[int, ...], out_shape: tuple[int, ...], side: int = 128
                   ) -> tuple[tuple[slice, slice, slice], tuple[slice, slice, slice]]:
    """The report's sample: a centred block of at most ``side`` voxels per axis of the
    input, and the same region of the output (scaled where the model upsamples)."""
    scale = [o / i for o, i in zip(out_shape, in_shape, strict=True)]
    size = [min(side, s) for s in in_shape]
    start = [(s - n) // 2 for s, n in zip(in_shape, size, strict=True)]
    r_in = [slice(a, a + n) for a, n in zip(start, size, strict=True)]
    r_out = [slice(round(a * k), round(a * k) + round(n * k))
             for a, n, k in zip(start, size, scale, strict=True)]
    return (r_in[0], r_in[1], r_in[2]), (r_out[0], r_out[1], r_out[2])


def report_on_readers(src: VolumeReader, dst: VolumeReader, side: int = 128) -> Report:
    """The spectral part of the report on open input/output readers, on
    :func:`sample_regions`' blocks, both normalized by the input block's 0.5 / 99.9
    percentiles; :func:`lateral_lost` along the PSF axis the output's attributes record.
    The consistency residual needs D: :mod:`resin.consistency` adds it."""
    r_in, r_out = sample_regions(src.shape, dst.shape, side)
    raw = np.asarray(src.read(r_in), dtype=np.float64)
    out = dst.read(r_out)
    lo, hi = np.percentile(raw, [0.5, 99.9])
    span = max(float(hi - lo), 1e-12)
    y = (raw - lo) / span
    x = (np.asarray(out, dtype=np.float64) - lo) / span
    recorded = y  # the noise is measured on the planes as recorded, not interpolated ones
    if x.shape != y.shape:  # an upsampling model: compare like with like on the output grid
        from scipy.ndimage import zoom

        y = zoom(y, [a / b for a, b in zip(x.shape, y.shape, strict=True)], order=1)
    try:  # the model's PSF axis, as the output records it
        angle = float((getattr(dst, "attrs", None) or {}).get("axial_angle_deg") or 0.0)
    except (TypeError, ValueError):
        angle = 0.0
    if not math.isfinite(angle):
        angle = 0.0
    return make_report(y, x, angle_deg=angle).with_input_noise(recorded)
