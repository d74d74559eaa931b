"""Human names for clusters from a few clinician labels: majority vote per cluster, disagreements reported.

Labels are the source of truth; names are derived from them and recomputed whenever a label is saved or the
model changes, so a retrained model (whose cluster ids differ) is named again from the same labels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping


@dataclass
class Naming:
    """``names``: cluster → category; ``conflicts``: labelled items whose label is not their cluster's name;
    ``ties``: clusters whose vote was tied (named by the alphabetically first of the tied categories)."""

    names: dict[int, str]
    votes: dict[int, dict[str, int]]
    conflicts: list[dict] = field(default_factory=list)
    ties: list[int] = field(default_factory=list)


def name_clusters(cluster_of: Mapping[str, int], label_of: Mapping[str, str]) -> Naming:
    """Name every cluster that holds labelled items by the majority of their labels.

    ``cluster_of`` maps item ids (images, series) to clusters; ``label_of`` maps some of them to a clinician
    category. Labels of items without a cluster are ignored.
    """
    votes: dict[int, Counter] = {}
    for item, category in label_of.items():
        if item in cluster_of and category:
            votes.setdefault(int(cluster_of[item]), Counter())[str(category)] += 1
    names, ties = {}, []
    for cluster, counter in sorted(votes.items()):
        top = max(counter.values())
        leaders = sorted(c for c, n in counter.items() if n == top)
        names[cluster] = leaders[0]
        if len(leaders) > 1:
            ties.append(cluster)
    conflicts = [
        {"id": item, "label": str(category), "cluster": int(cluster_of[item]),
         "cluster_name": names[int(cluster_of[item])]}
        for item, category in sorted(label_of.items())
        if item in cluster_of and category and names[int(cluster_of[item])] != category
    ]
    return Naming(names, {c: dict(v) for c, v in votes.items()}, conflicts, ties)
