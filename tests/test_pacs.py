"""Organising a PACS: a real Orthanc (Debian's, with its DICOMweb plugin) holding generated series with some
wrong SeriesDescriptions, MONAI Label over its DICOMweb URL, and ``deepmcat organize`` against that URL.

Orthanc is installed by ``.ci/run``; where it is missing these tests are skipped with the reason.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
import pytest
from monailabel.client.client import MONAILabelClient, MONAILabelClientException

from deepmcat.cli import main
from deepmcat.generate import generate
from deepmcat.inference import Model
from deepmcat.serve import OrthancProcess, start_server
from deepmcat.sources import FolderSource
from tests.helpers import APP_CONF, wait_for_training

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("Orthanc") is None or not Path(
        "/usr/share/orthanc/plugins/libOrthancDicomWeb.so").is_file(),
        reason="Orthanc with its DICOMweb plugin is not installed (apt-get install -y orthanc orthanc-dicomweb)"),
]


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
    server = OrthancProcess(archive.parent / "orthanc")
    try:
        server.upload(sorted(archive.rglob("*.dcm")))
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pacs_model(orthanc, tmp_path_factory) -> Path:
    """A model trained by ``deepmcat train`` straight from the PACS's DICOMweb URL, at the default 64-pixel input:
    at 32 pixels its clusters were too impure (series purity 0.63) to catch 3 of the 7 wrong headers."""
    model = tmp_path_factory.mktemp("pacs-model") / "model"
    assert main(["train", "--data", f"{orthanc}/dicom-web", "--out", str(model), "--clusters", "12", "--frames", "4",
                 "--size", "64", "--warmup-epochs", "15", "--epochs", "1", "--device", "cpu", "--quiet"]) == 0
    return model


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


def series_categories(archive: Path) -> dict[str, str]:
    """SeriesInstanceUID → the generator's category."""
    out = {}
    for folder, truth in series_truth(archive).items():
        with open(next((archive / folder).glob("*.dcm")), "rb") as fh:
            out[str(pydicom.dcmread(fh, stop_before_pixels=True).SeriesInstanceUID)] = truth["category"]
    return out


@pytest.fixture(scope="module")
def pacs_server(orthanc, tmp_path_factory):
    """The app over the PACS (12 clusters), categories kept in ``labels/`` of a temporary folder."""
    root = tmp_path_factory.mktemp("pacs-app")
    conf = dict(APP_CONF, clusters=12, model_dir=root / "model", labels_dir=root / "labels")
    server = start_server(f"{orthanc}/dicom-web", conf, log_path=root / "server.log",
                          env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(root / "cache")})
    server.root = root
    yield server
    server.stop()


def save_category(client, image: str, category: str, folder: Path) -> dict:
    label = folder / f"{image}.json"
    label.write_text(json.dumps({"category": category}))
    return client.save_label(image, str(label), tag="final", params={"category": category})


def test_monailabel_trains_and_infers_over_dicomweb(orthanc, pacs_server, n_series):
    client = MONAILabelClient(pacs_server.url)
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
    # ids that are not series the PACS listed never reach the cache path or a download
    cache = pacs_server.root / "cache"
    before = sorted(p.name for p in cache.rglob("*"))
    for bad in ("../../../home/x", "/etc", "1.2.3.4.5.6", series_uid + "/..", "1" * 70):
        with pytest.raises(MONAILabelClientException, match="Status: 404"):
            client.infer("deepmcat", bad, {})
    assert sorted(p.name for p in cache.rglob("*")) == before


