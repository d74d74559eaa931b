"""Stacks stored as one series per slice. Many scanners (Siemens' ``CINE_segmented_SAX_b1 … b13``, as in UK
Biobank) acquire a short-axis stack breath-hold by breath-hold and store every slice as a series of its
own. Series of one examination acquired alike — same image type, orientation, matrix, pixel spacing and
frame count — are then one acquisition for training: their slices are contrastive positives of each other
and one point for k-means, as a stack stored in one series is. Outputs still vote and score per stored series.
Every unit also records how many units its stack has (``stack_units``, :mod:`deepmcat.structure`), so that a
series later read alone still knows its stack's size, and whether its examination holds an acquisition of
another image type acquired alike (``paired``: same matrix, spacing, frame count and scan plane): flow
magnitude beside its phase (or velocity) image, which a cine of the same vessel lacks although it looks the
same.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from deepmcat.units import Unit


def merge_stacks(units: Sequence[Unit]) -> int:
    """Mark the units of series acquired alike in one examination with one ``stack`` (in their metadata) and
    record each unit's stack size; returns how many stacks of several series were found. Units without a
    recorded shape (3-D volumes, several-slice NIfTI whose sidecar names no image type) keep their
    acquisition as their stack; one-slice NIfTI time series without an image type are merged only where no
    two of them lie at one slice position (magnitude and phase files do)."""
    series_of: dict[tuple, dict[str, float | None]] = defaultdict(dict)
    for unit in units:
        if unit.meta.get("shape"):
            series_of[_signature(unit)][unit.series_uid] = unit.meta.get("position")
    merged = {sig for sig, series in series_of.items() if len(series) > 1 and _distinct_positions(series)}
    for unit in units:
        if unit.meta.get("shape") and _signature(unit) in merged:
            unit.meta["stack"] = f"stack-{zlib.crc32(repr(_signature(unit)).encode()):08x}"
    sizes = Counter(unit.stack for unit in units)
    series_in_study: dict[str, set] = defaultdict(set)
    for unit in units:
        series_in_study[unit.study].add(unit.series_uid)
    for unit in units:
        unit.meta["stack_units"] = sizes[unit.stack]
        unit.meta["study_series"] = len(series_in_study[unit.study])
    mark_pairs(units)
    return len(merged)


#: scan planes closer than this (degrees) count as one orientation for a pair: magnitude and phase share one
#: to the digit, but a scanner (or a generator) may round it differently per series
PAIR_ANGLE = 5.0


def same_plane(normal: Sequence[float], other: Sequence[float]) -> bool:
    """Whether two scan planes lie within :data:`PAIR_ANGLE` of each other (the normals' signs ignored)."""
    return abs(float(np.dot(normal, other))) >= np.cos(np.deg2rad(PAIR_ANGLE))


def mark_pairs(units: Sequence[Unit]) -> None:
    """Record in each unit's metadata whether its examination holds units of another image type with the same
    matrix, pixel spacing and frame count and a scan plane within :data:`PAIR_ANGLE` (``paired``: 1 or 0; 0
    without a recorded grid and plane)."""
    alike: dict[tuple, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for unit in units:
        if unit.meta.get("grid") and unit.meta.get("normal"):
            alike[unit.study, unit.meta["grid"]].append((unit.meta.get("image_type", ""),
                                                         np.asarray(unit.meta["normal"])))
    for unit in units:
        grid, normal = unit.meta.get("grid"), unit.meta.get("normal")
        others = alike.get((unit.study, grid), []) if grid and normal else []
        kind = unit.meta.get("image_type", "")
        unit.meta["paired"] = int(any(t != kind and same_plane(n, normal) for t, n in others))


#: slices of a stack lie at least this far apart along their normal (mm)
SAME_POSITION = 0.5


def _distinct_positions(series: dict[str, float | None]) -> bool:
    """Whether the series (each with its slice position when its image type is unknown: a volume file
    without a sidecar) can be one stack: no two of them at one position, where a magnitude file and its
    phase file would lie."""
    positions = sorted(p for p in series.values() if p is not None)
    return not any(b - a < SAME_POSITION for a, b in zip(positions, positions[1:]))


def _signature(unit: Unit) -> tuple:
    return unit.study, unit.meta.get("image_type", ""), unit.meta["shape"]
