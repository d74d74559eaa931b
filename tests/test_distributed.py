"""``deepmcat train --distributed`` under ``torchrun --nproc_per_node 2`` on the CPU (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from deepmcat import checkpoint
from deepmcat.labels import read_labels, unit_truth
from deepmcat.config import PreprocessConfig
from deepmcat.data import load_collection
from deepmcat.features import extract_features
from deepmcat.inference import Model
from deepmcat.serve import free_port

pytestmark = [pytest.mark.timeout(600), pytest.mark.integration]
ARGS = ["--clusters", "6", "--frames", "4", "--size", "32", "--warmup-epochs", "6", "--epochs", "2",
        "--device", "cpu", "--seed", "3", "--quiet"]
#: units per batch in one process; two take half each (``--batch-size`` is per process), so that both runs
#: take the same optimiser steps on batches of one size
BATCH = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from deepmcat.generate import generate

    out = tmp_path_factory.mktemp("dist")
    generate(out, subjects=4, seed=2, balanced=True, progress=False)
    return out


def quality(model_dir, data) -> tuple[float, float]:
    """How well a model's network features tell the categories apart: each unit named by its nearest unit of
    another examination (accuracy), and the 95th percentile of that accuracy with the names shuffled. The
    features, not the final clusters: at this size the cut (K = 6 for 12 categories) moves with every setting
    of the final clustering, which is not what sharding changes."""
    model = Model(model_dir, device="cpu")
    collection = load_collection(data, PreprocessConfig(frames=4, size=32), progress=False)
    truth = np.array(unit_truth(collection.units, read_labels(data / "labels.csv"), data))
    features = extract_features(model.net, collection.tensors, model.device, amp=False)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    similarity = features @ features.T
    studies = np.array([u.study for u in collection.units])
    similarity[studies[:, None] == studies[None, :]] = -np.inf
    nearest = similarity.argmax(axis=1)
    rng = np.random.default_rng(0)
    shuffled = [float(np.mean(t[nearest] == t)) for t in (rng.permutation(truth) for _ in range(200))]
    return float(np.mean(truth[nearest] == truth)), float(np.percentile(shuffled, 95))


def test_two_processes_train_on_disjoint_shards_like_one(data, tmp_path):
    bin_dir = os.path.dirname(sys.executable)
    single, double = tmp_path / "single", tmp_path / "double"
    subprocess.run([os.path.join(bin_dir, "deepmcat"), "train", "--data", str(data), "--out", str(single), *ARGS,
                    "--batch-size", str(BATCH)], check=True, capture_output=True)
    run = subprocess.run([os.path.join(bin_dir, "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                          "--master_port", str(free_port()), "-m", "deepmcat.cli", "train", "--distributed",
                          "--data", str(data), "--out", str(double), *ARGS, "--batch-size", str(BATCH // 2)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "x 2 processes" in run.stdout

    state = checkpoint.load(double / checkpoint.MODEL)  # loads, checksum verified
    shards = state["distributed"]["units_by_rank"]
    assert state["distributed"]["world"] == 2 and len(shards) == 2
    assert shards[0] and shards[1] and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(state["n_units"]))
    assert checkpoint.load(double / checkpoint.CHECKPOINT)["epoch"] == 8

    (one, one_chance), (two, two_chance) = quality(single, data), quality(double, data)
    assert one > one_chance and two > two_chance, (one, one_chance, two, two_chance)
    assert abs(one - two) <= 0.15, (one, two)
