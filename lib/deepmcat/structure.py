"""What a series' structure says about its category, beside its pixels: how many slices its stack has, how
many frames (or images) each slice holds, and which way its scan plane faces in the patient. A short-axis cine
stack (10 slices x 25 frames), a single long-axis cine (1 x 25), a static late-enhancement stack (1 volume of 5
slices), a T1 mapping series (1 x 9) and a three-plane scout (3 x 1) differ here even where their canonical
8 x 64 x 64 tensors look alike; and a 2-chamber, a 4-chamber and a short-axis view are planes of different
orientation in the patient's coordinates (ImageOrientationPatient, a NIfTI affine), which the canonical tensor
cannot know. Then whether the examination holds another image type acquired alike (``paired``,
:mod:`deepmcat.stacks`): flow magnitude has its phase beside it, a cine of the vessel has not. Last, whether
the unit is static (``static``): its images are slices of a volume or a single image, not times. A
late-enhancement stack and a T1 mapping series (inversion-recovery images of one slice) look alike to the
network; their acquisitions do not. The scanner
writes these, unlike the SeriesDescription. They join the final clustering (and inference) as weighted
coordinates next to the embedding; the network never sees them.

A series read without the rest of its examination (one upload, one datastore image, one series fetched from a
PACS) cannot know two of them: whether its one slice belongs to a stack stored a series per slice, and whether
its phase image lies in another series. Inference leaves those out of its distances (:func:`observed_structure`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from deepmcat.clustering import group_means
from deepmcat.units import Unit

#: columns of :func:`series_structure`: the two counts, the scan plane's axis, the pair flag, the static flag
COUNTS = 2
PLANE = 6
PAIRED = COUNTS + PLANE
STATIC = PAIRED + 1


def plane_axis(normal: Sequence[float] | None) -> np.ndarray:
    """(6,) the scan plane's normal n as the upper triangle of n nᵀ (off-diagonal terms times √2): blind to
    the normal's sign (the order slices are stored in), of norm 1, and two planes at angle θ lie 2 sin²θ
    apart (squared). Zeros when the orientation is unknown: equally far from every plane."""
    n = np.asarray(normal if normal is not None else (), np.float64)
    length = float(np.linalg.norm(n)) if n.shape == (3,) else 0.0
    if not length > 1e-6 or not np.isfinite(length):
        return np.zeros(PLANE, np.float64)
    x, y, z = n / length
    r2 = np.sqrt(2.0)
    return np.array([x * x, y * y, z * z, r2 * x * y, r2 * x * z, r2 * y * z])


def series_structure(units: Sequence[Unit]) -> np.ndarray:
    """(n, 10) float32: log2 of each unit's stack size and depth, its scan plane's axis (:func:`plane_axis` of
    the reader's ``normal``), its pair flag (``paired``, 0 where the scan did not record it) and its static
    flag (:func:`is_static`). The stack
    size is what the scan recorded (``stack_units``: counted over the whole scan, so one series of a stack
    stored as a series per slice still knows its siblings), else counted among ``units``."""
    counts = Counter(u.stack for u in units)
    rows = [(u.meta.get("stack_units") or counts[u.stack], depth(u)) for u in units]
    sizes = np.log2(np.maximum(np.asarray(rows, np.float64).reshape(-1, COUNTS), 1.0))
    planes = np.asarray([plane_axis(u.meta.get("normal")) for u in units], np.float64).reshape(-1, PLANE)
    paired = np.asarray([float(u.meta.get("paired") or 0) for u in units], np.float64).reshape(-1, 1)
    static = np.asarray([float(is_static(u)) for u in units], np.float64).reshape(-1, 1)
    return np.hstack([sizes, planes, paired, static]).astype(np.float32)


def depth(unit: Unit) -> int:
    """The unit's images: frames of its slice, slices of its volume (as its reader recorded), else files."""
    return unit.meta.get("depth") or len(unit.files)


def is_static(unit: Unit) -> bool:
    """Whether a unit's images are slices of one volume (its reader says ``static``: a DICOM series of one
    image per position, a 3-D NIfTI file) or a single image, rather than times of one slice."""
    return bool(unit.meta.get("static")) or depth(unit) == 1


def observed_structure(units: Sequence[Unit]) -> np.ndarray:
    """:func:`series_structure` as inference compares it: for a unit whose examination had only this one series
    in the scan that read it (``study_series``, :func:`deepmcat.stacks.merge_stacks`; else counted among
    ``units``), a stack of one slice and an unset pair flag are unknown (NaN), not "one slice" and "unpaired":
    its siblings, or its phase, may lie in series that were not read with it. Measured on the torso
    family: read series by series, 97 of 124 flow magnitude files and 572 of 581 short-axis files (a series per
    slice) changed cluster when these counted as known. :func:`deepmcat.clustering.squared_distances` leaves NaN
    coordinates out."""
    raw = series_structure(units)
    series_of: dict[str, set] = defaultdict(set)
    for u in units:
        series_of[u.study].add(u.series_uid)
    alone = np.array([(u.meta.get("study_series") or len(series_of[u.study])) == 1 for u in units], bool)
    raw[alone & (raw[:, 0] == 0), 0] = np.nan
    raw[alone & (raw[:, PAIRED] == 0), PAIRED] = np.nan
    return raw


@dataclass
class StructureScale:
    """How the structure coordinates join the embedding: the counts standardised (over the training
    acquisitions) and weighted, the plane axis weighted as it is (its distances mean angles already)."""

    mean: np.ndarray
    std: np.ndarray
    weight: float
    #: weight of the plane axis; 0 leaves it out (models published before it existed)
    plane_weight: float = 0.0
    #: frames per slice are counted up to this many; 0 counts them all (models published before it existed)
    depth_cap: int = 0
    #: weight of the pair flag (0 or 1, not standardised); 0 leaves it out (models published before it existed)
    pair_weight: float = 0.0
    #: weight of the static flag (0 or 1); 0 leaves it out (models published before it existed)
    static_weight: float = 0.0

    @classmethod
    def fit(cls, points: np.ndarray, weight: float, plane_weight: float = 0.0, depth_cap: int = 0,
            pair_weight: float = 0.0, static_weight: float = 0.0) -> "StructureScale":
        """From one row per acquisition (:func:`series_structure`'s columns); a count constant over them gets
        unit scale (and adds nothing)."""
        counts = _capped(np.asarray(points, np.float64)[:, :COUNTS], depth_cap)
        std = counts.std(axis=0)
        return cls(counts.mean(axis=0), np.where(std > 1e-6, std, 1.0), float(weight), float(plane_weight),
                   int(depth_cap), float(pair_weight), float(static_weight))

    @property
    def dims(self) -> int:
        return (COUNTS + (PLANE if self.plane_weight > 0 else 0) + (1 if self.pair_weight > 0 else 0)
                + (1 if self.static_weight > 0 else 0))

    def __call__(self, raw: np.ndarray | None, n: int) -> np.ndarray:
        """The weighted coordinates of ``n`` units; zeros (the training mean, and no plane) when ``raw`` is
        None."""
        if raw is None:
            return np.zeros((n, self.dims), np.float32)
        raw = np.asarray(raw, np.float64).reshape(n, -1)
        parts = [self.weight * (_capped(raw[:, :COUNTS], self.depth_cap) - self.mean) / self.std]
        if self.plane_weight > 0:
            parts.append(self.plane_weight * raw[:, COUNTS : COUNTS + PLANE])
        if self.pair_weight > 0:
            parts.append(self.pair_weight * raw[:, PAIRED : PAIRED + 1])
        if self.static_weight > 0:
            parts.append(self.static_weight * raw[:, STATIC : STATIC + 1])
        return np.hstack(parts).astype(np.float32)

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "weight": self.weight,
                "plane_weight": self.plane_weight, "depth_cap": self.depth_cap, "pair_weight": self.pair_weight,
                "static_weight": self.static_weight}

    @classmethod
    def from_state(cls, state: dict | None) -> "StructureScale | None":
        if not state:
            return None
        return cls(np.asarray(state["mean"], np.float64), np.asarray(state["std"], np.float64), float(state["weight"]),
                   float(state.get("plane_weight", 0.0)), int(state.get("depth_cap", 0)),
                   float(state.get("pair_weight", 0.0)), float(state.get("static_weight", 0.0)))


def _capped(counts: np.ndarray, depth_cap: int) -> np.ndarray:
    """The (n, 2) log2 counts with the depth at most log2(``depth_cap``) (0: as they are)."""
    if depth_cap <= 0:
        return counts
    return np.column_stack([counts[:, 0], np.minimum(counts[:, 1], np.log2(depth_cap))])


def fit_structure(raw: np.ndarray | None, acquisitions: np.ndarray, weight: float, plane_weight: float = 0.0,
                  depth_cap: int = 0, pair_weight: float = 0.0, static_weight: float = 0.0
                  ) -> tuple[StructureScale | None, np.ndarray | None]:
    """The scale fitted on one row per acquisition (integer ids 0..A-1: the mean of its units' rows, as
    k-means sees acquisitions), and every unit's scaled coordinates; (None, None) when there is no structure
    or every weight leaves it out."""
    if raw is None or max(weight, plane_weight, pair_weight, static_weight) <= 0:
        return None, None
    scale = StructureScale.fit(group_means(raw, acquisitions), weight, plane_weight, depth_cap, pair_weight,
                               static_weight)
    return scale, scale(raw, len(raw))
