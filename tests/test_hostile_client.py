"""A hostile client against the real server (``monailabel start_server`` with the DeepMCAT app): model
replacement, datastore paths, foreign origins and hosts, endpoints the app does not need, unbounded training,
uploads left behind, and one slow request freezing the rest. Each attempt is answered 4xx with a reason; the
model file and the studies folder hash the same afterwards, nothing appears outside them, the server's
temporary folder is empty and the server keeps answering."""

from __future__ import annotations

import hashlib
import http.client
import io
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import nibabel as nib
import numpy as np
import psutil
import pytest
import requests
import torch
from monailabel.client.client import MONAILabelClient

from deepmcat import checkpoint
from tests.helpers import wait_for_training
from tests.test_reliability import snapshot
from tests.test_security import RunsACommand

pytestmark = [pytest.mark.timeout(600), pytest.mark.integration]


@pytest.fixture(scope="module")
def hostile_setup(shared_app_studies, shared_app_server):
    """The shared server (conftest.shared_app_server): its own temporary folder (to check that uploads do not
    stay behind), no model yet when this module starts."""
    return shared_app_studies.parent, shared_app_studies, shared_app_server


def private_tmp(root: Path) -> Path:
    (folder,) = [p for p in (root / "tmp").iterdir() if p.name.startswith("deepmcat-server-")]
    return folder


def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(b"\x1f\x8b this is not an image")
    return path


