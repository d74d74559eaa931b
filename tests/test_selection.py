"""Active-learning selection over item scores and labels."""

from deepmcat.selection import cluster_representative, label_conflict, least_confident

SCORES = {
    "a": {"cluster": 0, "confidence": 0.9, "distance": 0.2},
    "b": {"cluster": 0, "confidence": 0.4, "distance": 0.9},
    "c": {"cluster": 0, "confidence": 0.8, "distance": 0.1},
    "d": {"cluster": 1, "confidence": 0.7, "distance": 0.3},
    "e": {"cluster": 1, "confidence": 0.3, "distance": 0.5},
}


def test_least_confident_skips_labelled_items():
    assert least_confident(SCORES, {})[0] == "e"
    assert least_confident(SCORES, {"e": "lge"})[0] == "b"
    assert least_confident(SCORES, {i: "x" for i in SCORES}) is None


def test_cluster_representative_names_unnamed_clusters_first_with_their_most_central_member():
    assert cluster_representative(SCORES, {})[0] == "c"  # largest cluster (0), smallest distance
    pick, reason = cluster_representative(SCORES, {"c": "cine_sax"})
    assert pick == "d" and "no name yet" in reason  # cluster 1 has no label yet
    assert cluster_representative(SCORES, {"c": "cine_sax", "d": "lge"})[0] == "a"  # then fewest labels


def test_label_conflict_finds_the_disagreeing_label():
    assert label_conflict(SCORES, {"a": "cine_sax"}) is None
    pick, reason = label_conflict(SCORES, {"a": "cine_sax", "c": "cine_sax", "b": "lge"})
    assert pick == "b" and "lge" in reason and "cine_sax" in reason
