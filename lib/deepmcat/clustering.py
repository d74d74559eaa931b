"""Features → PCA (optionally whitened) → L2 normalisation → faiss k-means, as in DeepCluster."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faiss
import numpy as np

from deepmcat.config import ClusterConfig

log = logging.getLogger(__name__)


def faiss_gpus() -> int:
    """GPUs faiss can use (0 with faiss-cpu)."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


@dataclass
class FeatureTransform:
    """A fitted PCA (+ whitening) projection y = A x + b, kept as plain arrays so checkpoints stay portable."""

    matrix: np.ndarray  # (d_out, d_in), whitening folded in by faiss
    bias: np.ndarray  # (d_out,)

    @classmethod
    def fit(cls, features: np.ndarray, dim: int, whiten: bool) -> "FeatureTransform":
        n, d_in = features.shape
        d_out = max(1, min(dim, d_in, n - 1))
        pca = faiss.PCAMatrix(d_in, d_out, -0.5 if whiten else 0.0)
        pca.train(np.ascontiguousarray(features, dtype=np.float32))
        matrix = faiss.vector_to_array(pca.A).reshape(d_out, d_in)
        return cls(matrix=matrix.astype(np.float32), bias=faiss.vector_to_array(pca.b).astype(np.float32))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Project and L2-normalise (rows)."""
        x = np.asarray(features, np.float32) @ self.matrix.T + self.bias
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-8
        return np.ascontiguousarray(x, dtype=np.float32)

    def state(self) -> dict:
        return {"matrix": self.matrix, "bias": self.bias}


@dataclass
class KMeansResult:
    assignments: np.ndarray  # (n,) int64
    centroids: np.ndarray  # (k, d) float32
    objective: float
    empty_clusters: int


def kmeans(x: np.ndarray, k: int, cfg: ClusterConfig, seed: int = 0) -> KMeansResult:
    """faiss k-means with restarts; no silent subsampling; uses the GPU when faiss has one."""
    n, d = x.shape
    if k < 1 or k > n:
        raise ValueError(f"cannot make {k} clusters of {n} items")
    km = faiss.Kmeans(d, k, niter=cfg.niter, nredo=cfg.nredo, seed=seed, verbose=False,
                      max_points_per_centroid=10_000_000, min_points_per_centroid=1, gpu=faiss_gpus() > 0)
    km.train(np.ascontiguousarray(x, np.float32))
    _, assign = km.index.search(np.ascontiguousarray(x, np.float32), 1)
    assign = assign[:, 0].astype(np.int64)
    empty = k - len(np.unique(assign))
    if empty:
        log.debug("k-means left %d empty clusters", empty)
    return KMeansResult(assign, km.centroids.copy(), float(km.obj[-1]) if len(km.obj) else 0.0, empty)


def squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n, k) squared Euclidean distances."""
    return np.maximum((x**2).sum(1)[:, None] - 2 * x @ centroids.T + (centroids**2).sum(1)[None], 0.0)


def group_means(features: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mean feature of each group (groups are 0..G-1 integer ids)."""
    sums = np.zeros((groups.max() + 1, features.shape[1]), np.float64)
    np.add.at(sums, groups, features)
    return (sums / np.bincount(groups)[:, None]).astype(np.float32)


def fit_clusters(features: np.ndarray, k: int, cfg: ClusterConfig, seed: int = 0,
                 groups: np.ndarray | None = None) -> tuple[FeatureTransform, KMeansResult]:
    """PCA + k-means, fitted on acquisitions (group means) when ``groups`` are given and
    ``cfg.by_acquisition`` is set, else on units.

    One acquisition, one point: a 12-slice short-axis stack weighs as much as a single 4-chamber view, so
    k-means is not pulled into splitting the dominant acquisition type (most of the units of an imbalanced
    archive) while it merges the rare ones. Returned assignments are per unit (its acquisition's cluster).
    """
    use_groups = groups is not None and cfg.by_acquisition and k <= groups.max() + 1 < len(features)
    points = group_means(features, groups) if use_groups else features
    whiten = cfg.whiten and len(points) >= cfg.whiten_min_points * min(cfg.pca_dim, points.shape[1])
    transform = FeatureTransform.fit(points, cfg.pca_dim, whiten)
    result = kmeans(transform(points), k, cfg, seed=seed)
    if use_groups:
        result.assignments = result.assignments[groups]
    return transform, result
