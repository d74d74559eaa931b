"""What a series' structure says about its category, beside its pixels: how many slices its stack has and how
many frames (or images) each slice holds. A short-axis cine stack (10 slices x 25 frames), a single long-axis
cine (1 x 25), a static late-enhancement stack (1 volume of 5 slices), a T1 mapping series (1 x 9) and a
three-plane scout (3 x 1) differ here even where their canonical 8 x 64 x 64 tensors look alike, and the
scanner writes these numbers, unlike the SeriesDescription. They join the final clustering (and inference)
as two standardised, weighted coordinates next to the embedding; the network never sees them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from deepmcat.clustering import group_means
from deepmcat.units import Unit

def series_structure(units: Sequence[Unit]) -> np.ndarray:
    """(n, 2) float32: log2 of each unit's stack size and depth. The stack size is what the scan recorded
    (``stack_units``: counted over the whole scan, so one series of a stack stored as a series per slice
    still knows its siblings), else counted among ``units``."""
    counts = Counter(u.stack for u in units)
    rows = [(u.meta.get("stack_units") or counts[u.stack], u.meta.get("depth") or len(u.files)) for u in units]
    return np.log2(np.maximum(np.asarray(rows, np.float64).reshape(-1, 2), 1.0)).astype(np.float32)


@dataclass
class StructureScale:
    """Standardisation (over the training acquisitions) and weight of the structure coordinates."""

    mean: np.ndarray
    std: np.ndarray
    weight: float

    @classmethod
    def fit(cls, points: np.ndarray, weight: float) -> "StructureScale":
        """From one row per acquisition; a coordinate constant over them gets unit scale (and adds nothing)."""
        std = points.std(axis=0)
        return cls(points.mean(axis=0), np.where(std > 1e-6, std, 1.0), float(weight))

    def __call__(self, raw: np.ndarray | None, n: int) -> np.ndarray:
        """The weighted coordinates of ``n`` units; zeros (the training mean) when ``raw`` is None."""
        if raw is None:
            return np.zeros((n, len(self.mean)), np.float32)
        return (self.weight * (np.asarray(raw, np.float64) - self.mean) / self.std).astype(np.float32)

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "weight": self.weight}

    @classmethod
    def from_state(cls, state: dict | None) -> "StructureScale | None":
        if not state:
            return None
        return cls(np.asarray(state["mean"], np.float64), np.asarray(state["std"], np.float64), float(state["weight"]))


def fit_structure(raw: np.ndarray, acquisitions: np.ndarray, weight: float) -> tuple[StructureScale, np.ndarray]:
    """The scale fitted on one row per acquisition (integer ids 0..A-1: the mean of its units' rows, as
    k-means sees acquisitions), and every unit's scaled coordinates."""
    scale = StructureScale.fit(group_means(raw, acquisitions), weight)
    return scale, scale(raw, len(raw))
