"""The 3D Slicer module against a real server: its HTTP logic (``plugins/slicer/DeepMCAT/DeepMCATLib``) on its
own, then the unmodified panel (``DeepMCAT.py``) in a real Qt window on Xvfb, clicked through by
``tests/slicer_panel/drive_panel.py`` (what is real and what is imitated there: plugins/slicer/README.md).
"""

from __future__ import annotations

import json
import os
import py_compile
import shutil
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
from tests.helpers import shared_app_fixtures, wait_for_training  # noqa: E402

pytestmark = [pytest.mark.timeout(600), pytest.mark.integration]


app_studies, app_server = shared_app_fixtures()  # the server this module shares


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


def test_an_unknown_answer_says_so_and_names_the_nearest_cluster():
    from DeepMCATLib.client import Category

    answer = {"category": "unknown", "cluster": 2, "confidence": 0.8, "novel": True,
              "topk": [{"cluster": 2, "category": "cine_sax", "confidence": 0.8}]}
    assert Category.from_json(answer).summary() == "unknown: like no learned category (nearest: cine_sax)"
    known = Category.from_json(dict(answer, category="cine_sax", novel=False))
    assert not known.novel and known.summary() == "cine_sax (80%)"
    assert not Category.from_json({k: v for k, v in answer.items() if k != "novel"}).novel  # an older server


def test_an_answer_for_a_named_series_shows_the_name_and_whether_the_model_agrees():
    from DeepMCATLib.client import Category

    answer = {"category": "cine_sax", "cluster": 2, "confidence": 0.8,
              "topk": [{"cluster": 2, "category": "cine_sax", "confidence": 0.8}]}
    assert Category.from_json(answer).label is None
    assert Category.from_json(dict(answer, label="cine_sax")).summary() == "cine_sax (80%); labelled so"
    assert Category.from_json(dict(answer, label="lge")).summary() == "labelled lge; the model says cine_sax (80%)"


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


def test_the_client_sends_the_auth_token_it_is_given():
    """A server with authentication on needs ``Authorization: Bearer <token>`` on every request."""
    import http.server
    import threading

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"models": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        DeepMCATClient(url, token="s3cret").info()
        DeepMCATClient(url).info()
    finally:
        server.shutdown()
    assert seen == ["Bearer s3cret", None]


# ------------------------------------------------------------------------ the real panel in a real Qt window


def _panel_missing() -> str | None:
    """Why the panel harness cannot run here, or None."""
    import importlib.util

    for module, package in (("PyQt5", "PyQt5"), ("slicer_core", "slicer-core")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -e '.[slicer]')"
    if shutil.which("xvfb-run") is None:
        return "Xvfb is not installed (apt-get install xvfb and the Qt X11 libraries; .ci/run does)"
    return None


@pytest.mark.skipif(_panel_missing() is not None, reason=str(_panel_missing()))
def test_the_real_panel_driven_by_clicks_against_the_server(client, app_server, app_studies, tmp_path):
    """``DeepMCAT.py`` unmodified, in a real Qt window on Xvfb over slicer-core's MRML scene, clicked through
    every step a clinician takes against the real server (tests/slicer_panel/drive_panel.py); coverage of
    the module's lines is measured while it runs."""
    out = tmp_path / "panel"
    data = tmp_path / "coverage.json"
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", COVERAGE_FILE=str(tmp_path / ".coverage"), PYTHONPATH=str(root))
    run = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "-m", "coverage", "run",
                          f"--include={MODULE_DIR / 'DeepMCAT.py'}", "-m", "tests.slicer_panel.drive_panel",
                          "--server", app_server.url, "--studies", str(app_studies), "--out", str(out)],
                         env=env, cwd=root, capture_output=True, text=True, timeout=500)
    assert (out / "results.json").is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    failed = [s for s in results["steps"] if not s["ok"]]
    assert not failed and not results["exceptions"], (failed, results["exceptions"], run.stderr[-2000:])
    assert len(results["steps"]) >= 28
    assert [d["step"] for d in results["dialogs"]] == ["unreadable-volume", "unreachable-server"]
    # what the panel submitted is in the server's datastore
    submitted = results["submitted"]
    stored = MONAILabelClient(app_server.url).datastore()["objects"][submitted["image"]]["labels"]["final"]["info"]
    assert stored["category"] == submitted["category"]
    subprocess.run([sys.executable, "-m", "coverage", "json", "-o", str(data)], env=env, cwd=root, check=True,
                   capture_output=True)
    covered = json.loads(data.read_text())["totals"]["percent_covered"]
    assert covered >= 90, f"the harness ran {covered:.0f} % of DeepMCAT.py"
    shots = sorted(out.glob("*.png"))
    assert len(shots) >= 10 and all(p.stat().st_size > 5000 for p in shots)
    if os.environ.get("DEEPMCAT_PANEL_SHOTS"):  # where a developer wants the screenshots kept
        for shot in shots:
            shutil.copy(shot, Path(os.environ["DEEPMCAT_PANEL_SHOTS"]) / shot.name)
