"""Clustering quality against ground truth: purity, NMI, ARI, Hungarian accuracy, per-category recall."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix


def purity(truth: Sequence, clusters: Sequence) -> float:
    """Fraction of items whose cluster's majority category is their own (Manning et al., IR book)."""
    table = contingency_matrix(truth, clusters)
    return float(table.max(axis=0).sum() / table.sum())


def hungarian_accuracy(truth: Sequence, clusters: Sequence) -> float:
    """Accuracy under the best one-to-one matching of clusters to categories (unmatched clusters count wrong)."""
    table = contingency_matrix(truth, clusters)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def majority_mapping(truth: Sequence, clusters: Sequence) -> dict:
    """Each cluster's majority category (how clusters get names when a few labels are known)."""
    mapping: dict = {}
    truth, clusters = np.asarray(truth), np.asarray(clusters)
    for c in np.unique(clusters):
        values, counts = np.unique(truth[clusters == c], return_counts=True)
        mapping[c.item() if hasattr(c, "item") else c] = values[np.argmax(counts)].item()
    return mapping


def worst_recall(truth: Sequence, clusters: Sequence) -> tuple[float, str]:
    """Lowest per-category recall when each cluster is named after its majority category.

    A small category that no cluster names after it gets recall 0: it vanished.
    """
    truth, clusters = np.asarray(truth), np.asarray(clusters)
    mapping = majority_mapping(truth, clusters)
    predicted = np.array([mapping[c.item()] for c in clusters])
    recalls = {str(t): float(np.mean(predicted[truth == t] == t)) for t in np.unique(truth)}
    worst = min(recalls, key=recalls.get)
    return recalls[worst], worst


def composition(truth: Sequence, clusters: Sequence) -> dict[str, dict[str, int]]:
    """Per cluster, how many items of each category it holds."""
    truth, clusters = np.asarray(truth), np.asarray(clusters)
    out: dict[str, dict[str, int]] = {}
    for c in np.unique(clusters):
        values, counts = np.unique(truth[clusters == c], return_counts=True)
        out[str(c)] = {str(v): int(n) for v, n in sorted(zip(values, counts), key=lambda vc: -vc[1])}
    return out


def evaluate(truth: Sequence, clusters: Sequence) -> dict[str, float]:
    """All headline metrics in one dict (purity, nmi, ari, acc, worst_recall)."""
    if len(truth) != len(clusters):
        raise ValueError(f"{len(truth)} labels but {len(clusters)} cluster assignments")
    if len(truth) == 0:
        raise ValueError("nothing to evaluate: no labelled items")
    recall, category = worst_recall(truth, clusters)
    return {
        "purity": purity(truth, clusters),
        "nmi": float(normalized_mutual_info_score(truth, clusters)),
        "ari": float(adjusted_rand_score(truth, clusters)),
        "acc": hungarian_accuracy(truth, clusters),
        "worst_recall": recall,
        "worst_recall_category": category,
        "n": len(truth),
    }