def test_clinician_categories_over_dicomweb_name_clusters_beside_a_read_only_pacs(orthanc, pacs_server, archive,
                                                                                 tmp_path):
    """The active-learning loop over a PACS: the representative of an unnamed cluster is asked for, named,
    and its cluster takes the name; the categories live in the app's store, the PACS gains nothing."""
    client = MONAILabelClient(pacs_server.url)
    truth = series_categories(archive)
    series_before = json.loads(urllib.request.urlopen(f"{orthanc}/series").read())
    labelled: dict[str, str] = {}
    for _ in range(4):
        pick = client.next_sample("cluster_representative", {})
        assert pick["id"] in truth and pick["id"] not in labelled and "has no name yet" in pick["reason"]
        answer = save_category(client, pick["id"], truth[pick["id"]], tmp_path)
        labelled[pick["id"]] = truth[pick["id"]]
        assert answer["category"] == truth[pick["id"]] and answer["cluster"] == pick["cluster"]
        assert answer["cluster_name"] == truth[pick["id"]] and answer["conflict"] is False
    status = client.info()["datastore"]  # GET /datastore/: which series are labelled
    assert status["completed"] == len(labelled) and status["label_tags"] == {"final": len(labelled)}
    objects = client.datastore()["objects"]  # GET /datastore/?output=all
    assert {k for k, v in objects.items() if v["labels"]} == set(labelled)
    assert all(objects[k]["labels"]["final"]["info"]["category"] == c for k, c in labelled.items())
    names = client.info()["models"]["deepmcat"]["deepmcat"]["cluster_names"]
    assert set(labelled.values()) <= set(names)

    stored = json.loads(next((pacs_server.root / "labels").rglob("labels.json")).read_text())
    assert {k: v["category"] for k, v in stored.items()} == labelled
    assert json.loads(urllib.request.urlopen(f"{orthanc}/series").read()) == series_before  # no DICOM SEG added

    # refused, and nothing kept: a series the PACS does not list, a label without a category, another tag
    with pytest.raises(MONAILabelClientException, match="Status: 404"):
        save_category(client, "1.2.3.4.5.6", "cine_sax", tmp_path)
    unlabelled = next(uid for uid in truth if uid not in labelled)
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    with pytest.raises(MONAILabelClientException, match="Status: 400"):
        client.save_label(unlabelled, str(empty), tag="final", params={})
    with pytest.raises(MONAILabelClientException, match="Status: 400"):
        client.save_label(unlabelled, str(empty), tag="original", params={"category": "x"})
    assert client.info()["datastore"]["completed"] == len(labelled)

    # retraining uses the categories: the published model records them, and the names stay
    client.train_start("deepmcat", {"epochs": 1})
    status = wait_for_training(client, timeout=600)
    assert status["status"] == "DONE", status
    info = client.info()
    assert info["train_stats"]["deepmcat"]["labelled_images"] == len(labelled)
    assert set(info["models"]["deepmcat"]["labels"]) == set(labelled.values())
    for uid, category in labelled.items():  # seeded k-means kept the named categories apart
        _, answer = client.infer("deepmcat", uid, {})
        answer = json.loads(answer) if isinstance(answer, (bytes, str)) else answer
        assert answer["category"] == category and answer["label"] == category, (uid, answer)
    _, answer = client.infer("deepmcat", unlabelled, {})  # a series nobody named: the model's answer alone
    answer = json.loads(answer) if isinstance(answer, (bytes, str)) else answer
    assert "label" not in answer and answer["category"]


