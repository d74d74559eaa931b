"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from deepmcat.metrics import composition, evaluate, hungarian_accuracy, majority_mapping, purity, worst_recall

def test_purity_counts_each_clusters_majority():
    truth = list("xxxxxo") + list("xooooo") + list("xxddd")
    clusters = [1] * 6 + [2] * 6 + [3] * 5
    assert purity(truth, clusters) == pytest.approx((5 + 5 + 3) / 17)


def test_nmi_and_ari_of_the_ir_book_example():
    # Manning, Raghavan & Schuetze, Introduction to IR, fig. 16.4
    truth = list("xxxxxo") + list("xoooo") + ["d"] + list("xxddd")
    clusters = [1] * 6 + [2] * 6 + [3] * 5
    scores = evaluate(truth, clusters)
    assert scores["purity"] == pytest.approx(0.71, abs=0.01)  # the book's 0.71
    assert scores["nmi"] == pytest.approx(0.36, abs=0.01)  # the book's NMI 0.36
    # ARI by hand: sum C(n_ij,2)=20, rows (x8,o5,d4) C=28+10+6=44, cols (6,6,5) 15+15+10=40, C(17,2)=136
    expected = (20 - 44 * 40 / 136) / (0.5 * (44 + 40) - 44 * 40 / 136)
    assert scores["ari"] == pytest.approx(expected)


def test_perfect_and_permuted_clusterings_score_one():
    truth = ["a", "a", "b", "b", "c"]
    scores = evaluate(truth, [7, 7, 3, 3, 9])
    assert all(math.isclose(scores[k], 1.0) for k in ("purity", "nmi", "ari", "acc", "worst_recall"))


def test_hungarian_accuracy_counts_only_one_cluster_per_category():
    truth = ["a"] * 4 + ["b"] * 2
    clusters = [0, 0, 1, 1, 1, 1]  # a split over 0 and 1, b inside 1
    assert hungarian_accuracy(truth, clusters) == pytest.approx(4 / 6)  # 0→a (2), 1→b (2)
    assert purity(truth, clusters) == pytest.approx(4 / 6)


def test_a_swallowed_small_category_has_zero_recall():
    truth = ["big"] * 9 + ["small"]
    assert worst_recall(truth, [0] * 10) == (0.0, "small")
    assert majority_mapping(truth, [0] * 10) == {0: "big"}


def test_composition_lists_each_cluster():
    assert composition(["a", "b", "a"], [1, 1, 2]) == {"1": {"a": 1, "b": 1}, "2": {"a": 1}}


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError):
        evaluate(["a"], [1, 2])
