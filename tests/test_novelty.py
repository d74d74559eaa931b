"""The novelty score and its calibration against other examinations (deepmcat.novelty)."""

from __future__ import annotations

import numpy as np
import pytest

from deepmcat import novelty
from deepmcat.novelty import NoveltyReference, fit_reference


def unit_sphere(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_scores_are_the_mean_squared_distance_to_the_nearest_reference_points():
    rng = np.random.default_rng(0)
    points = unit_sphere(rng.normal(size=(40, 6)))
    reference = fit_reference(points, np.repeat(np.arange(8), 5), neighbours=3, max_points=100)
    queries = unit_sphere(rng.normal(size=(7, 6)))
    d2 = ((queries[:, None] - points[None]) ** 2).sum(-1)
    assert reference.scores(queries) == pytest.approx(np.sort(d2, axis=1)[:, :3].mean(axis=1), rel=1e-5)
    assert reference.scores(np.zeros((0, 6), np.float32)).shape == (0,)


def test_the_threshold_is_calibrated_without_each_units_own_examination():
    """Each examination repeats its units nearly exactly (as the slices and frames of one series do): scored
    with its own examination, every training unit would be at distance ~0 and any new examination unknown."""
    rng = np.random.default_rng(1)
    centres = unit_sphere(rng.normal(size=(3, 8)))
    exams, points = [], []
    for exam in range(10):
        shift = rng.normal(scale=0.15, size=(3, 8))  # how this examination differs from the others
        for _ in range(6):
            points.append(centres + shift + rng.normal(scale=1e-3, size=(3, 8)))
            exams += [exam] * 3
    points = unit_sphere(np.concatenate(points))
    reference = fit_reference(points, np.array(exams), neighbours=5, max_points=10_000)
    assert np.all(np.diff(reference.percentiles) >= 0)
    new_exam = unit_sphere(centres + rng.normal(scale=0.15, size=(3, 8)))
    assert np.all(reference.scores(new_exam) <= reference.threshold(100) * 1.5)
    assert reference.threshold(5) > 10 * reference.scores(points[:3]).max()  # own examination: ~0
    outsider = unit_sphere(rng.normal(size=(20, 8)))
    assert np.median(reference.scores(outsider)) > reference.threshold(99)


def test_large_collections_keep_a_sample_and_state_round_trips():
    rng = np.random.default_rng(2)
    points = unit_sphere(rng.normal(size=(500, 4)))
    reference = fit_reference(points, np.arange(500) % 50, neighbours=5, max_points=120, seed=3)
    assert reference.points.shape == (120, 4)
    assert {tuple(p) for p in reference.points} <= {tuple(p) for p in points}
    again = NoveltyReference.from_state(reference.state())
    assert np.array_equal(again.points, reference.points) and again.neighbours == 5
    assert np.array_equal(again.percentiles, reference.percentiles)
    assert NoveltyReference.from_state(None) is None


def test_one_group_leaves_the_threshold_infinite_and_bad_settings_are_named():
    points = unit_sphere(np.random.default_rng(4).normal(size=(6, 3)))
    reference = fit_reference(points, np.zeros(6), neighbours=5, max_points=10)
    assert reference.threshold(99.9) == np.inf and not np.any(reference.scores(points) > reference.threshold(99.9))
    with pytest.raises(ValueError, match="neighbour"):
        fit_reference(points, np.arange(6), neighbours=0, max_points=10)


@pytest.mark.parametrize("batched", [0, 3, 1000])
def test_small_and_large_groups_are_left_out_alike(batched, monkeypatch):
    """One search for small groups (their own neighbours dropped), one excluding search per large group: the
    same scores either way, equal to leaving each group out by hand."""
    rng = np.random.default_rng(5)
    points = unit_sphere(rng.normal(size=(30, 5)))
    groups = np.repeat(np.arange(8), [1, 2, 3, 4, 5, 6, 7, 2])
    monkeypatch.setattr(novelty, "BATCHED_GROUP", batched)
    reference = fit_reference(points, groups, neighbours=4, max_points=100)
    expected = []
    for i, g in enumerate(groups):
        d2 = ((points[groups != g] - points[i]) ** 2).sum(1)
        expected.append(np.sort(d2)[:4].mean())
    assert reference.percentiles == pytest.approx(np.percentile(expected, np.arange(101)), rel=1e-5)


def test_the_structure_columns_weigh_structure_scale_times_as_much():
    """Content columns first, then the series structure: the score measures the structure ``structure_scale``
    times as far, in the reference and the queries alike; a reference published before the scale existed
    (no such keys in its state) weighs it as the clustering does."""
    rng = np.random.default_rng(6)
    content, structure = unit_sphere(rng.normal(size=(30, 4))), rng.normal(scale=0.3, size=(30, 2))
    points = np.hstack([content, structure]).astype(np.float32)
    reference = fit_reference(points, np.arange(30) % 6, neighbours=3, max_points=100, content_dims=4,
                              structure_scale=2.0)
    doubled = np.hstack([content, 2 * structure]).astype(np.float32)
    assert np.allclose(reference.points, doubled)
    query = np.hstack([unit_sphere(rng.normal(size=(5, 4))), rng.normal(scale=0.3, size=(5, 2))]).astype(np.float32)
    d2 = ((np.hstack([query[:, :4], 2 * query[:, 4:]])[:, None] - doubled[None]) ** 2).sum(-1)
    assert reference.scores(query) == pytest.approx(np.sort(d2, axis=1)[:, :3].mean(axis=1), rel=1e-5)
    again = NoveltyReference.from_state(reference.state())
    assert again.structure_scale == 2.0 and again.scores(query) == pytest.approx(reference.scores(query))
    old = {k: v for k, v in reference.state().items() if k not in ("content_dims", "structure_scale")}
    assert NoveltyReference.from_state(old).structure_scale == 1.0
    with pytest.raises(ValueError, match="structure scale"):
        fit_reference(points, np.arange(30) % 6, neighbours=3, max_points=100, content_dims=4, structure_scale=0)


def test_unknown_coordinates_are_left_out_of_the_score(monkeypatch):
    """A series read alone may not know its stack size or pair flag (NaN): it is scored over the coordinates it
    knows, against every reference point, in batches; the other rows as before."""
    monkeypatch.setattr(novelty, "PARTIAL_BATCH", 2)
    rng = np.random.default_rng(7)
    points = np.hstack([unit_sphere(rng.normal(size=(30, 4))), rng.normal(scale=0.3, size=(30, 2))]).astype(np.float32)
    reference = fit_reference(points, np.arange(30) % 6, neighbours=3, max_points=100)
    query = np.hstack([unit_sphere(rng.normal(size=(5, 4))), rng.normal(scale=0.3, size=(5, 2))]).astype(np.float32)
    whole = reference.scores(query)
    query[1:4, 5] = np.nan
    known = [0, 1, 2, 3, 4]
    d2 = ((query[1:4, None, known] - points[None, :, known]) ** 2).sum(-1)
    scores = reference.scores(query)
    assert scores[1:4] == pytest.approx(np.sort(d2, axis=1)[:, :3].mean(axis=1), rel=1e-5)
    assert scores[[0, 4]] == pytest.approx(whole[[0, 4]]) and np.isfinite(scores).all()
