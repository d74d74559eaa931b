"""Cluster names from clinicians' labels: majority vote, ties, conflicts."""

from deepmcat.naming import name_clusters


def test_majority_names_each_labelled_cluster_and_reports_disagreements():
    cluster_of = {"a": 0, "b": 0, "c": 0, "d": 1, "e": 2}
    labels = {"a": "cine_sax", "b": "cine_sax", "c": "lge", "d": "t1_map", "x": "scout"}  # x has no cluster
    naming = name_clusters(cluster_of, labels)
    assert naming.names == {0: "cine_sax", 1: "t1_map"}  # cluster 2 has no label, so no name
    assert naming.votes == {0: {"cine_sax": 2, "lge": 1}, 1: {"t1_map": 1}}
    assert naming.conflicts == [{"id": "c", "label": "lge", "cluster": 0, "cluster_name": "cine_sax"}]
    assert naming.ties == []


def test_a_tie_is_broken_alphabetically_and_flagged():
    naming = name_clusters({"a": 3, "b": 3}, {"a": "zz", "b": "aa"})
    assert naming.names == {3: "aa"} and naming.ties == [3]
    assert [c["id"] for c in naming.conflicts] == ["a"]


def test_no_labels_no_names():
    naming = name_clusters({"a": 0}, {})
    assert naming.names == {} and naming.conflicts == []
