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
from deepmcat.inference import Model
from deepmcat.metrics import evaluate
from deepmcat.serve import free_port

pytestmark = [pytest.mark.timeout(600), pytest.mark.integration]
ARGS = ["--clusters", "6", "--frames", "4", "--size", "32", "--warmup-epochs", "6", "--epochs", "2",
        "--batch-size", "16", "--device", "cpu", "--seed", "3", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from deepmcat.generate import generate

    out = tmp_path_factory.mktemp("dist")
    generate(out, subjects=4, seed=2, balanced=True, progress=False)
    return out


def quality(model_dir, data) -> dict:
    """Scores of a model's clusters, and the 95th percentile of NMI with the same clusters shuffled."""
    model = Model(model_dir, device="cpu")
    collection = load_collection(data, PreprocessConfig(frames=4, size=32), progress=False)
    truth = unit_truth(collection.units, read_labels(data / "labels.csv"), data)
    clusters = [p.cluster for p in model.predict(collection.tensors)]
    rng = np.random.default_rng(0)
    shuffled = [evaluate(truth, list(rng.permutation(clusters)))["nmi"] for _ in range(200)]
    return dict(evaluate(truth, clusters), shuffled_nmi_p95=float(np.percentile(shuffled, 95)))


def test_two_processes_train_on_disjoint_shards_like_one(data, tmp_path):
    bin_dir = os.path.dirname(sys.executable)
    single, double = tmp_path / "single", tmp_path / "double"
    subprocess.run([os.path.join(bin_dir, "deepmcat"), "train", "--data", str(data), "--out", str(single), *ARGS],
                   check=True, capture_output=True)
    run = subprocess.run([os.path.join(bin_dir, "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                          "--master_port", str(free_port()), "-m", "deepmcat.cli", "train", "--distributed",
                          "--data", str(data), "--out", str(double), *ARGS], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "x 2 processes" in run.stdout

    state = checkpoint.load(double / checkpoint.MODEL)  # loads, checksum verified
    shards = state["distributed"]["units_by_rank"]
    assert state["distributed"]["world"] == 2 and len(shards) == 2
    assert shards[0] and shards[1] and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(state["n_units"]))
    assert checkpoint.load(double / checkpoint.CHECKPOINT)["epoch"] == 8

    one, two = quality(single, data), quality(double, data)
    assert one["nmi"] > one["shuffled_nmi_p95"] and two["nmi"] > two["shuffled_nmi_p95"], (one, two)
    assert abs(one["purity"] - two["purity"]) <= 0.15, (one, two)
    assert abs(one["nmi"] - two["nmi"]) <= 0.15, (one, two)