def declared_upload(url: str, size: int) -> requests.Response:
    """An upload that declares ``size`` bytes and sends a few: refused from its headers, nothing read."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("POST", "/infer/deepmcat")
    conn.putheader("Content-Type", "multipart/form-data; boundary=xyz")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    conn.send(b"--xyz\r\n")
    answer = conn.getresponse()
    response = requests.Response()
    response.status_code, response.headers = answer.status, requests.structures.CaseInsensitiveDict(answer.getheaders())
    conn.close()
    return response


def test_a_garbage_upload_before_any_training_is_the_clients_error(hostile_setup, tmp_path):
    root, studies, server = hostile_setup
    with open(garbage(tmp_path), "rb") as fh:
        answer = requests.post(f"{server.url}/infer/deepmcat", files={"file": ("g.nii.gz", fh)}, timeout=30)
    assert answer.status_code == 422 and "cannot categorise" in answer.json()["detail"]
    image = next(p.name.split(".nii")[0] for p in studies.glob("*.nii.gz"))
    no_model = requests.post(f"{server.url}/infer/deepmcat", params={"image": image}, timeout=30)
    assert no_model.status_code == 503 and "train" in no_model.json()["detail"]
    assert not any(private_tmp(root).iterdir())


def test_training_refuses_run_sync_and_unbounded_settings(hostile_setup):
    _, _, server = hostile_setup
    url = f"{server.url}/train/deepmcat"
    for params, status, phrase in (({"size": 2048}, 400, "'size' must be between"),
                                   ({"frames": 256}, 400, "'frames'"), ({"epochs": 100000}, 400, "'epochs'"),
                                   ({"clusters": "many"}, 400, "integer"),
                                   ({"centre_crop": 1.5}, 400, "'centre_crop'")):
        answer = requests.post(url, json=params, timeout=30)
        assert (answer.status_code, phrase in answer.json()["detail"]) == (status, True), answer.text
    answer = requests.post(f"{server.url}/train/", json={"deepmcat": {"size": 4096}}, timeout=30)
    assert answer.status_code == 400
    answer = requests.post(url, params={"run_sync": "true"}, json={}, timeout=30)
    assert answer.status_code == 400 and "run_sync" in answer.json()["detail"]
    assert requests.get(f"{server.url}/train/", timeout=30).status_code == 404  # nothing was started
    client = MONAILabelClient(server.url)
    client.train_start("deepmcat", {})
    assert wait_for_training(client)["status"] == "DONE"


def test_hostile_requests_are_refused_and_change_nothing(hostile_setup, tmp_path):
    root, studies, server = hostile_setup
    model_dir = root / "model"
    image = next(p.name.split(".nii")[0] for p in sorted(studies.glob("*.nii.gz")))
    before = snapshot(studies, model_dir)
    rss_before = psutil.Process(server.process.pid).memory_info().rss
    outside = tmp_path / "outside"
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"format": "deepmcat", "net": RunsACommand(marker)}, buffer)
    payload = buffer.getvalue()
    evil_model = checkpoint.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    nifti = studies / f"{image}.nii.gz"
    label = b'{"category": "cine_sax"}'
    url = server.url

    def put(path, name, data, **params):
        return requests.put(f"{url}{path}", params=params, files={name: (f"x{Path(name).suffix}.nii.gz", data)},
                            data={"params": "{}"}, timeout=30)

    attempts = {
        "model upload": (lambda: requests.put(f"{url}/model/deepmcat", files={"file": ("m.pt", evil_model)},
                                              timeout=30), 403),
        "model delete": (lambda: requests.delete(f"{url}/model/deepmcat", timeout=30), 403),
        "image at an absolute path": (lambda: put("/datastore/image", "file", nifti.read_bytes(),
                                                  image=str(outside / "abs")), 400),
        "image id traversal": (lambda: put("/datastore/image", "file", nifti.read_bytes(), image="../../x"), 400),
        "image of another kind": (lambda: requests.put(f"{url}/datastore/image", params={"image": "ok_id"},
                                                       files={"file": ("a.sh", b"#!/bin/sh")}, timeout=30), 415),
        "label tag traversal": (lambda: put("/datastore/label", "label", label, image=image,
                                            tag="../../../outside"), 400),
        "label tag absolute": (lambda: put("/datastore/label", "label", label, image=image, tag=str(outside)), 400),
        "label remove traversal": (lambda: requests.delete(f"{url}/datastore/label", timeout=30,
                                                           params={"id": image, "tag": "../../x"}), 400),
        "image remove": (lambda: requests.delete(f"{url}/datastore/image", params={"id": image}, timeout=30), 403),
        "forged scores": (lambda: requests.put(f"{url}/datastore/image/info", params={"image": image},
                                               data={"info": '{"deepmcat": {"cluster": 0}}'}, timeout=30), 403),
        "label info": (lambda: requests.put(f"{url}/datastore/label/info", timeout=30,
                                            params={"label": image, "tag": "final"}, data={"info": "{}"}), 403),
        "sessions": (lambda: requests.put(f"{url}/session/", files={"files": ("a", b"x")}, timeout=30), 403),
        "batch inference": (lambda: requests.post(f"{url}/batch/infer/deepmcat", json={}, timeout=30), 403),
        "dicom proxy": (lambda: requests.get(f"{url}/proxy/dicom/qido/studies", timeout=30), 403),
        "ohif": (lambda: requests.get(f"{url}/ohif/index.html", timeout=30), 403),
        "reload": (lambda: requests.post(f"{url}/reload", timeout=30), 403),
        "dataset download": (lambda: requests.get(f"{url}/datastore/dataset", timeout=30), 403),
        "infer with a session": (lambda: requests.post(f"{url}/infer/deepmcat", timeout=30,
                                                       params={"image": image, "session_id": "x"}), 400),
        "scoring run_sync": (lambda: requests.post(f"{url}/scoring/deepmcat_clusters", params={"run_sync": 1},
                                                   timeout=30), 400),
        "foreign origin": (lambda: requests.get(f"{url}/info/", headers={"Origin": "https://evil.example"},
                                                timeout=30), 403),
        "foreign preflight": (lambda: requests.options(f"{url}/train/deepmcat", timeout=30, headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}), 403),
        "dns rebinding": (lambda: requests.get(f"{url}/info/", headers={"Host": "evil.example:8000"},
                                               timeout=30), 403),
        "upload above the limit": (lambda: declared_upload(url, 2 * 2**30), 413),
        "infer without image or file": (lambda: requests.post(f"{url}/infer/deepmcat", timeout=30), 400),
    }
    answers = {}
    for name, (call, expected) in attempts.items():
        try:
            response = call()
            answers[name] = (response.status_code, "access-control-allow-origin" in response.headers)
        except requests.ConnectionError:  # the server may close a connection whose body it did not read
            answers[name] = ("closed", False)
        assert answers[name] == (expected, False), (name, answers[name])
    assert not outside.exists() and not marker.exists()
    assert not any(p.name == "outside" for p in root.rglob("*"))
    assert snapshot(studies, model_dir) == before
    assert not any(private_tmp(root).iterdir()), list(private_tmp(root).iterdir())
    # the server's own origin and MONAI Label's client still work, and the model still answers
    own = requests.get(f"{url}/info/", headers={"Origin": url}, timeout=30)
    assert own.status_code == 200 and own.json()["models"]["deepmcat"]["deepmcat"]["trained"] is True
    answer = requests.post(f"{url}/infer/deepmcat", params={"image": image}, timeout=60)
    assert answer.status_code == 200 and answer.json()["category"]
    growth = (psutil.Process(server.process.pid).memory_info().rss - rss_before) / 2**20
    assert growth < 300, f"server memory grew by {growth:.0f} MB"


def test_info_answers_while_a_heavy_upload_is_processed(hostile_setup, tmp_path):
    root, _, server = hostile_setup
    heavy = tmp_path / "heavy.nii"  # 320 slice positions x 24 frames: every one decoded and categorised
    data = np.random.default_rng(0).random((96, 96, 320, 24), dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 8.0, 1.0])), heavy)
    result: dict = {}

    def upload() -> None:
        tic = time.perf_counter()
        with open(heavy, "rb") as fh:
            response = requests.post(f"{server.url}/infer/deepmcat", files={"file": ("heavy.nii", fh)}, timeout=300)
        result.update(status=response.status_code, seconds=time.perf_counter() - tic)

    worker = threading.Thread(target=upload)
    worker.start()
    time.sleep(0.1)  # an idle 2-core machine answers the whole upload in under a second
    latencies, during = [], []
    while worker.is_alive() and len(latencies) < 5:
        tic = time.perf_counter()
        assert requests.get(f"{server.url}/info/", timeout=30).status_code == 200
        latencies.append(time.perf_counter() - tic)
        during.append(worker.is_alive())  # answered while the upload was still being processed
        time.sleep(0.2)
    worker.join()
    assert result["status"] == 200
    assert any(during), f"the upload ended before /info was answered ({result}, {latencies})"
    assert max(latencies) < 2.0, (latencies, result)
    assert not any(private_tmp(root).iterdir())


def test_the_datastore_serves_nothing_through_links_out_of_the_studies_folder(tmp_path):
    """The app's datastore, used in a process of its own as the server uses it (MONAI Label's modules load
    SimpleITK, whose SWIG types would replace faiss' ones in this test process, which loaded faiss first)."""
    import os
    import subprocess
    import sys

    studies = tmp_path / "studies"
    studies.mkdir()
    secret = tmp_path / "secret.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.float32), np.eye(4)), secret)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2), np.float32), np.eye(4)), studies / "inside.nii.gz")
    os.symlink(secret, studies / "link.nii.gz")
    check = f"""
from lib.datastores import CategoryLocalDatastore
datastore = CategoryLocalDatastore({str(studies)!r}, extensions=["*.nii.gz"], auto_reload=False)
assert datastore.get_image_uri("inside").endswith("inside.nii.gz")
assert "link" in datastore.list_images() and datastore.get_image_uri("link") == ""
assert datastore.get_label_uri("inside", "../../x") == ""
print("checked")
"""
    app = Path(__file__).resolve().parents[1] / "apps" / "deepmcat"
    out = subprocess.run([sys.executable, "-c", check], cwd=app, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "checked" in out.stdout, out.stderr[-2000:]
