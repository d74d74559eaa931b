"""How unlike every learned category a unit is, and where "unknown" begins.

The score is a unit's mean squared distance to its nearest training units in the embedding clusters are
assigned in (PCA, L2, mixed with its acquisition's, and the series-structure coordinates: a stack of a shape
no training category has is a sign too — without them a left-out category's series ranked no better than
chance on the design families), the structure coordinates weighed ``structure_scale`` times as much as in
the clustering (2: left-out categories ranked better and package images caught more on all three design
families; benchmarks/README.md, "Which score says unknown"). The threshold is a percentile of the same score for training units measured
against the training units of *other* examinations: a new examination's series of a known category lie
farther from the training units than the training units lie from their own examination's, so a threshold
read off the training units themselves calls many of them unknown (benchmarks/README.md, "Which score says
unknown").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import faiss
import numpy as np

from deepmcat.clustering import squared_distances

#: percentiles 0, 1, ..., 100 are stored; a threshold in between is interpolated
PERCENTILES = np.arange(101)
#: embeddings with unknown coordinates scored at a time, each against every reference point (20,000 points:
#: ~80 MB of distances)
PARTIAL_BATCH = 1024


@dataclass
class NoveltyReference:
    """Training units' embeddings (a sample) and the calibrated score table of a published model."""

    #: (n, d) float32 embeddings of (a sample of) the training units
    points: np.ndarray
    #: the score is the mean squared distance to this many nearest points
    neighbours: int
    #: the score of training units against the units of other examinations at percentiles 0, 1, ..., 100
    percentiles: np.ndarray
    #: the embedding's columns beyond the first ``content_dims`` (the series structure) are multiplied by
    #: ``structure_scale`` before distances are taken (:attr:`points` are stored so); 0 dims: none are
    content_dims: int = 0
    structure_scale: float = 1.0

    def scores(self, embedded: np.ndarray) -> np.ndarray:
        """(n,) novelty scores of embeddings (higher: less like any training unit)."""
        if not len(embedded):
            return np.zeros(0)
        x = _weigh_structure(embedded, self.content_dims, self.structure_scale)
        partial = np.isnan(x).any(axis=1)  # coordinates a series read alone cannot know: searched without them
        scores = np.empty(len(x), np.float64)
        if not partial.all():
            scores[~partial] = self._index.search(x[~partial], self.k)[0].mean(axis=1)
        rows = np.flatnonzero(partial)
        for start in range(0, len(rows), PARTIAL_BATCH):
            chunk = rows[start : start + PARTIAL_BATCH]
            d2 = squared_distances(x[chunk], self.points)
            scores[chunk] = np.partition(d2, self.k - 1, axis=1)[:, : self.k].mean(axis=1)
        return scores

    def threshold(self, percentile: float) -> float:
        return float(np.interp(percentile, PERCENTILES, self.percentiles))

    @property
    def k(self) -> int:
        return max(1, min(self.neighbours, len(self.points)))

    @cached_property
    def _index(self) -> faiss.IndexFlatL2:
        """The points in a faiss index, made once (every answer the server gives searches it)."""
        index = faiss.IndexFlatL2(self.points.shape[1])
        index.add(self.points)
        return index

    def state(self) -> dict:
        return {"points": self.points, "neighbours": self.neighbours, "percentiles": self.percentiles,
                "content_dims": self.content_dims, "structure_scale": self.structure_scale}

    @classmethod
    def from_state(cls, state: dict | None) -> "NoveltyReference | None":
        """A published reference; those published before the structure scale weigh the structure as the
        clustering does."""
        if state is None:
            return None
        return cls(np.ascontiguousarray(state["points"], np.float32), int(state["neighbours"]),
                   np.asarray(state["percentiles"], np.float64), int(state.get("content_dims", 0)),
                   float(state.get("structure_scale", 1.0)))


def _weigh_structure(embedded: np.ndarray, content_dims: int, scale: float) -> np.ndarray:
    """Embeddings as the score measures them: the columns beyond the first ``content_dims`` (the series
    structure) multiplied by ``scale``."""
    x = np.array(embedded, np.float32)
    if content_dims and scale != 1.0:
        x[:, content_dims:] *= scale
    return x


def fit_reference(embedded: np.ndarray, groups: np.ndarray, neighbours: int, max_points: int,
                  seed: int = 0, content_dims: int = 0, structure_scale: float = 1.0) -> NoveltyReference:
    """The reference of training units' embeddings ``embedded``: at most ``max_points`` of them
    (drawn at random), each scored against the sampled units of the other ``groups`` (examinations; pass
    acquisitions when there is one examination) to calibrate the threshold. Columns beyond the first
    ``content_dims`` (the series structure) weigh ``structure_scale`` times as much."""
    if neighbours < 1 or max_points < 1:
        raise ValueError(f"novelty needs at least one neighbour and one point, not {neighbours} and {max_points}")
    if not structure_scale > 0:
        raise ValueError(f"the novelty structure scale must be positive, not {structure_scale}")
    groups = np.asarray(groups)
    if len(embedded) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(embedded), max_points, replace=False))
        embedded, groups = embedded[keep], groups[keep]
    reference = NoveltyReference(_weigh_structure(embedded, content_dims, structure_scale), neighbours,
                                 np.zeros(len(PERCENTILES)), int(content_dims), float(structure_scale))
    scores = _scores_against_other_groups(reference, groups)
    reference.percentiles = np.percentile(scores, PERCENTILES) if len(scores) else np.full(len(PERCENTILES), np.inf)
    return reference


#: groups up to this size are scored in one search that asks for this many more neighbours and drops the
#: group's own; larger ones each get a search that excludes them (slower: no BLAS)
BATCHED_GROUP = 512


def _scores_against_other_groups(reference: NoveltyReference, groups: np.ndarray) -> np.ndarray:
    """Each point's score with the points of its own group left out (none where no other group has
    enough points to score against)."""
    index = reference._index
    ids = np.unique(groups, return_inverse=True)[1].reshape(-1)
    sizes = np.bincount(ids)
    out = []
    small = np.flatnonzero(sizes[ids] <= BATCHED_GROUP)
    if len(small):
        reach = min(len(ids), reference.k + int(sizes[ids[small]].max()))
        distances, neighbours = index.search(reference.points[small], reach)
        for row, point in enumerate(small):
            others = distances[row][(neighbours[row] >= 0) & (ids[np.maximum(neighbours[row], 0)] != ids[point])]
            if len(others):
                out.append(others[:reference.k].mean())
    for group in np.flatnonzero(sizes > BATCHED_GROUP):
        members = np.flatnonzero(ids == group)
        if len(members) == len(ids):
            continue
        chosen = faiss.IDSelectorBatch(members.astype(np.int64))
        params = faiss.SearchParameters(sel=faiss.IDSelectorNot(chosen))
        distances, _ = index.search(reference.points[members], min(reference.k, len(ids) - len(members)),
                                    params=params)
        out.extend(distances.mean(axis=1))
    return np.asarray(out, np.float64)
