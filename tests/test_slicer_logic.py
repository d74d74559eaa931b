"""The 3D Slicer module's logic (``plugins/slicer/DeepMCAT/DeepMCATLib``) against a real server, outside Slicer.

What needs Slicer itself (saving a volume node, loading a volume, the panel) is only compiled here; its
self-test ``DeepMCATTest`` runs inside Slicer (see the README).
"""

from __future__ import annotations

import json
import py_compile
import subprocess
import sys
import time
from pathlib import Path

import itk
import pytest
from monailabel.client.client import MONAILabelClient

MODULE_DIR = Path(__file__).resolve().parents[1] / "plugins" / "slicer" / "DeepMCAT"
sys.path.insert(0, str(MODULE_DIR))

from DeepMCATLib import DeepMCATClient, DeepMCATError  # noqa: E402
from tests.helpers import wait_for_training  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.integration]


@pytest.fixture(scope="module")
def client(app_server) -> DeepMCATClient:
    client = DeepMCATClient(app_server.url)
    if not client.model_state()["trained"]:
        client.train()
        assert wait_for_training(client)["status"] == "DONE"
    return client


def test_module_files_compile_and_the_logic_needs_no_slicer(tmp_path):
    for path in [MODULE_DIR / "DeepMCAT.py", *sorted((MODULE_DIR / "DeepMCATLib").glob("*.py"))]:
        py_compile.compile(str(path), cfile=str(tmp_path / (path.name + "c")), doraise=True)
    # importing the logic in a clean interpreter pulls in neither Qt nor Slicer
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import DeepMCATLib; "
            "assert not {'qt', 'slicer', 'ctk', 'vtk'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code, str(MODULE_DIR)], check=True)


def test_categorise_a_volume_as_slicer_sends_it(client, app_studies, app_truth, tmp_path):
    # Slicer writes the loaded volume to a temporary NRRD and uploads it
    image = next(i for i, c in app_truth.items() if c == "cine_4ch")
    nrrd = tmp_path / "volume.nrrd"
    itk.imwrite(itk.imread(str(app_studies / f"{image}.nii.gz")), str(nrrd))
    answer = client.categorise_file(str(nrrd))
    assert 0 <= answer.cluster < 4 and 0.0 <= answer.confidence <= 1.0
    assert len(answer.topk) == 3 and answer.topk[0]["cluster"] == answer.cluster
    assert answer.model["trained_at"] and answer.category in answer.summary()
    assert client.categorise_image(image).cluster == answer.cluster


def test_next_sample_download_submit_and_see_it_in_the_datastore(client, app_server, tmp_path):
    sample = client.next_sample("cluster_representative")
    assert sample["id"] and "reason" in sample
    path = client.download_image(sample["id"], str(tmp_path))
    assert Path(path).is_file() and itk.imread(path).GetImageDimension() >= 3
    answer = client.submit_category(sample["id"], "cine_4ch")
    assert answer["category"] == "cine_4ch" and answer["cluster_name"] == "cine_4ch"
    stored = MONAILabelClient(app_server.url).datastore()["objects"][sample["id"]]["labels"]["final"]["info"]
    assert stored["category"] == "cine_4ch"
    assert "cine_4ch" in client.category_names()
    # with that cluster named, the next representative comes from a cluster without a name
    following = client.next_sample("cluster_representative")
    assert following["id"] != sample["id"] and "no name yet" in following["reason"]


def test_start_training_and_follow_its_status(client):
    before = client.model_state()["trained_at"]
    time.sleep(1.1)  # trained_at has one-second resolution
    started = client.train(epochs=1)
    assert started["status"] in ("SUBMITTED", "RUNNING")
    status = wait_for_training(client)
    assert status["status"] == "DONE" and status["epoch"] == status["total_epochs"]
    assert client.model_state()["trained_at"] != before


def test_errors_carry_the_servers_message(client, tmp_path):
    with pytest.raises(DeepMCATError) as info:
        client.categorise_image("no_such_image")
    assert info.value.status == 404 and "not in the datastore" in str(info.value)
    with pytest.raises(DeepMCATError, match="empty"):
        client.submit_category("anything", "  ")
    with pytest.raises(DeepMCATError) as info:
        DeepMCATClient("http://127.0.0.1:9", timeout=5).info()
    assert info.value.status == 0 and "cannot reach" in str(info.value)
    bad = tmp_path / "bad.nrrd"
    bad.write_text(json.dumps({"not": "an image"}))
    with pytest.raises(DeepMCATError) as info:
        client.categorise_file(str(bad))
    assert info.value.status == 422
