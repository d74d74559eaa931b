"""Active-learning selection: which item (image, series) a clinician should label next.

Every function takes the items' scores under the current model (``{"cluster", "confidence", "distance"}``
per item id) and the labels given so far (item id → category), and returns ``(item id, reason)`` or None.
The MONAI Label strategies and the active-learning benchmark both call these.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

from deepmcat.naming import name_clusters

Scores = Mapping[str, Mapping]
Labels = Mapping[str, str]


def least_confident(scores: Scores, labels: Labels) -> tuple[str, str] | None:
    """The unlabelled item whose cluster assignment is least confident."""
    candidates = [i for i in scores if i not in labels]
    if not candidates:
        return None
    best = min(candidates, key=lambda i: (scores[i]["confidence"], i))
    return best, f"lowest confidence ({scores[best]['confidence']:.3f}) among unlabelled images"


def cluster_representative(scores: Scores, labels: Labels) -> tuple[str, str] | None:
    """The most central unlabelled item of the largest cluster without a name (then of the cluster with the
    fewest labels): one label then names a whole cluster, and the central member is the likeliest to carry
    the cluster's majority category."""
    sizes = Counter(s["cluster"] for s in scores.values())
    labelled = Counter(scores[i]["cluster"] for i in labels if i in scores)
    for cluster in sorted(sizes, key=lambda c: (labelled[c], -sizes[c], c)):
        members = [i for i, s in scores.items() if s["cluster"] == cluster and i not in labels]
        if members:
            best = min(members, key=lambda i: (scores[i]["distance"], i))
            state = "has no name yet" if not labelled[cluster] else f"has {labelled[cluster]} label(s)"
            return best, (f"most central unlabelled image of cluster {cluster} ({sizes[cluster]} images), "
                          f"which {state}")
    return None


def label_conflict(scores: Scores, labels: Labels) -> tuple[str, str] | None:
    """A labelled item whose category disagrees with its cluster's (majority) name, least confident first."""
    naming = name_clusters({i: s["cluster"] for i, s in scores.items()}, labels)
    if not naming.conflicts:
        return None
    conflict = min(naming.conflicts, key=lambda c: (scores[c["id"]]["confidence"], c["id"]))
    return conflict["id"], (f"labelled {conflict['label']!r} but its cluster {conflict['cluster']} is named "
                            f"{conflict['cluster_name']!r}")


STRATEGIES = {
    "least_confident": least_confident,
    "cluster_representative": cluster_representative,
    "label_conflict": label_conflict,
}
