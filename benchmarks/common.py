"""What every benchmark shares: where data, models and results live, the machine a figure was measured on,
where results are saved, and this process's memory."""

from __future__ import annotations

import json
import os
import resource
import shutil
from pathlib import Path

from deepmcat.provenance import machine

__all__ = ["DATA", "HERE", "METRICS", "REAL", "RESULTS", "machine", "rss_mb", "save"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE / ".data"
REAL = HERE.parents[1] / "shared" / "data" / "real"
METRICS = ("purity", "nmi", "ari", "acc", "worst_recall")


def save(name: str, result: dict) -> Path:
    """Write ``results/<name>.json`` (and a copy into ``$OUT`` when set, where a lent device collects it)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=1))
    if os.environ.get("OUT"):
        shutil.copy(path, Path(os.environ["OUT"]) / path.name)
    return path


def rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MB, from /proc: unlike getrusage's ru_maxrss,
    which a child inherits from the process that forked it, these belong to this process image alone."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
