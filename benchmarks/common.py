"""What every benchmark shares: where data, models and results live, the machine a figure was measured on,
where results are saved, and this process's memory."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
from pathlib import Path
from typing import Callable

from deepmcat.provenance import machine

__all__ = ["DATA", "HERE", "METRICS", "REAL", "RESULTS", "cached", "generated", "machine", "rss_mb", "save",
           "source_stamp"]

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE / ".data"
REAL = HERE.parents[1] / "shared" / "data" / "real"
METRICS = ("purity", "nmi", "ari", "acc", "worst_recall")
LIB = HERE.parent / "lib" / "deepmcat"
#: the library sources that write any generated data (a model depends on every source)
GENERATOR = ("generate.py", "phantoms.py", "sidecars.py")
STAMP = ".source-stamp"


def source_stamp(*parts: str) -> str:
    """A hash of the library sources that make a cached product (``parts`` under lib/deepmcat; none: all of
    them), so that data or a model made by older code is not taken for today's."""
    digest = hashlib.sha256()
    for part in parts or (".",):
        path = LIB / part
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(LIB).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def cached(folder: Path, source: str, product: str, make: Callable[[Path], object]) -> Path:
    """``folder`` as ``make`` writes it (complete once ``product`` exists in it), made once per version
    ``source`` of the sources that make it: a stale or half-made folder is removed and made anew."""
    marker = folder / STAMP
    if (folder / product).is_file() and marker.is_file() and marker.read_text() == source:
        return folder
    if folder.exists():
        print(f"{folder.name}: made by other code (or unfinished), made anew", flush=True)
        shutil.rmtree(folder)
    make(folder)
    marker.write_text(source)
    return folder


def generated(folder: Path, make: Callable[[Path], object], family: str = "classic") -> Path:
    """A generated set (complete once its labels.csv exists), made once per version of the generator of its
    ``family``: another family's file (a new one) leaves it standing."""
    own = () if family == "classic" else ("families/files.py", "families/torso.py", f"families/{family}.py")
    return cached(folder, source_stamp(*GENERATOR, *own), "labels.csv", make)


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
