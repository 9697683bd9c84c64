"""How much memory new work may use, for the layers that plan by it (the runtime's tile
budget, the simulator's shape check)."""

from __future__ import annotations

import os


def available_memory() -> int | None:
    """Bytes of memory available to new work (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None
