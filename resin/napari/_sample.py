"""Sample data (File > Open Sample > resin): the volume ``resin demo`` simulates."""

from __future__ import annotations

from typing import Any

_SEED = 0


def _simulate() -> Any:
    from resin.runtime.demo import demo_simulation

    return demo_simulation(seed=_SEED)


def _display_range(volume: Any) -> tuple[float, float]:
    # the tubes fill a small share of the voxels: the extremes would show them dark
    import numpy as np

    low, high = np.percentile(volume, (0.5, 99.95))
    return float(low), float(high)


def demo_raw() -> list[tuple[Any, dict[str, Any], str]]:
    """The raw, axially blurred volume: what the models enhance."""
    sim = _simulate()
    return [(sim.raw, {"name": "demo raw", "scale": (1.0, 1.0, 1.0),
                       "contrast_limits": _display_range(sim.raw),
                       "metadata": {"resin": {"simulated": "resin demo", "seed": _SEED}}},
             "image")]


def demo_truth() -> list[tuple[Any, dict[str, Any], str]]:
    """The same volume without blur or noise, to compare an enhancement with."""
    sim = _simulate()
    return [(sim.truth, {"name": "demo truth", "scale": (1.0, 1.0, 1.0),
                         "contrast_limits": _display_range(sim.truth)}, "image")]
