"""Stacks stored as one series per slice. Many scanners (Siemens' ``CINE_segmented_SAX_b1 … b13``, as in UK
Biobank) acquire a short-axis stack breath-hold by breath-hold and store every slice as a series of its
own. Series of one examination acquired alike — same image type, orientation, matrix, pixel spacing and
frame count — are then one acquisition for training: their slices are contrastive positives of each other
and one point for k-means, as a stack stored in one series is. Outputs still vote and score per stored series.
Every unit also records how many units its stack has (``stack_units``, :mod:`deepmcat.structure`), so that a
series later read alone still knows its stack's size, and whether its examination holds an acquisition of
another image type acquired alike (``paired``): flow magnitude beside its phase (or velocity) image, which
a cine of the same vessel lacks although it looks the same.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from typing import Sequence

from deepmcat.units import Unit


def merge_stacks(units: Sequence[Unit]) -> int:
    """Mark the units of series acquired alike in one examination with one ``stack`` (in their metadata) and
    record each unit's stack size; returns how many stacks of several series were found. Units without a
    recorded shape (3-D volumes, NIfTI whose sidecar names no image type) keep their acquisition as their
    stack."""
    series_of: dict[tuple, set[str]] = defaultdict(set)
    for unit in units:
        if unit.meta.get("shape"):
            series_of[_signature(unit)].add(unit.series_uid)
    merged = {sig for sig, series in series_of.items() if len(series) > 1}
    for unit in units:
        if unit.meta.get("shape") and _signature(unit) in merged:
            unit.meta["stack"] = f"stack-{zlib.crc32(repr(_signature(unit)).encode()):08x}"
    sizes = Counter(unit.stack for unit in units)
    for unit in units:
        unit.meta["stack_units"] = sizes[unit.stack]
    mark_pairs(units)
    return len(merged)


def mark_pairs(units: Sequence[Unit]) -> None:
    """Record in each unit's metadata whether its examination holds units of another image type with the same
    orientation, matrix, pixel spacing and frame count (``paired``: 1 or 0; 0 without a recorded shape)."""
    types: dict[tuple, set[str]] = defaultdict(set)
    for unit in units:
        if unit.meta.get("shape"):
            types[unit.study, unit.meta["shape"]].add(unit.meta.get("image_type", ""))
    for unit in units:
        shape = unit.meta.get("shape")
        unit.meta["paired"] = int(bool(shape) and len(types[unit.study, shape]) > 1)


def _signature(unit: Unit) -> tuple:
    return unit.study, unit.meta.get("image_type", ""), unit.meta["shape"]
