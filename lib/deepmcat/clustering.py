"""Features → PCA (optionally whitened) → L2 normalisation → faiss k-means, as in DeepCluster (the
pseudo-labels); the final categories from the same points' nearest-neighbour graph (spectral clustering)."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import faiss
import numpy as np

from deepmcat.config import ClusterConfig

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

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

    @classmethod
    def from_state(cls, state: dict) -> "FeatureTransform":
        return cls(np.asarray(state["matrix"], np.float32), np.asarray(state["bias"], np.float32))


@dataclass
class KMeansResult:
    assignments: np.ndarray  # (n,) int64
    centroids: np.ndarray  # (k, d) float32
    objective: float
    empty_clusters: int


def kmeans(x: np.ndarray, k: int, cfg: ClusterConfig, seed: int = 0, init: np.ndarray | None = None
           ) -> KMeansResult:
    """faiss k-means with restarts (one run from ``init`` centroids when given); no silent subsampling;
    uses the GPU when faiss has one."""
    n, d = x.shape
    if k < 1 or k > n:
        raise ValueError(f"cannot make {k} clusters of {n} items")
    km = faiss.Kmeans(d, k, niter=cfg.niter, nredo=cfg.nredo if init is None else 1, seed=seed, verbose=False,
                      max_points_per_centroid=10_000_000, min_points_per_centroid=1, gpu=faiss_gpus() > 0)
    km.train(np.ascontiguousarray(x, np.float32), init_centroids=init)
    _, assign = km.index.search(np.ascontiguousarray(x, np.float32), 1)
    assign = assign[:, 0].astype(np.int64)
    empty = k - len(np.unique(assign))
    if empty:
        log.debug("k-means left %d empty clusters", empty)
    return KMeansResult(assign, km.centroids.copy(), float(km.obj[-1]) if len(km.obj) else 0.0, empty)


def spectral_clusters(x: np.ndarray, k: int, neighbours: int, seed: int = 0, max_points: int = 20_000,
                      over_cluster: float = 1.0, content_dims: int | None = None) -> KMeansResult:
    """``k`` clusters cut from the points' symmetric ``neighbours``-nearest-neighbour graph (faiss finds the
    neighbours, sklearn's spectral clustering cuts the graph), then every point at its nearest cluster mean.
    Beyond ``max_points`` the graph is built on a random sample of that many (the cut's eigen-solver grows
    faster than linearly: 12 s for 20,000 points, 130 s for 50,000 on 2 cores) and every point is assigned.
    With ``over_cluster`` > 1 the graph is cut into that many times ``k`` clusters first, then merged down to
    ``k`` (:func:`merge_clusters`; coordinates past ``content_dims`` are the series structure).

    Why not k-means alone: k-means wants round clusters of one size, so at K = C it splits a category whose
    points spread (flow magnitude of two vendors) and merges two small ones, although each point's own
    neighbours are of its category (the kNN probe, benchmarks/README.md). The graph follows the categories'
    shapes; the last step makes the clusters the centroids inference answers by."""
    from sklearn.cluster import SpectralClustering

    n = len(x)
    if k < 1 or k > n:
        raise ValueError(f"cannot make {k} clusters of {n} items")
    x = np.ascontiguousarray(x, np.float32)
    sample = x if n <= max_points else x[np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))]
    graph = neighbour_graph(sample, neighbours)
    cut = min(len(sample), max(k, int(round(k * over_cluster))))
    # scipy's sparse eigen-solver needs more points than eigenvectors; a dense one does not
    matrix = graph.toarray() if len(sample) <= 5 * cut else graph
    with warnings.catch_warnings():  # a graph of several components is cut along them first, as it should be
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        warnings.filterwarnings("ignore", message="k >= N")  # the dense solver then, as intended above
        labels = SpectralClustering(cut, affinity="precomputed", assign_labels="cluster_qr",
                                    random_state=seed).fit_predict(matrix)
    if cut > k:
        labels = merge_clusters(graph, labels, k, sample[:, x.shape[1] if content_dims is None else content_dims:])
    centroids = np.zeros((k, x.shape[1]), np.float32)
    present = np.unique(labels)
    centroids[present] = group_means(sample, np.searchsorted(present, labels))
    if len(present) < k:  # empty clusters take the points farthest from their own cluster mean
        d_own = ((sample - centroids[labels]) ** 2).sum(1)
        missing = np.setdiff1d(np.arange(k), present)
        centroids[missing] = sample[np.argsort(-d_own)[: len(missing)]]
    d2 = squared_distances(x, centroids)
    assign = d2.argmin(axis=1).astype(np.int64)
    return KMeansResult(assign, centroids, float(d2[np.arange(n), assign].sum()), k - len(np.unique(assign)))


def neighbour_graph(x: np.ndarray, neighbours: int) -> csr_matrix:
    """The symmetric 0/1 ``neighbours``-nearest-neighbour graph of the rows of ``x`` (scipy CSR, edges 1 or
    ½ where only one end chose the other)."""
    from scipy.sparse import csr_matrix

    m = max(1, min(neighbours, len(x) - 1))
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, found = index.search(x, m + 1)
    rows, cols = np.repeat(np.arange(len(x)), m + 1), found.ravel()
    keep = (cols >= 0) & (cols != rows)
    graph = csr_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(len(x), len(x)))
    return ((graph + graph.T) * 0.5).tocsr()


def merge_clusters(graph: csr_matrix, labels: np.ndarray, k: int, structure: np.ndarray) -> np.ndarray:
    """``labels`` (0..L-1) merged down to ``k`` clusters (0..k-1), a pair at a time: the pair whose edges
    between them are most of their edges (w(A, B) / √(vol A · vol B)) less the squared distance of their mean
    series structure (``structure``: the points' scaled structure coordinates, possibly none). Pairs with no
    edge between them come after every pair with one.

    Why: cut straight into K, the graph split a large category in two (flow magnitude with its field of view
    turned two ways: the halves share many edges) rather than cut off a category of a few acquisitions (late
    enhancement beside T1 mapping). Cut finer, both are apart; merging by connection joins the halves, and the
    structure term keeps a static stack from joining a time series. The structure only holds apart what the
    graph would join: alike structure is no evidence of one category (every single-slice cine has it), and
    ranked by the difference alone, two unconnected clusters of alike structure (flow magnitude and phase)
    were joined before two connected halves of a category written two ways (benchmarks/README.md)."""
    present, labels = np.unique(labels, return_inverse=True)
    members = np.eye(len(present))[labels]  # (n, L) one-hot
    between = np.asarray(members.T @ (graph @ members))  # (L, L) edge weights, clusters' volumes on the diagonal
    volume = np.asarray(graph.sum(axis=1)).ravel() @ members
    sizes = members.sum(axis=0)
    means = (members.T @ structure) / sizes[:, None]  # (L, 0) without structure
    groups = [[i] for i in range(len(present))]
    alive = list(range(len(present)))
    while len(alive) > k:
        best, pair = (False, -np.inf), (alive[0], alive[1])
        for a_i, a in enumerate(alive):
            for b in alive[a_i + 1:]:
                score = (between[a, b] > 0, between[a, b] / np.sqrt(max(volume[a] * volume[b], 1e-12))
                         - float(((means[a] - means[b]) ** 2).sum()))
                if score > best:
                    best, pair = score, (a, b)
        a, b = pair
        between[a] += between[b]
        between[:, a] += between[:, b]
        volume[a] += volume[b]
        means[a] = (means[a] * sizes[a] + means[b] * sizes[b]) / (sizes[a] + sizes[b])
        sizes[a] += sizes[b]
        groups[a] += groups[b]
        alive.remove(b)
    merged = np.zeros(len(present), np.int64)
    for c, a in enumerate(alive):
        merged[groups[a]] = c
    return merged[labels]


def squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n, k) squared Euclidean distances. A NaN coordinate of a row of ``x`` is unknown
    (:func:`deepmcat.structure.observed_structure`) and left out of that row's distances."""
    unknown = np.isnan(x)
    if not unknown.any():
        return np.maximum((x**2).sum(1)[:, None] - 2 * x @ centroids.T + (centroids**2).sum(1)[None], 0.0)
    x, mask = np.where(unknown, 0.0, x), (~unknown).astype(x.dtype)  # sum over the known coordinates only
    return np.maximum((x**2).sum(1)[:, None] - 2 * x @ centroids.T + mask @ (centroids**2).T, 0.0)


def content_distances(x: np.ndarray, centroids: np.ndarray, dims: int) -> np.ndarray:
    """Squared distance of each row to the nearest centroid over the first ``dims`` coordinates: the
    embedding's, without the series-structure ones (:mod:`deepmcat.structure`): how typical of its cluster a
    unit's content is (and what "unknown" is judged by in models published without a novelty reference)."""
    return squared_distances(x[:, :dims], centroids[:, :dims]).min(axis=1)


def confidence_temperature(d2: np.ndarray) -> float:
    """Softmax temperature of confidences from training units' (n, k) squared distances: their mean squared
    distance to their own centroid. A unit as close to its centroid as a typical member, and much farther
    from the others, then gets a confidence near 1."""
    return float(np.mean(d2.min(axis=1))) + 1e-6


def group_means(features: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mean feature of each group (groups are 0..G-1 integer ids)."""
    sums = np.zeros((groups.max() + 1, features.shape[1]), np.float64)
    np.add.at(sums, groups, features)
    return (sums / np.bincount(groups)[:, None]).astype(np.float32)


def embed_units(transform: FeatureTransform, features: np.ndarray, acquisitions: Sequence[str] | None,
                weight: float, structure: np.ndarray | None = None) -> np.ndarray:
    """Units' embeddings for assignment: each mixed with its acquisition's embedding (mean feature of its
    units, projected) with ``weight``; plain unit embeddings when acquisitions are unknown. ``structure``
    (scaled series-structure coordinates, :mod:`deepmcat.structure`) is appended when given."""
    x = transform(features)
    if acquisitions is not None and weight > 0 and len(x):
        ids = np.unique(np.asarray(acquisitions), return_inverse=True)[1]
        x = ((1 - weight) * x + weight * transform(group_means(features, ids))[ids]).astype(np.float32)
    return x if structure is None else np.ascontiguousarray(np.hstack([x, structure]), dtype=np.float32)


def seeded_centroids(x: np.ndarray, labels: Sequence[str | None], k: int, seed: int = 0) -> np.ndarray | None:
    """Initial centroids for seeded k-means (Basu, Banerjee & Mooney 2002): one per labelled category (the
    mean of its labelled points), the rest drawn by k-means++ from the other points. None without labels."""
    categories = sorted({lab for lab in labels if lab})[:k]
    if not categories:
        return None
    labels_arr = np.asarray([lab or "" for lab in labels], dtype=object)
    centroids = [x[labels_arr == c].mean(axis=0) for c in categories]
    rng = np.random.default_rng(seed)
    d2 = squared_distances(x, np.stack(centroids)).min(axis=1)
    while len(centroids) < k:
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
        pick = x[rng.choice(len(x), p=p)]
        centroids.append(pick)
        d2 = np.minimum(d2, squared_distances(x, pick[None])[:, 0])
    return np.ascontiguousarray(np.stack(centroids), dtype=np.float32)


def constrained_kmeans(x: np.ndarray, init: np.ndarray, fixed: np.ndarray, niter: int) -> KMeansResult:
    """Constrained k-means (Basu, Banerjee & Mooney 2002): Lloyd iterations from the seeded ``init`` in which
    a labelled point stays in its category's cluster (``fixed``: that cluster's index, -1 for unlabelled
    points). Clinicians' categories are then kept apart even where the features put them together; faiss has
    no such constraint, and the points (acquisition means) are few."""
    centroids = init.astype(np.float32).copy()
    labelled = fixed >= 0
    for _ in range(niter):
        assign = squared_distances(x, centroids).argmin(axis=1)
        assign[labelled] = fixed[labelled]
        for c in range(len(centroids)):
            members = x[assign == c]
            if len(members):
                centroids[c] = members.mean(axis=0)
    assign = squared_distances(x, centroids).argmin(axis=1)
    assign[labelled] = fixed[labelled]
    objective = float(((x - centroids[assign]) ** 2).sum())
    return KMeansResult(assign.astype(np.int64), centroids, objective, len(centroids) - len(np.unique(assign)))


def group_labels(labels: Sequence[str | None], groups: np.ndarray) -> list[str | None]:
    """Each group's label: the most common label among its labelled units (None if it has none)."""
    votes: dict[int, Counter] = {}
    for g, lab in zip(groups, labels):
        if lab:
            votes.setdefault(int(g), Counter())[lab] += 1
    return [votes[g].most_common(1)[0][0] if g in votes else None for g in range(int(groups.max()) + 1)]


def fit_clusters(features: np.ndarray, k: int, cfg: ClusterConfig, seed: int = 0,
                 groups: np.ndarray | None = None, labels: Sequence[str | None] | None = None,
                 structure: np.ndarray | None = None, final: bool = False) -> tuple[FeatureTransform, KMeansResult]:
    """PCA + k-means, fitted on acquisitions (group means) when ``groups`` are given and
    ``cfg.by_acquisition`` is set, else on units. ``final``: the categories rather than pseudo-labels, cut
    by ``cfg.final_method`` (:func:`spectral_clusters` or k-means).

    One acquisition, one point: a 12-slice short-axis stack weighs as much as a single 4-chamber view, so
    k-means is not pulled into splitting the dominant acquisition type (most of the units of an imbalanced
    archive) while it merges the rare ones. Returned assignments are per unit (its acquisition's cluster).
    ``labels`` (clinicians' categories per unit, None where unlabelled) seed the centroids: each labelled
    category starts with a centroid of its own and keeps its labelled points (:func:`constrained_kmeans`), so
    categories a clinician told apart are not merged. ``structure`` (per unit, scaled: :mod:`deepmcat.structure`)
    is appended to the projected points, so the centroids live where :func:`embed_units` puts units.
    """
    use_groups = groups is not None and cfg.by_acquisition and k <= groups.max() + 1 < len(features)
    if groups is not None and cfg.by_acquisition and not use_groups:
        log.info("clustering %d units into %d clusters unit by unit: %d acquisitions %s", len(features), k,
                 groups.max() + 1, "are fewer than the clusters" if k > groups.max() + 1 else "hold one unit each")
    points = group_means(features, groups) if use_groups else features
    whiten = cfg.whiten and len(points) >= cfg.whiten_min_points * min(cfg.pca_dim, points.shape[1])
    transform = FeatureTransform.fit(points, cfg.pca_dim, whiten)
    x = transform(points)
    if structure is not None:
        x = np.ascontiguousarray(np.hstack([x, group_means(structure, groups) if use_groups else structure]),
                                 dtype=np.float32)
    init = None
    if labels is not None:
        point_labels = group_labels(labels, groups) if use_groups else list(labels)
        init = seeded_centroids(x, point_labels, k, seed)
    if init is None and final and cfg.final_method == "spectral":
        result = spectral_clusters(x, k, cfg.spectral_neighbours, seed=seed, max_points=cfg.spectral_max_points,
                                   over_cluster=cfg.over_cluster, content_dims=transform.matrix.shape[0])
    elif init is None:
        result = kmeans(x, k, cfg, seed=seed)
    else:
        index = {c: i for i, c in enumerate(sorted({lab for lab in point_labels if lab})[:k])}
        result = constrained_kmeans(x, init, np.array([index.get(lab, -1) for lab in point_labels]), cfg.niter)
    if use_groups:
        result.assignments = result.assignments[groups]
    return transform, result
