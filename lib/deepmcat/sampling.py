"""Orders in which training visits units: examinations kept together (contrastive batches), pseudo-label
clusters drawn uniformly (DeepCluster's answer to imbalance)."""

from __future__ import annotations

import numpy as np


def grouped_order(studies: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation that keeps each study's units together (shuffled inside), studies in random order.

    Batches then hold several acquisitions of the same subject, so the contrastive term must tell them apart
    by what differs between categories rather than by the subject's anatomy.
    """
    order = []
    for study in rng.permutation(np.unique(studies)):
        order.append(rng.permutation(np.flatnonzero(studies == study)))
    return np.concatenate(order)


def uniform_cluster_sample(assignments: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices drawn so that every non-empty cluster is equally represented (DeepCluster's sampler)."""
    clusters = [np.flatnonzero(assignments == c) for c in np.unique(assignments)]
    per = int(np.ceil(n / len(clusters)))
    picks = [rng.choice(m, per, replace=len(m) < per) for m in clusters]
    return rng.permutation(np.concatenate(picks))[:n]
