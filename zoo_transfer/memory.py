"""How much memory is free: decides what the data cache and feature cache keep in RAM."""

from __future__ import annotations

import os


def available_memory() -> int | None:
    """Bytes available to new allocations (`MemAvailable`), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
