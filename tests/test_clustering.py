"""The final categories' clustering (:mod:`deepmcat.clustering`): what k-means at K = C gets wrong and the
nearest-neighbour graph gets right."""

import numpy as np
import pytest

from deepmcat.clustering import fit_clusters, kmeans, merge_clusters, spectral_clusters
from deepmcat.config import ClusterConfig
from deepmcat.metrics import evaluate


def _a_spread_category_and_two_small_ones() -> tuple[np.ndarray, np.ndarray]:
    """100 points along a line 10 long (one category seen from many angles), and two tight categories of 10
    points 0.6 apart from each other: k-means' objective prefers cutting the line to keeping them apart."""
    rng = np.random.default_rng(0)
    line = np.stack([np.linspace(0, 10, 100), rng.normal(0, 0.02, 100)], 1)
    a = rng.normal(0, 0.05, (10, 2)) + [5.0, 3.0]
    b = rng.normal(0, 0.05, (10, 2)) + [5.0, 3.6]
    return np.vstack([line, a, b]).astype(np.float32), np.repeat([0, 1, 2], [100, 10, 10])


def test_the_graph_keeps_small_categories_that_k_means_merges():
    x, truth = _a_spread_category_and_two_small_ones()
    cfg = ClusterConfig(clusters=3, nredo=5)
    merged = evaluate(list(truth), kmeans(x, 3, cfg, seed=0).assignments)
    assert merged["worst_recall"] == 0.0  # a small category shares a cluster; the line is cut in two
    result = spectral_clusters(x, 3, neighbours=5)
    assert evaluate(list(truth), result.assignments)["purity"] == 1.0
    # each point sits at its nearest cluster mean: what inference answers by
    d2 = ((x[:, None] - result.centroids[None]) ** 2).sum(-1)
    assert np.array_equal(d2.argmin(1), result.assignments) and result.empty_clusters == 0
    assert result.centroids.shape == (3, 2)
    # beyond max_points the graph is cut on a sample and every point is assigned: the same categories here
    sampled = spectral_clusters(x, 3, neighbours=5, max_points=90, seed=1)
    assert len(sampled.assignments) == len(x) and evaluate(list(truth), sampled.assignments)["purity"] == 1.0


def test_only_the_final_clustering_uses_the_graph():
    """fit_clusters projects and L2-normalises first, so the same picture on the sphere: a category spread
    over a 150° arc, two small ones 12° apart."""
    rng = np.random.default_rng(0)
    angles = np.concatenate([np.linspace(0, 150, 100), rng.normal(250, 0.3, 10), rng.normal(262, 0.3, 10)])
    truth = np.repeat([0, 1, 2], [100, 10, 10])
    rad = np.radians(angles)
    features = np.stack([np.cos(rad), np.sin(rad), rng.normal(0, 0.01, len(rad))], 1).astype(np.float32)
    cfg = ClusterConfig(clusters=3, nredo=5, pca_dim=3, spectral_neighbours=5)
    _, pseudo = fit_clusters(features, 3, cfg)
    _, final = fit_clusters(features, 3, cfg, final=True)
    assert evaluate(list(truth), pseudo.assignments)["worst_recall"] == 0.0
    assert evaluate(list(truth), final.assignments)["worst_recall"] == 1.0
    kmeans_cfg = ClusterConfig(clusters=3, nredo=5, pca_dim=3, final_method="kmeans")
    assert np.array_equal(fit_clusters(features, 3, kmeans_cfg, final=True)[1].assignments, pseudo.assignments)


def symmetric_graph(edges: set[tuple[int, int]], n: int):
    """The graph :func:`deepmcat.clustering.neighbour_graph` would make of these chosen neighbours: edges 1, or
    ½ where only one end chose the other."""
    from scipy.sparse import csr_matrix

    rows, cols = zip(*edges)
    graph = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return ((graph + graph.T) * 0.5).tocsr()


