"""The MONAI Label app as users reach it: a real ``monailabel start_server`` process driven by
``monailabel.client.MONAILabelClient`` (the client 3D Slicer uses) over a generated NIfTI studies folder.

The module has its own server (``app_server`` in conftest.py), started with no model: the first two tests see
it untrained, the training test trains it. Every later test asks for the state it needs through a fixture
(``trained``, ``sax_named``) that makes it when missing, so any one of them also runs alone.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from monailabel.client.client import MONAILabelClient, MONAILabelClientException

from deepmcat.serve import free_port
from tests.helpers import wait_for_training

pytestmark = [pytest.mark.timeout(600), pytest.mark.integration]


@pytest.fixture(scope="module")
def client(app_server) -> MONAILabelClient:
    return MONAILabelClient(app_server.url)


@pytest.fixture
def trained(client) -> MONAILabelClient:
    """The client of a server with a published model (trained here when no earlier test did)."""
    if not client.info()["models"]["deepmcat"]["deepmcat"]["trained"]:
        client.train_start("deepmcat", {})
        assert wait_for_training(client)["status"] == "DONE"
    return client


@pytest.fixture
def sax_named(trained, app_truth, tmp_path) -> str:
    """A cine_sax image labelled "cine_sax" (its cluster named by it); its id."""
    sax = next(i for i, c in app_truth.items() if c == "cine_sax")
    if "final" not in trained.datastore()["objects"][sax]["labels"]:
        save_category(trained, sax, "cine_sax", tmp_path)
    return sax

def infer(client: MONAILabelClient, image: str, file: str | None = None) -> dict:
    """The client hands a JSON-only answer back as raw bytes; decode it."""
    _, answer = client.infer("deepmcat", image, {}, file=file)
    return json.loads(answer) if isinstance(answer, (bytes, str)) else answer


def http_error(call) -> str:
    with pytest.raises(MONAILabelClientException) as info:
        call()
    return info.value.msg


def test_info_before_training(client):
    info = client.info()
    model = info["models"]["deepmcat"]
    assert model["type"] == "classification"
    assert model["deepmcat"] == {"trained": False}
    assert info["trainers"]["deepmcat"]["config"]["clusters"] == 4
    assert set(info["strategies"]) >= {"least_confident", "cluster_representative", "label_conflict"}
    assert info["datastore"]["total"] == 40


def test_infer_before_training_says_no_model_yet(client, app_truth):
    image = next(iter(app_truth))
    message = http_error(lambda: client.infer("deepmcat", image, {}))
    assert "503" in message and "no DeepMCAT model" in message and "train" in message


def test_train_publishes_a_model_and_reports_progress(client):
    started = client.train_start("deepmcat", {})
    assert started["status"] in ("SUBMITTED", "RUNNING")
    status = wait_for_training(client)
    assert status["status"] == "DONE", status
    info = client.info()
    stats = info["train_stats"]["deepmcat"]
    assert stats["status"] == "DONE" and stats["epoch"] == stats["total_epochs"] == 3
    assert [h["stage"] for h in stats["history"]] == ["warm-up", "warm-up", "cluster"]
    assert stats["images"] == 40 and stats["units"] > 40  # 4-D stacks hold several units
    assert sum(stats["cluster_sizes"].values()) == stats["units"]
    state = info["models"]["deepmcat"]["deepmcat"]
    assert state["trained"] is True and state["clusters"] == 4 and state["trained_at"]
    assert len(state["cluster_names"]) == 4


def check_answer(answer: dict) -> None:
    assert isinstance(answer["category"], str) and answer["category"]
    assert 0 <= answer["cluster"] < 4
    assert 0.0 <= answer["confidence"] <= 1.0
    assert len(answer["topk"]) == 3 and answer["topk"][0]["confidence"] >= answer["topk"][1]["confidence"]
    assert answer["model"]["version"] and answer["model"]["trained_at"]


def test_infer_by_id_gives_category_and_per_unit_list_for_a_stack(trained, app_truth):
    client = trained
    sax = next(i for i, c in app_truth.items() if c == "cine_sax")
    answer = infer(client, sax)
    check_answer(answer)
    assert answer["n_units"] > 1 and len(answer["units"]) == answer["n_units"]
    assert all(0 <= u["cluster"] < 4 for u in answer["units"])
    # the series category is the majority of its units
    votes = [u["cluster"] for u in answer["units"]]
    assert votes.count(answer["cluster"]) == max(votes.count(c) for c in set(votes))


def test_infer_by_uploaded_file(trained, app_studies, app_truth):
    client = trained
    image = next(i for i, c in app_truth.items() if c == "cine_4ch")
    by_id = infer(client, image)
    answer = infer(client, "", file=str(app_studies / f"{image}.nii.gz"))
    check_answer(answer)
    assert answer["n_units"] == 1 and "units" not in answer
    assert answer["cluster"] == by_id["cluster"]
    assert answer["confidence"] == pytest.approx(by_id["confidence"], abs=1e-3)


def save_category(client, image: str, category: str, tmp_path: Path) -> dict:
    label = tmp_path / f"{image}.json"
    label.write_text(json.dumps({"category": category}))
    return client.save_label(image, str(label), tag="final", params={"category": category})


def test_label_names_its_cluster_and_shows_in_datastore(trained, app_truth, tmp_path):
    client = trained
    sax = next(i for i, c in app_truth.items() if c == "cine_sax")
    answer = save_category(client, sax, "cine_sax", tmp_path)
    assert answer["category"] == "cine_sax" and answer["cluster_name"] == "cine_sax"
    assert answer["conflict"] is False
    stored = client.datastore()["objects"][sax]["labels"]["final"]["info"]
    assert stored["category"] == "cine_sax"
    again = infer(client, sax)
    assert again["cluster"] == answer["cluster"] and again["category"] == "cine_sax"
    assert "cine_sax" in client.info()["models"]["deepmcat"]["labels"]


def test_strategies_pick_the_next_image(trained, sax_named, app_truth, tmp_path):
    client, sax = trained, sax_named  # the one labelled image so far
    lc = client.next_sample("least_confident", {})
    assert lc["id"] in app_truth and lc["id"] != sax and 0 <= lc["confidence"] <= 1
    rep = client.next_sample("cluster_representative", {})
    assert rep["id"] in app_truth and "has no name yet" in rep["reason"]
    named = client.info()["models"]["deepmcat"]["deepmcat"]["cluster_names"]
    assert named[rep["cluster"]].startswith("cluster_")  # its cluster really has no name
    assert client.next_sample("label_conflict", {}) == {}

    # a second label in the named cluster that disagrees (tie broken alphabetically) is a conflict
    answer = infer(client, sax)
    same_cluster = [i for i in app_truth if i != sax and infer(client, i)["cluster"] == answer["cluster"]]
    assert same_cluster, "the labelled image's cluster has other members"
    # another short-axis stack: a flow series' stored score (computed with its examination after training) can
    # name another cluster than infer (which reads it alone) does, and the conflict is counted on stored scores
    other = next((i for i in same_cluster if app_truth[i] == app_truth[sax]), same_cluster[0])
    saved = save_category(client, other, "zz_other", tmp_path)
    assert saved["conflict"] is True and saved["cluster_name"] == "cine_sax"
    conflict = client.next_sample("label_conflict", {})
    assert conflict["id"] == other and "zz_other" in conflict["reason"]


def test_retrain_uses_labels_and_republishes(trained, sax_named, app_server, app_truth, tmp_path):
    client = trained
    if not any(v["labels"] for k, v in client.datastore()["objects"].items() if k != sax_named):
        save_category(client, next(i for i in app_truth if i != sax_named), "zz_other", tmp_path)  # run alone
    before = client.info()["models"]["deepmcat"]["deepmcat"]["trained_at"]
    time.sleep(1.1)  # trained_at has one-second resolution
    client.train_start("deepmcat", {"epochs": 1})
    status = wait_for_training(client)
    assert status["status"] == "DONE", status
    info = client.info()
    stats = info["train_stats"]["deepmcat"]
    assert stats["labelled_images"] == 2
    assert info["models"]["deepmcat"]["deepmcat"]["trained_at"] != before
    # the published model says which clinicians' categories it was trained with, unit by unit
    from deepmcat.modelfile import load_model

    trained_with = load_model(Path(app_server.conf["model_dir"])).labels
    assert set(trained_with) == {"cine_sax", "zz_other"} and trained_with["cine_sax"] > 1, trained_with


def test_deepmcat_serve_serves_a_trained_model_folder(trained, app_server, app_studies):
    """What the README's main job ends with: ``deepmcat serve`` (called by ``deepmcat demo``)."""
    port = free_port()
    cli = os.path.join(os.path.dirname(sys.executable), "deepmcat")
    proc = subprocess.Popen([cli, "serve", "--model", app_server.conf["model_dir"], "--studies", str(app_studies),
                             "--port", str(port), "--conf", "clusters=4"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        first_line, deadline = "", time.time() + 60
        while not first_line.strip():  # a server that dies or stays silent fails the test, not hangs it
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.time()))
            assert ready, "deepmcat serve printed nothing within 60 s"
            first_line = proc.stdout.readline()
            assert first_line or proc.poll() is None, f"deepmcat serve exited with {proc.returncode}"
        assert f"http://127.0.0.1:{port}" in first_line
        deadline, info = time.time() + 120, None
        while time.time() < deadline and info is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/info/", timeout=5) as resp:
                    info = json.loads(resp.read())
            except OSError:
                time.sleep(0.5)
        assert info is not None, "deepmcat serve did not answer"
        assert info["models"]["deepmcat"]["deepmcat"]["trained"] is True
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
