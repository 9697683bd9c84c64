"""Receptive field and halo of a generator, measured by impulse response.

Large impulses (both signs) are pushed into the network at several positions, on
several random backgrounds, in float64 and eval mode; every output voxel whose value
changes is inside the receptive field of that input voxel. A U-Net with max-pooling
has a position-dependent footprint (the pooling grid is fixed), so the impulse is put
at every phase of the pooling grid and the widest reach is kept. The measured reach is
a property of the trained weights, not only of the architecture, which is why it is
measured rather than computed; the probe grows until no change touches its border.

That reach is exact but generous: far from the impulse its response is orders of
magnitude below anything visible. The *tolerant* halo is the smallest context whose
truncation changes the output by at most a stated fraction of the output range. It is
measured directly: a volume is run whole, then cut (on the pooling grid) at one face
along each axis, and the cut run is compared with the whole one at every distance from
the cut. The volumes are sparse impulses at full range (beads, the worst case for a
linear reach) and simulated tubes and nuclei normalized as training normalizes them.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from resin import _log
from resin._atomic import atomic_write
from resin._cache import cache_dir, file_sha256
from resin.errors import ModelError
from resin.metadata import grid_aligned_halo

#: a change smaller than this fraction of the largest change is float64 round-off
_RELATIVE_FLOOR = 1e-12
#: bump when the measurement can find another halo, so older cache entries are remeasured
MEASUREMENT_VERSION = 5
#: default largest change (fraction of the output range) a tolerant halo may cause
HALO_TOLERANCE = 1e-4

Triple = tuple[int, int, int]


class Halos(NamedTuple):
    """What a generator's tiles need: its exact reach and the tolerant halo."""

    receptive_field: Triple
    halo: Triple
    halo_tolerant: Triple
    halo_tolerance: float


def _probe_net(generator: Any) -> Any:
    """A float64, eval-mode CPU copy of ``generator`` without its output floor (the floor
    clamps pointwise: it can hide a change, never carry one further)."""
    import torch

    net = copy.deepcopy(generator).to(device="cpu", dtype=torch.float64).eval()
    config = getattr(net, "config", None)
    if config is not None and getattr(config, "output_floor", None) is not None:
        net.config = config.model_copy(update={"output_floor": None})
    return net