def test_organize_the_pacs_flags_wrong_headers(orthanc, pacs_model, archive, n_series, tmp_path):
    out = tmp_path / "out"
    assert main(["organize", "--model", str(pacs_model), "--source", f"{orthanc}/dicom-web", "--out", str(out),
                 "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "series.csv")))
    assert len(rows) == n_series and len({r["series_uid"] for r in rows}) == n_series
    assert all(r["location"].startswith(f"{orthanc}/dicom-web/studies/") and r["error"] == "" for r in rows)

    # the header rule: a flagged series is never in its description's majority cluster; unknown series (like
    # no learned category) are not compared
    known = [r for r in rows if r["novel"] != "yes"]
    assert all(r["header_agrees"] == "" for r in rows if r["novel"] == "yes")
    by_desc = defaultdict(Counter)
    for r in known:
        by_desc[r["series_description"].lower()][r["cluster"]] += 1
    for r in known:
        if r["header_agrees"] == "no":
            assert by_desc[r["series_description"].lower()].most_common(1)[0][0] != r["cluster"], r
    # against the generator's truth: few correct headers flagged (flagging everything fails), wrong ones caught
    truth = series_truth(archive)
    description_of = {}
    for folder in truth:
        with open(next((archive / folder).glob("*.dcm")), "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            description_of[str(ds.SeriesInstanceUID) + ds.SeriesDescription] = truth[folder]
    wrong = [r for r in known if description_of[r["series_uid"] + r["series_description"]]["wrong"]]
    right = [r for r in known if not description_of[r["series_uid"] + r["series_description"]]["wrong"]]
    assert len(wrong) >= 3 and len(right) >= 20
    false_flags = [r["location"] for r in right if r["header_agrees"] == "no"]
    assert len(false_flags) <= 0.05 * len(right), false_flags
    caught = [r for r in wrong if r["header_agrees"] == "no"]
    assert len(caught) >= 0.3 * len(wrong), (len(caught), len(wrong))

    report = (out / "report.html").read_text()
    assert "Header disagrees with content" in report and "data:image/png;base64," in report
    assert "PatientName" not in report and "PatientID" not in report


def start_watcher(model: Path, url: str, out: Path, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "deepmcat.cli", "watch", "--model", str(model), "--orthanc", url,
                             "--out", str(out), "--poll", "0.3", "--device", "cpu"], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.time() + 120
    while "watching" not in log.read_text():  # the model is loaded and the feed followed
        assert proc.poll() is None and time.time() < deadline, log.read_text()
        time.sleep(0.2)
    return proc


def stop_watcher(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


def wait_for_metadata(pacs: OrthancProcess, n: int, deadline: float) -> dict[str, dict]:
    """Every series' metadata, once ``n`` of them carry a category or an error (AssertionError at ``deadline``)."""
    while True:
        meta = {s: pacs.get(f"/series/{s}/metadata?expand") for s in pacs.get("/series")}
        if sum("DeepMCATCategory" in m or "DeepMCATError" in m for m in meta.values()) >= n:
            return meta
        assert time.time() < deadline, meta
        time.sleep(0.5)


def test_watch_categorises_each_new_series_once_across_restarts(pacs_model, tmp_path):
    """20 series (and one unreadable) uploaded while ``deepmcat watch`` follows a fresh Orthanc; Orthanc and the
    watcher are each restarted once midway (7 series done, 3 still arriving). Every series is categorised
    exactly once, within 60 s of the last upload, and its category is readable from Orthanc's REST API."""
    data = tmp_path / "new"
    generate(data, subjects=2, seed=31, balanced=True, progress=False)
    files_of = defaultdict(list)
    for path in sorted(data.rglob("*.dcm")):
        files_of[pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID].append(path)
    uploads = list(files_of.values())[:20]
    assert len(uploads) == 20
    broken = tmp_path / "broken.dcm"  # a header Orthanc stores, pixels no reader can decode
    ds = pydicom.dcmread(uploads[0][0])
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(broken)

    pacs = OrthancProcess(tmp_path / "orthanc", stable_age=2)
    out = tmp_path / "out"
    logs = [tmp_path / "watch1.log", tmp_path / "watch2.log"]
    watcher = start_watcher(pacs_model, pacs.url, out, logs[0])
    try:
        for files in uploads[:7]:
            pacs.upload(files)
        wait_for_metadata(pacs, 7, deadline=time.time() + 60)
        for files in uploads[7:10]:  # not yet stable when ...
            pacs.upload(files)
        pacs.stop()  # ... Orthanc goes away while the watcher follows it
        time.sleep(1)
        pacs.start()
        stop_watcher(watcher)  # then the watcher is restarted too
        watcher = start_watcher(pacs_model, pacs.url, out, logs[1])
        for files in uploads[10:]:
            pacs.upload(files)
        pacs.upload([broken])
        last_upload = time.time()
        series = pacs.get("/series")
        assert len(series) == 21
        meta = wait_for_metadata(pacs, 21, deadline=last_upload + 60)
        stop_watcher(watcher)
    finally:
        if watcher.poll() is None:
            watcher.kill()
        pacs.stop()

    categories = {s: m["DeepMCATCategory"] for s, m in meta.items() if "DeepMCATCategory" in m}
    errors = {s: m["DeepMCATError"] for s, m in meta.items() if "DeepMCATError" in m}
    assert len(categories) == 20 and len(errors) == 1
    model_names = set(Model(pacs_model).category(c) for c in range(12))
    assert set(categories.values()) <= model_names | {"unknown"}  # unknown: beyond the training distances
    # most new series get a learned category. How many known series of new subjects lie beyond the threshold
    # varies with the training seed: for this small model 0-2 and 5 of the 20 with the code of 2026-11-28
    # (seeds 0, 1), 4, 8 and 6 with the nearest-centroid rule of 2026-12-02, 0, 8 and 3 with the novelty
    # reference (seeds 0, 1, 2; the same data and flags trained from the folder, the series predicted directly)
    assert sum(c == "unknown" for c in categories.values()) < len(categories) / 2, categories
    # exactly once: one journal entry and one log line per series over both watcher runs
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert len(journal) == 21 and len({e["row"]["series_uid"] for e in journal}) == 21
    lines = [line for log in logs for line in log.read_text().splitlines() if line.startswith("INFO: series ")]
    assert sorted(line.split()[2].rstrip(":") for line in lines) == sorted(series)
    rows = {r["location"].rsplit("/", 1)[1]: r for r in csv.DictReader(open(out / "series.csv"))}
    assert set(rows) == set(series)
    assert all(rows[s]["category"] == c for s, c in categories.items())
    (bad,) = errors
    assert rows[bad]["cluster"] == "" and rows[bad]["error"] == errors[bad] != ""
    assert "PatientName" not in "".join(log.read_text() for log in logs)
    state = json.loads((out / "watch-state.json").read_text())
    assert state["pending"] == {} and state["last_seq"] > 0
    report = (out / "report.html").read_text()  # rewritten when the feed fell quiet
    unknown = sum(c == "unknown" for c in categories.values())
    assert f"21 series: {20 - unknown} categorised" in report and f"{unknown} unknown, 1 unreadable" in report
    assert "Clusters at a glance" in report
