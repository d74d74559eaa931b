"""Files → units → canonical tensors, in parallel, with progress and a list of what failed."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tqdm import tqdm

from deepmcat.config import PreprocessConfig
from deepmcat.io import ReadError, Unit, read_unit, scan
from deepmcat.preprocess import canonical


@dataclass
class Collection:
    """Units that loaded, their canonical tensors (n, frames, size, size), and what failed (path, reason)."""

    units: list[Unit]
    tensors: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)
    n_files: int = 0


#: below this many units, starting worker processes costs more than it saves
PARALLEL_MIN_UNITS = 200


def _load_one(args: tuple[Unit, PreprocessConfig]) -> np.ndarray | str:
    unit, cfg = args
    try:
        return canonical(read_unit(unit), cfg)
    except (ReadError, ValueError) as exc:
        return str(exc)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def load_units(units: Sequence[Unit], cfg: PreprocessConfig, workers: int | None = None, progress: bool = True,
               desc: str = "reading units") -> Collection:
    """Canonical tensors of ``units``; units that cannot be decoded are dropped into ``failed``."""
    workers = default_workers() if workers is None else workers
    jobs = [(u, cfg) for u in units]
    if workers > 1 and len(jobs) >= PARALLEL_MIN_UNITS:
        # spawn, not fork: forking a process whose torch/OpenMP threads already run can deadlock
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(tqdm(pool.map(_load_one, jobs, chunksize=4), total=len(jobs), desc=desc,
                                disable=not progress))
    else:
        results = [_load_one(j) for j in tqdm(jobs, desc=desc, disable=not progress)]
    kept, tensors, failed = [], [], []
    for unit, result in zip(units, results):
        if isinstance(result, str):
            failed.append((unit.files[0], result))
        else:
            kept.append(unit)
            tensors.append(result)
    shape = (0, cfg.frames, cfg.size, cfg.size)
    array = np.stack(tensors) if tensors else np.zeros(shape, np.float32)
    return Collection(kept, array, failed)


def load_collection(paths, cfg: PreprocessConfig, workers: int | None = None, progress: bool = True) -> Collection:
    """Scan files/folders, group into units and load them. Raises ValueError when nothing is usable."""
    report = scan(paths)
    if not report.units:
        reasons = "; ".join(f"{os.path.basename(p)}: {r}" for p, r in report.skipped[:3])
        raise ValueError(f"no readable image series found in {paths} ({report.n_files} files"
                         + (f"; e.g. {reasons})" if reasons else ")"))
    collection = load_units(report.units, cfg, workers, progress)
    collection.failed = report.skipped + collection.failed
    collection.n_files = report.n_files
    if not collection.units:
        raise ValueError(f"none of the {len(report.units)} units under {paths} could be decoded: "
                         f"{collection.failed[0][1]}")
    return collection