def _phases(size_multiple: int, max_positions: int) -> list[tuple[int, int, int]]:
    """Offsets within one pooling cell: the diagonal phases first, then mixed ones."""
    m = size_multiple
    diagonal = [(r, r, r) for r in range(m)]
    mixed: list[tuple[int, int, int]] = [
        (a, b, c) for a, b, c in itertools.product(range(m), repeat=3) if (a, b, c) not in diagonal]
    # deterministic spread over the remaining phases
    step = max(1, len(mixed) // max(1, max_positions - len(diagonal)))
    phases = diagonal + mixed[::step]
    return phases[:max(max_positions, len(diagonal))]


def reach_bound(features: Sequence[int]) -> int:
    """Upper bound (voxels) of the resin U-Net's reach from its architecture alone.

    Per level ``i`` (scale ``2**i``): two 3x3x3 convolutions on the way down; pooling,
    trilinear upsampling (one coarse voxel), the up-convolution and two convolutions on
    the way up. Used only to size the impulse probe, never as the halo itself.
    """
    levels = len(features)
    down = sum(2 * 2**i for i in range(levels))
    up = sum(2**i + 2 ** (i + 1) + 2**i + 2 * 2**i for i in range(levels - 1))
    return down + up


def measure_halo(
    generator: Any,
    size_multiple: int,
    *,
    max_positions: int = 8,
    backgrounds: int = 2,
    amplitude: float = 8.0,
    start_side: int | None = None,
    max_side: int = 320,
    seed: int = 0,
    probe: str = "thin",
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Return ``(receptive_field, halo)`` per axis (z, y, x) in voxels.

    ``halo`` is the farthest distance (input voxels, either side) at which an input impulse
    changes the output, maximised over impulse positions; ``receptive_field`` is the
    widest extent of one impulse's footprint (output voxels). A tile whose kept centre is ``halo`` voxels
    from every cut edge (and whose origin is a multiple of ``size_multiple``) reproduces
    full-volume inference there. ``probe="full"`` measures in one cubic probe instead of
    one thin probe per axis (slower; the tests check both agree).
    """
    import torch

    if size_multiple < 1:
        raise ModelError(f"size_multiple must be >= 1, got {size_multiple}")
    m = size_multiple
    net = _probe_net(generator)
    if start_side is None:
        features = getattr(getattr(generator, "config", None), "features", None)
        bound = reach_bound(features) if features else 4 * m
        # room for the reach on both sides of the impulse plus its phase offsets
        start_side = 2 * bound + 2 * m + 2
    side = -(-start_side // m) * m
    if probe not in ("thin", "full"):
        raise ValueError(f"probe must be 'thin' or 'full', got {probe!r}")
    width = max(8, 4 * m)
    gen = torch.Generator().manual_seed(seed)
    phases = _phases(m, max_positions)
    while True:
        lo = [0, 0, 0]
        hi = [0, 0, 0]
        extent = [1, 1, 1]
        touched = False
        # thin: one long probe per axis (the reach along an axis is realised along the
        # impulse's own column), so the cost is linear in the reach, not cubic
        probes = [(side,) * 3] if probe == "full" else [
            tuple(side if b == a else width for b in range(3)) for a in range(3)
        ]
        for long_axis, shape in enumerate(probes):
            # (by position, not by shape: with width == side every thin probe is a cube)
            axes = range(3) if probe == "full" else [long_axis]
            centre = [(s // 2) // m * m for s in shape]
            for _ in range(backgrounds):
                base = torch.rand((1, 1, *shape), generator=gen, dtype=torch.float64)
                with torch.no_grad():
                    ref = net(base)
                    # output voxels per input voxel (a --z-step model gives K planes per
                    # plane; output index o lies at input position o / K)
                    scale = [int(ref.shape[2 + b]) // shape[b] for b in range(3)]
                    # one impulse per pass: a batched conv may order its sums per sample
                    for phase in phases:
                        q = [c + p for c, p in zip(centre, phase, strict=True)]
                        for sign in (1.0, -1.0):
                            x = base.clone()
                            x[0, 0, q[0], q[1], q[2]] += sign * amplitude
                            change = (net(x) - ref).abs()[0, 0]
                            peak = float(change.max())
                            if peak == 0.0:
                                continue
                            idx = torch.nonzero(change > peak * _RELATIVE_FLOOR)
                            first = idx.min(dim=0).values.tolist()
                            last = idx.max(dim=0).values.tolist()
                            for a in axes:
                                s_a = scale[a]
                                # input-voxel distances, rounded up
                                lo[a] = max(lo[a], -(-(q[a] * s_a - first[a]) // s_a))
                                hi[a] = max(hi[a], -(-(last[a] - q[a] * s_a) // s_a))
                                extent[a] = max(extent[a], last[a] - first[a] + 1)
                                if first[a] == 0 or last[a] == change.shape[a] - 1:
                                    touched = True
        if not touched:
            break
        if side >= max_side:
            raise ModelError(
                f"the generator's receptive field is wider than a {max_side}-voxel probe; "
                "it cannot be tiled"
            )
        side = min(max_side, side * 2)
    halo = (max(lo[0], hi[0]), max(lo[1], hi[1]), max(lo[2], hi[2]))
    return (extent[0], extent[1], extent[2]), halo


def tolerance_volumes(side: int, percentiles: tuple[float, float], seed: int = 0,
                      ) -> list[tuple[str, Any]]:
    """The volumes the tolerant halo is measured on, normalized to about [0, 1]: sparse
    full-range impulses, simulated tubes and nuclei normalized at ``percentiles``, and
    both again with their outer quarter replaced by their faces repeated outwards, as the
    runtime pads a volume (:func:`resin.runtime.planner.face_indices`): a structure
    repeated along a line reaches further through the network than texture does."""
    import numpy as np

    from resin.data import percentile_levels
    from resin.simulate import simulate

    rng = np.random.default_rng(seed)
    impulses = np.zeros((side,) * 3)
    n = max(1, side**3 // 2000)
    impulses[tuple(rng.integers(0, side, size=(3, n)))] = 1.0
    volumes = [("impulses", impulses)]
    c = side // 4
    for kind in ("tubes", "nuclei"):
        raw = simulate((side,) * 3, seed=seed, kind=kind, z_step=1).raw.astype(np.float64)
        levels = percentile_levels(raw.ravel(), *percentiles) or (0.0, 1.0)
        vol = (raw - levels[0]) / (levels[1] - levels[0])
        volumes.append((kind, vol))
        inner = vol[c:side - c, c:side - c, c:side - c]
        volumes.append((f"{kind}, faces repeated", np.pad(inner, c, mode="edge")))
    return volumes


def measure_tolerant_halo(
    generator: Any,
    size_multiple: int,
    halo: Sequence[int],
    *,
    tolerance: float = HALO_TOLERANCE,
    percentiles: tuple[float, float] = (0.5, 99.9),
    seed: int = 0,
) -> Triple:
    """The smallest halo per axis (z, y, x) whose truncation changes the output by at most
    ``tolerance`` of the output range, on every volume of :func:`tolerance_volumes`.

    ``halo`` is the exact halo (:func:`measure_halo`); the answer is at most that, and
    differs from it by a multiple of ``size_multiple`` (:func:`resin.metadata.
    grid_aligned_halo`: tiles keep the pooling grid of one-tile inference). Per
    volume and axis: one whole run, and two runs cut on the pooling grid, one keeping only
    the part after a cut and one only the part before; the largest change at each distance
    from the cut (over the voxels at least ``halo`` from every other face) gives the
    distance from which on every change is within the tolerance.
    """
    import numpy as np
    import torch

    if not 0.0 < tolerance < 1.0:
        raise ModelError(f"halo tolerance must be in (0, 1), got {tolerance}")
    m = int(size_multiple)
    h = [int(v) for v in halo]
    big = max(h)
    if big == 0:
        return (0, 0, 0)
    cut = -(-big // m) * m
    # the far end stays >= halo from every compared voxel; 16 at least for the simulations
    side = -(-max(cut + 2 * big + 1, 16) // m) * m
    # float32, as the runtime runs: its round-off (~1e-7 of the range) is far below any
    # sensible tolerance, and it halves the time of the float64 impulse probe
    net = _probe_net(generator).float()
    worst = [np.zeros(v + 1) for v in h]  # worst change at distance d from a cut, per axis
    for _name, volume in tolerance_volumes(side, percentiles, seed):
        x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
        with torch.no_grad():
            whole = net(x)[0, 0].numpy()
            span = float(whole.max() - whole.min()) or 1.0
            scale = [whole.shape[a] // side for a in range(3)]
            for a in range(3):
                # other axes: only voxels whose own context is complete
                keep = [slice(big * scale[b], (side - big) * scale[b]) for b in range(3)]
                for after in (True, False):
                    lo, hi = (cut, side) if after else (0, side - cut)
                    region = [slice(None)] * 3
                    region[a] = slice(lo, hi)
                    part = net(x[(slice(None), slice(None), *region)])[0, 0].numpy()
                    s = scale[a]
                    for d in range(h[a] + 1):
                        # input voxel at distance d (voxels of context on the cut side)
                        i = lo + d if after else hi - 1 - d
                        sel_whole = list(keep)
                        sel_part = list(keep)
                        sel_whole[a] = slice(i * s, (i + 1) * s)
                        sel_part[a] = slice((i - lo) * s, (i - lo + 1) * s)
                        change = np.abs(part[tuple(sel_part)] - whole[tuple(sel_whole)]).max()
                        worst[a][d] = max(worst[a][d], float(change) / span)
    tolerant = []
    for a in range(3):
        over = np.nonzero(worst[a] > tolerance)[0]
        tolerant.append(int(over.max()) + 1 if over.size else 0)
        _log.debug(f"axis {'zyx'[a]}: change by context (fraction of the output range) "
                   + " ".join(f"{d}:{v:.1e}" for d, v in enumerate(worst[a])))
    return grid_aligned_halo(tolerant, h, m)


def measure_halos(generator: Any, size_multiple: int,
                  tolerance: float = HALO_TOLERANCE,
                  percentiles: tuple[float, float] = (0.5, 99.9)) -> Halos:
    """:func:`measure_halo` and :func:`measure_tolerant_halo` together."""
    receptive_field, halo = measure_halo(generator, size_multiple)
    tolerant = measure_tolerant_halo(generator, size_multiple, halo, tolerance=tolerance,
                                     percentiles=percentiles)
    return Halos(receptive_field, halo, tolerant, float(tolerance))


def cached_halo(checkpoint: str | os.PathLike, generator: Any, size_multiple: int,
                tolerance: float = HALO_TOLERANCE,
                percentiles: tuple[float, float] = (0.5, 99.9)) -> Halos:
    """:func:`measure_halos` of ``checkpoint``'s generator, remembered in the user cache.

    The entry is keyed by the checkpoint file's SHA-256 (``<cache>/halo/<sha256>.json``), so
    a changed checkpoint is measured afresh; an entry that is unreadable, corrupt, from
    another measurement version or for another tolerance is measured again and rewritten
    (atomically). A cache that cannot be written only costs the next start another
    measurement.
    """
    path = cache_dir("halo", f"{file_sha256(checkpoint)}.json")
    found = _read_entry(path, size_multiple, tolerance)
    if found is not None:
        _log.debug(f"halo {found.halo} (tolerant {found.halo_tolerant}) of "
                   f"{os.fspath(checkpoint)} from the cache ({path})")
        return found
    halos = measure_halos(generator, size_multiple, tolerance, percentiles)
    entry = {"version": MEASUREMENT_VERSION, "size_multiple": int(size_multiple),
             "receptive_field": list(halos.receptive_field), "halo": list(halos.halo),
             "halo_tolerant": list(halos.halo_tolerant),
             "halo_tolerance": halos.halo_tolerance}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(entry) + "\n")
    except OSError as exc:
        _log.debug(f"halo cache entry {path} not written ({exc})")
    return halos


def _read_entry(path: Any, size_multiple: int, tolerance: float) -> Halos | None:
    """A cache entry's halos, or None if it is missing or not sound."""
    try:
        entry = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        _log.debug(f"halo cache entry {path} is unreadable; measuring again")
        return None

    def triple(value: Any) -> Triple | None:
        ok = (isinstance(value, list) and len(value) == 3
              and all(type(v) is int and v >= 0 for v in value))
        return (value[0], value[1], value[2]) if ok else None

    if not isinstance(entry, dict) or entry.get("version") != MEASUREMENT_VERSION \
            or entry.get("size_multiple") != size_multiple \
            or entry.get("halo_tolerance") != float(tolerance):
        _log.debug(f"halo cache entry {path} is not from this measurement; measuring again")
        return None
    receptive_field, halo = triple(entry.get("receptive_field")), triple(entry.get("halo"))
    tolerant = triple(entry.get("halo_tolerant"))
    if receptive_field is None or halo is None or tolerant is None:
        _log.debug(f"halo cache entry {path} is corrupt; measuring again")
        return None
    return Halos(receptive_field, halo, tolerant, float(tolerance))
