"""Organising a PACS: a real Orthanc (Debian's, with its DICOMweb plugin) holding generated series with some
wrong SeriesDescriptions, MONAI Label over its DICOMweb URL, and ``deepmcat organize`` against that URL.

Orthanc is installed by ``.ci/run``; where it is missing these tests are skipped with the reason.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest
from monailabel.client.client import MONAILabelClient, MONAILabelClientException

from deepmcat.cli import main
from deepmcat.generate import generate
from deepmcat.serve import free_port, start_server
from deepmcat.sources import FolderSource
from tests.helpers import APP_CONF, wait_for_training

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("Orthanc") is None or not Path(
        "/usr/share/orthanc/plugins/libOrthancDicomWeb.so").is_file(),
        reason="Orthanc with its DICOMweb plugin is not installed (apt-get install -y orthanc orthanc-dicomweb)"),
]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """4 imbalanced subjects (about 40 series of 12 categories), ~15 % with another category's description."""
    root = tmp_path_factory.mktemp("pacs")
    generate(root / "data", subjects=4, seed=9, balanced=False, wrong_descriptions=0.15, progress=False)
    return root / "data"


@pytest.fixture(scope="module")
def n_series(archive) -> int:
    return len(FolderSource(archive))


@pytest.fixture(scope="module")
def orthanc(archive):
    port = free_port()
    storage = archive.parent / "orthanc"
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "start_orthanc.sh"), str(port), str(storage)],
                            stdout=open(archive.parent / "orthanc.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/system", timeout=2).read()
                break
            except OSError:
                time.sleep(0.25)
        else:
            raise RuntimeError((archive.parent / "orthanc.log").read_text())
        for path in sorted(archive.rglob("*.dcm")):  # Orthanc's REST upload, one instance at a time
            req = urllib.request.Request(f"{url}/instances", data=path.read_bytes(), method="POST",
                                         headers={"Content-Type": "application/dicom"})
            urllib.request.urlopen(req, timeout=30).read()
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def series_truth(archive: Path) -> dict[str, dict]:
    """Series folder → category and whether its description was made wrong."""
    out: dict[str, dict] = defaultdict(lambda: {"wrong": 0})
    with open(archive / "labels.csv") as fh:
        for r in csv.DictReader(fh):
            folder = str(Path(r["path"]).parent)
            out[folder]["category"] = r["category"]
            out[folder]["wrong"] = max(out[folder]["wrong"], int(r["description_wrong"]))
    return dict(out)


def test_orthanc_is_loopback_only_and_holds_the_archive(orthanc, archive, n_series):
    series = json.loads(urllib.request.urlopen(f"{orthanc}/series").read())
    assert len(series) == n_series >= 40
    config = json.loads((archive.parent / "orthanc" / "orthanc.json").read_text())
    assert config["RemoteAccessAllowed"] is False and config["DicomServerEnabled"] is False
    assert config["StorageDirectory"].startswith(str(archive.parent))


def test_monailabel_trains_and_infers_over_dicomweb(orthanc, n_series, tmp_path):
    server = start_server(f"{orthanc}/dicom-web", dict(APP_CONF, clusters=12, model_dir=tmp_path / "model"),
                          log_path=tmp_path / "server.log", env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(tmp_path / "cache")})
    try:
        client = MONAILabelClient(server.url)
        info = client.info()
        assert info["datastore"]["total"] == n_series  # MR series are listed (MONAI Label's default lists only CT)
        client.train_start("deepmcat", {})
        status = wait_for_training(client, timeout=600)
        assert status["status"] == "DONE", status
        stats = client.info()["train_stats"]["deepmcat"]
        assert stats["images"] == n_series and stats["units"] > n_series
        series_uid = json.loads(urllib.request.urlopen(f"{orthanc}/dicom-web/series?limit=1").read())[0]["0020000E"]["Value"][0]
        _, answer = client.infer("deepmcat", series_uid, {})
        answer = json.loads(answer) if isinstance(answer, (bytes, str)) else answer
        assert 0 <= answer["cluster"] < 12 and 0.0 <= answer["confidence"] <= 1.0
        assert client.next_sample("cluster_representative", {})["id"]
        # ids that are not series the PACS listed never reach the cache path or a download
        cache = tmp_path / "cache"
        before = sorted(p.name for p in cache.rglob("*"))
        for bad in ("../../../home/x", "/etc", "1.2.3.4.5.6", series_uid + "/..", "1" * 70):
            with pytest.raises(MONAILabelClientException, match="Status: 404"):
                client.infer("deepmcat", bad, {})
        assert sorted(p.name for p in cache.rglob("*")) == before
    finally:
        server.stop()


def test_organize_the_pacs_flags_wrong_headers(orthanc, archive, n_series, tmp_path):
    model = tmp_path / "model"
    assert main(["train", "--data", f"{orthanc}/dicom-web", "--out", str(model), "--clusters", "12",
                 "--warmup-epochs", "15", "--epochs", "1", "--device", "cpu", "--quiet"]) == 0
    out = tmp_path / "out"
    assert main(["organize", "--model", str(model), "--source", f"{orthanc}/dicom-web", "--out", str(out),
                 "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "series.csv")))
    assert len(rows) == n_series and len({r["series_uid"] for r in rows}) == n_series
    assert all(r["location"].startswith(f"{orthanc}/dicom-web/studies/") and r["error"] == "" for r in rows)

    # the header rule: a series is flagged when its description's (clear) majority cluster is not its own
    by_desc = defaultdict(list)
    for r in rows:
        by_desc[r["series_description"].lower()].append(r["cluster"])
    for r in rows:
        counts = sorted(((by_desc[r["series_description"].lower()].count(c), c) for c in
                         set(by_desc[r["series_description"].lower()])), reverse=True)
        if len(counts) == 1 or counts[0][0] > counts[1][0]:
            assert (r["header_agrees"] == "no") == (counts[0][1] != r["cluster"]), r
    # against the generator's truth: the wrong headers are flagged
    truth = series_truth(archive)
    description_of = {}
    for folder in truth:
        with open(next((archive / folder).glob("*.dcm")), "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            description_of[str(ds.SeriesInstanceUID) + ds.SeriesDescription] = truth[folder]
    wrong = [r for r in rows if description_of[r["series_uid"] + r["series_description"]]["wrong"]]
    assert len(wrong) >= 3
    flagged = [r for r in wrong if r["header_agrees"] == "no"]
    assert len(flagged) >= 0.7 * len(wrong), (len(flagged), len(wrong))

    report = (out / "report.html").read_text()
    assert "Header disagrees with content" in report and "data:image/png;base64," in report
    assert "PatientName" not in report and "PatientID" not in report
