"""Files → units → canonical tensors, with progress and a list of what failed.

Serial on purpose: decoding and resampling take ~15 ms a unit on one core, and worker processes (spawned,
since forking a process whose torch threads run can deadlock) cost more to start than they save here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tqdm import tqdm

from deepmcat.config import PreprocessConfig
from deepmcat.io import ReadError, Unit, read_unit, release_volume, scan
from deepmcat.preprocess import canonical


@dataclass
class Collection:
    """Units that loaded, their canonical tensors (n, frames, size, size), and what failed (path, reason)."""

    units: list[Unit]
    tensors: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)
    n_files: int = 0

    @property
    def acquisitions(self) -> list[str]:
        """Each unit's acquisition key (series and image type), in unit order."""
        return [u.acquisition for u in self.units]


def _load_one(unit: Unit, cfg: PreprocessConfig) -> np.ndarray | str:
    try:
        return canonical(read_unit(unit, cfg.frames), cfg)
    except (ReadError, ValueError) as exc:
        return str(exc)
    except Exception as exc:  # a decoder's own failure on one odd file must not end a whole run
        return f"{unit.files[0]}: cannot read ({type(exc).__name__}: {exc})"


def load_units(units: Sequence[Unit], cfg: PreprocessConfig, progress: bool = True,
               desc: str = "reading units") -> Collection:
    """Canonical tensors of ``units``; units that cannot be decoded are dropped into ``failed``."""
    try:
        results = [_load_one(unit, cfg) for unit in tqdm(units, desc=desc, disable=not progress)]
    finally:
        release_volume()
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


def load_collection(paths, cfg: PreprocessConfig, progress: bool = True) -> Collection:
    """Scan files/folders, group into units and load them. Raises ValueError when nothing is usable."""
    report = scan(paths)
    if not report.units:
        reasons = "; ".join(f"{os.path.basename(p)}: {r}" for p, r in report.skipped[:3])
        raise ValueError(f"no readable image series found in {paths} ({report.n_files} files"
                         + (f"; e.g. {reasons})" if reasons else ")"))
    collection = load_units(report.units, cfg, progress)
    collection.failed = report.skipped + collection.failed
    collection.n_files = report.n_files
    if not collection.units:
        raise ValueError(f"none of the {len(report.units)} units under {paths} could be decoded: "
                         f"{collection.failed[0][1]}")
    return collection
