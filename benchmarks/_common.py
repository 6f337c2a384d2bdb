"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import os


def load_note() -> str:
    """A note on how busy the machine was, from the 1-minute load average against the core count.

    Benchmarks record it beside their timings: on a machine busier than its core count, wall-clock
    timings are inflated and noisy; process CPU time is less affected.
    """
    load1 = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if load1 > 0.75 * cores:
        return (f"other processes were running (1-min load average {load1:.1f} on {cores} cores): "
                "wall-clock timings are inflated and noisy")
    return f"quiet machine (1-min load average {load1:.1f} on {cores} cores at start)"
