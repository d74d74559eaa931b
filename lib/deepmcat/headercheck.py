"""Which series' SeriesDescription disagrees with their content: the headers a PACS cannot be trusted with.

A series is flagged when three signs agree:

- **its cluster** is not the one most series with its description fall in (k-means' partition),
- **its embedding** is an outlier in the archive: its margin — cosine similarity to the nearest *other*
  description's mean embedding, less that to its own description's mean without itself — lies above Tukey's
  upper fence (Q3 + 1.5 × IQR) of the margins of the whole archive, and
- **it is an outlier among its own description's series**: its margin lies above the same fence of the margins
  of the other series sharing its description (when at least :data:`OWN_MIN_OTHERS` have one).

The cluster sign alone flags every series of a category that k-means happened to split (23 % of the correct
headers of a 16-subject archive); the margin alone flags series whose description has a synonym another
vendor uses. The archive's fence alone flags whole descriptions whose content a young network does not yet
tell from another's (the long-axis cines of a 16-subject archive: 6.7 % of torso's correct headers): every
series of such a description has a high margin, so none stands out among its own. Together they are rare on
correct headers (``benchmarks/header_check.py``). The fences adapt to the model and the archive; the margin
needs a description with another series and enough series for quartiles, so a description seen once is
never flagged.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

#: Tukey's outlier fence, in interquartile ranges above the third quartile (the textbook value, not tuned)
FENCE = 1.5
#: fewest comparable series for quartiles that mean something
MIN_SERIES = 8
#: fewest other series of its description (with a margin) that a series' own fence is drawn from; fewer: the
#: archive's fence decides alone
OWN_MIN_OTHERS = 3


def description_key(row: dict) -> str:
    """What series of one description share: the SeriesDescription without case or outer spaces."""
    return row["series_description"].strip().lower()


def _comparable(row: dict) -> bool:
    """A series with a cluster, not unknown, with a description."""
    return row["cluster"] != "" and row.get("novel") != "yes" and bool(description_key(row))


def description_margins(descriptions: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
    """Per series: similarity to the nearest other description's mean embedding minus that to its own
    description's mean without itself (NaN where its description has no other series, or no other description
    has two). A description seen once is no one's nearest other: one series says little about what a
    description holds. Embeddings are L2-normalised first."""
    x = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    index = np.unique(np.asarray(descriptions), return_inverse=True)[1].reshape(-1)
    counts = np.bincount(index)
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, index, x)
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    margins = np.full(len(x), np.nan)
    to_means = np.where(counts >= 2, x @ means.T, -np.inf)
    for i, j in enumerate(index):
        others = np.delete(to_means[i], j)
        if counts[j] < 2 or not np.isfinite(others).any():
            continue
        own = sums[j] - x[i]
        own_sim = float(x[i] @ own) / max(float(np.linalg.norm(own)), 1e-12)
        margins[i] = float(others.max()) - own_sim
    return margins


def upper_fence(values: np.ndarray) -> float:
    """Tukey's upper fence: Q3 + :data:`FENCE` x IQR."""
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 + FENCE * (q3 - q1))


def above_fence(margins: np.ndarray, min_series: int) -> np.ndarray:
    """Margins above Tukey's upper fence of the known ones (NaN never is); all False with fewer than
    ``min_series`` known."""
    known = margins[~np.isnan(margins)]
    if len(known) < min_series:
        return np.zeros(len(margins), bool)
    return np.nan_to_num(margins, nan=-np.inf) > upper_fence(known)


def own_outliers(keys: Sequence[str], margins: np.ndarray) -> np.ndarray:
    """Per series: its margin lies above the fence of the margins of the *other* series of its description (a
    wrong header among four would otherwise set its own quartile); True where fewer than
    :data:`OWN_MIN_OTHERS` others have one (nothing to stand out from)."""
    keys_array = np.asarray(keys)
    out = np.ones(len(margins), bool)
    for key in np.unique(keys_array):
        own = np.flatnonzero((keys_array == key) & ~np.isnan(margins))
        if len(own) - 1 < OWN_MIN_OTHERS:
            continue
        for i in own:
            out[i] = margins[i] > upper_fence(margins[own[own != i]])
    return out


def majority_clusters(rows: list[dict]) -> dict[str, str]:
    """Description key → the cluster most of its comparable series fall in (a tie: the first seen)."""
    clusters_of: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        if _comparable(r):
            clusters_of[description_key(r)][r["cluster"]] += 1
    return {d: counts.most_common(1)[0][0] for d, counts in clusters_of.items()}


def header_check(rows: list[dict], embeddings: Sequence[np.ndarray | None]) -> None:
    """Fill each row's ``header_category`` (the category most series with its description fall in) and
    ``header_agrees`` ("no" when flagged, "yes" when compared and not flagged, "" when not compared: unknown
    or unreadable series, no description)."""
    majority_of = majority_clusters(rows)
    name_of = {r["cluster"]: r["category"] for r in rows if _comparable(r)}
    compared = [i for i, r in enumerate(rows) if _comparable(r) and embeddings[i] is not None]
    outlier = np.zeros(len(rows), bool)
    if len(compared) >= MIN_SERIES:
        keys = [description_key(rows[i]) for i in compared]
        margins = description_margins(keys, np.stack([np.asarray(embeddings[i], np.float32) for i in compared]))
        outlier[compared] = above_fence(margins, MIN_SERIES) & own_outliers(keys, margins)
    for i, r in enumerate(rows):
        if not _comparable(r):
            r["header_category"], r["header_agrees"] = "", ""
            continue
        majority = majority_of[description_key(r)]
        r["header_category"] = name_of[majority]
        r["header_agrees"] = "no" if majority != r["cluster"] and outlier[i] else "yes"