def test_merging_joins_a_split_category_not_a_small_one_of_another_structure():
    """Four clusters of a finer cut: the two halves of one category (20 points each, well connected), a
    category of 20, and 5 points of a static series most of whose edges go to that category. Merged down to
    three by connection alone, the 5 join their neighbour before the halves join (a tenth of their edges);
    the structure term keeps a static series from a time series, so the halves join instead."""
    labels = np.repeat([0, 1, 2, 3], [20, 20, 20, 5])
    rng = np.random.default_rng(0)
    edges = set()
    for i in range(65):
        own = np.flatnonzero(labels == labels[i])
        for j in rng.choice(own[own != i], 8 if labels[i] < 3 else 2, replace=False):
            edges.add((i, int(j)))
    for i in range(20):  # the halves: one edge each across
        edges.add((i, int(rng.integers(20, 40))))
    for i in range(60, 65):  # the small series: more edges to the category beside it than among its own
        for j in rng.choice(np.arange(40, 60), 3, replace=False):
            edges.add((i, int(j)))
    graph = symmetric_graph(edges, 65)
    by_connection = merge_clusters(graph, labels, 3, np.zeros((65, 0)))
    assert by_connection[60] == by_connection[40] and by_connection[0] != by_connection[20]
    static = (labels == 3).astype(float)[:, None]
    merged = merge_clusters(graph, labels, 3, static)
    assert merged[0] == merged[20] and len({merged[0], merged[40], merged[60]}) == 3
    assert sorted(np.unique(merged).tolist()) == [0, 1, 2]


def test_merging_never_joins_unconnected_clusters_before_connected_ones():
    """Four clusters: the halves of one category written two ways (a few edges across, their structure half
    a unit apart) and two categories of one structure with no edge between them (flow magnitude and phase).
    Ranked by connection less structure alone, the unconnected pair (0 - 0) beat the halves (0.06 - 0.25);
    alike structure is no evidence of one category, so the halves join."""
    labels = np.repeat([0, 1, 2, 3], 20)
    rng = np.random.default_rng(0)
    edges = set()
    for i in range(80):
        own = np.flatnonzero(labels == labels[i])
        edges.update((i, int(j)) for j in rng.choice(own[own != i], 8, replace=False))
    for i in range(20):
        edges.add((i, int(rng.integers(20, 40))))
    graph = symmetric_graph(edges, 80)
    structure = np.where(labels == 1, 0.5, 0.0)[:, None]
    merged = merge_clusters(graph, labels, 3, structure)
    assert merged[0] == merged[20] and len({merged[0], merged[40], merged[60]}) == 3
    # with no edge anywhere left, the alike structure decides
    assert len(set(merge_clusters(graph, labels, 2, structure)[[0, 40, 60]])) == 2


def test_a_collection_barely_larger_than_k_is_still_cut():
    """As many clusters as points, or nearly (a tiny collection): every point its own cluster, none lost."""
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    for k in (4, 5):
        result = spectral_clusters(x, k, neighbours=10)
        assert len(np.unique(result.assignments)) == k and result.empty_clusters == 0


@pytest.mark.parametrize("bad", [{"final_method": "dbscan"}, {"spectral_neighbours": 0}, {"spectral_max_points": 1}])
def test_an_unknown_final_method_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ClusterConfig(**bad)


def test_unknown_coordinates_are_left_out_of_distances():
    """NaN marks a coordinate a series read alone cannot know: its distances are taken over the others."""
    from deepmcat.clustering import squared_distances

    rng = np.random.default_rng(3)
    x, centroids = rng.normal(size=(4, 5)), rng.normal(size=(3, 5))
    full = ((x[:, None] - centroids[None]) ** 2).sum(-1)
    assert squared_distances(x, centroids) == pytest.approx(full)
    x[2, [1, 4]] = np.nan
    d2 = squared_distances(x, centroids)
    assert d2[2] == pytest.approx(((x[2, [0, 2, 3]] - centroids[:, [0, 2, 3]]) ** 2).sum(-1))
    assert d2[[0, 1, 3]] == pytest.approx(full[[0, 1, 3]])
