"""Files → units → canonical tensors, with progress and a list of what failed; in worker processes
(:mod:`deepmcat.parallel`) when the archive is large enough to pay for starting them, and through the disk
cache (:mod:`deepmcat.cache`) when one is given: what it holds is not decoded again."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from deepmcat.cache import RowView, TensorCache, TensorStore, unit_key
from deepmcat.config import PreprocessConfig
from deepmcat.io import ReadError, Unit, read_unit, release_volume, scan
from deepmcat.parallel import ordered_map
from deepmcat.preprocess import canonical
from deepmcat.structure import observed_structure, series_structure


#: decoding and the canonical tensor take ~5 ms a unit on one core of the 2-core machine; starting the fork
#: server and its workers ~0.5 s, which ~200 units repay
PARALLEL_MIN_UNITS = 200
#: units a worker decodes per task (fewer round trips; progress still moves often)
UNITS_PER_TASK = 8


@dataclass
class Collection:
    """Units that loaded, their canonical tensors (n, frames, size, size), and what failed (path, reason)."""

    units: list[Unit]
    #: in memory, or read from the cache's store batch by batch
    tensors: np.ndarray | RowView
    failed: list[tuple[str, str]] = field(default_factory=list)
    n_files: int = 0
    #: each unit's cache key (:func:`deepmcat.cache.unit_key`) when it was read through the cache
    keys: list[str | None] | None = None

    @property
    def acquisitions(self) -> list[str]:
        """Each unit's acquisition as training groups them (:attr:`Unit.stack`), in unit order."""
        return [u.stack for u in self.units]

    @property
    def structure(self) -> np.ndarray:
        """Each unit's series structure (:func:`deepmcat.structure.series_structure`), in unit order."""
        return series_structure(self.units)

    @property
    def observed_structure(self) -> np.ndarray:
        """The same as inference compares it: what these units cannot know of their examination unknown
        (:func:`deepmcat.structure.observed_structure`)."""
        return observed_structure(self.units)


def _load_one(unit: Unit, cfg: PreprocessConfig) -> np.ndarray | str:
    try:
        return canonical(read_unit(unit, cfg.frames), cfg)
    except (ReadError, ValueError) as exc:
        return str(exc)
    except Exception as exc:  # a decoder's own failure on one odd file must not end a whole run
        return f"{unit.files[0]}: cannot read ({type(exc).__name__}: {exc})"


def _load_batch(job: tuple[list[Unit], PreprocessConfig]) -> list[np.ndarray | str]:
    """Canonical tensors (or reasons) of consecutive units; a worker process's task."""
    units, cfg = job
    try:
        return [_load_one(unit, cfg) for unit in units]
    finally:
        release_volume()


def _batches(units: Sequence[Unit], size: int) -> list[list[Unit]]:
    """Consecutive units in batches of about ``size``; the slice positions of one volume file stay in one
    batch, so that it is decoded once."""
    batches: list[list[Unit]] = []
    for unit in units:
        if not batches or (len(batches[-1]) >= size and unit.files[0] != batches[-1][-1].files[0]):
            batches.append([])
        batches[-1].append(unit)
    return batches


def _decode(units: Sequence[Unit], cfg: PreprocessConfig, progress: bool, desc: str, workers: int | None
            ) -> Iterator[np.ndarray | str]:
    """The canonical tensor of each unit, or the reason it cannot be decoded, in unit order."""
    jobs = [(batch, cfg) for batch in _batches(units, UNITS_PER_TASK)]
    for results in ordered_map(_load_batch, jobs, workers, min_items=PARALLEL_MIN_UNITS // UNITS_PER_TASK,
                               desc=desc, progress=progress, count=lambda job: len(job[0])):
        yield from results


def load_units(units: Sequence[Unit], cfg: PreprocessConfig, progress: bool = True,
               desc: str = "reading units", workers: int | None = 1, store: TensorStore | None = None
               ) -> Collection:
    """Canonical tensors of ``units``, decoded by ``workers`` processes (None or 0: one per core) when there
    are enough units to pay for starting them; units that cannot be decoded are dropped into ``failed``.
    With a ``store``, units it holds are read from it, the others decoded into it."""
    if store is not None:
        return _load_through(store, units, cfg, progress, desc, workers)
    tensors = np.zeros((len(units), cfg.channels, cfg.size, cfg.size), np.float32)
    ok = np.zeros(len(units), bool)
    failed = []
    for i, result in enumerate(_decode(units, cfg, progress, desc, workers)):
        if isinstance(result, str):
            failed.append((units[i].files[0], result))
        else:
            tensors[i], ok[i] = result, True
    kept = [unit for unit, good in zip(units, ok) if good]
    return Collection(kept, tensors if ok.all() else tensors[ok], failed)


#: decoded tensors written to the store at once (one transaction; ~13 MB at the default settings)
APPEND_UNITS = 100


def _load_through(store: TensorStore, units: Sequence[Unit], cfg: PreprocessConfig, progress: bool, desc: str,
                  workers: int | None) -> Collection:
    """:func:`load_units` through a store: look every unit up, decode the missing ones and append them."""
    keys = [unit_key(u) for u in units]
    rows = store.lookup(keys)
    missing = np.flatnonzero(rows < 0)
    failed = []
    pending: list[int] = []
    tensors: list[np.ndarray] = []

    def flush() -> None:
        rows[pending] = store.append([keys[i] for i in pending], tensors)
        pending.clear()
        tensors.clear()

    for i, result in zip(missing, _decode([units[i] for i in missing], cfg, progress, desc, workers)):
        if isinstance(result, str):
            failed.append((units[i].files[0], result))
        elif keys[i] is None:  # a file vanished after decoding: keep the tensor out of the cache
            failed.append((units[i].files[0], "file changed while it was read"))
        else:
            pending.append(int(i))
            tensors.append(result)
            if len(pending) >= APPEND_UNITS:
                flush()
    flush()
    kept = np.flatnonzero(rows >= 0)
    return Collection([units[i] for i in kept], RowView(store, rows[kept]), failed, keys=[keys[i] for i in kept])


def load_collection(paths, cfg: PreprocessConfig, progress: bool = True, workers: int | None = 1,
                    cache: TensorCache | None = None) -> Collection:
    """Scan files/folders, group into units and load them, with ``workers`` processes (None or 0: one per
    core), through ``cache`` when given. Raises ValueError when nothing is usable."""
    report = scan(paths, workers, progress, cache.headers if cache else None)
    if not report.units:
        reasons = "; ".join(f"{os.path.basename(p)}: {r}" for p, r in report.skipped[:3])
        raise ValueError(f"no readable image series found in {paths} ({report.n_files} files"
                         + (f"; e.g. {reasons})" if reasons else ")"))
    store = cache.store(cfg) if cache else None
    collection = load_units(report.units, cfg, progress, workers=workers, store=store)
    collection.failed = report.skipped + collection.failed
    collection.n_files = report.n_files
    if not collection.units:
        raise ValueError(f"none of the {len(report.units)} units under {paths} could be decoded: "
                         f"{collection.failed[0][1]}")
    return collection
