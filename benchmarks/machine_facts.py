"""What a benchmark ran on, shared by the scripts in this folder (imported as a sibling module)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def busy_cpus(seconds: float = 1.0) -> float | None:
    """CPUs kept busy by other work while this process sleeps (from /proc/stat): anything
    well above 0 makes every timing of this run suspect."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round((1 - (idle1 - idle0) / max(1, total1 - total0)) * (os.cpu_count() or 1), 2)
