"""Reliability: a corpus of bad inputs against the CLI and the real server, load from 8 concurrent clients,
and a training process killed half-way. Failed requests must change nothing on disk."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil
import pytest
from monailabel.client.client import MONAILabelClient, MONAILabelClientException
import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

from deepmcat.cli import main
from tests.helpers import shared_app_fixtures, wait_for_training, write_dicom

pytestmark = pytest.mark.timeout(600)
integration = pytest.mark.integration  # a real server or a killed process


def bad_corpus(root: Path) -> dict[str, Path]:
    """Files a real archive or user sends: each name says what is wrong with it."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = write_dicom(root / "good.dcm", rng.integers(0, 1000, (32, 32)), generate_uid())
    files = {}
    data = good.read_bytes()
    files["truncated_dicom"] = root / "truncated.dcm"
    files["truncated_dicom"].write_bytes(data[: len(data) // 2])
    files["corrupt_dicom"] = root / "corrupt.dcm"
    files["corrupt_dicom"].write_bytes(b"DICM" + bytes(rng.integers(0, 256, 4000, dtype=np.uint8)))
    no_pixels = write_dicom(root / "no_pixels.dcm", np.zeros((8, 8)), generate_uid())

    ds = pydicom.dcmread(no_pixels)
    del ds.PixelData
    ds.save_as(no_pixels)
    files["no_pixel_data"] = no_pixels
    unsupported = write_dicom(root / "unsupported_syntax.dcm", np.zeros((8, 8)), generate_uid())
    ds = pydicom.dcmread(unsupported)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.80"  # JPEG-LS: no decoder installed
    ds.PixelData = encapsulate([bytes(64)])
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(unsupported)
    files["unsupported_transfer_syntax"] = unsupported
    huge = write_dicom(root / "huge.dcm", np.zeros((8, 8)), generate_uid())
    ds = pydicom.dcmread(huge)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 1000
    ds.save_as(huge)
    files["huge_declared_dimensions"] = huge
    files["nifti_5d"] = root / "five_d.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 2, 2, 2), np.float32), np.eye(4)), files["nifti_5d"])
    files["nifti_empty"] = root / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 0, 3), np.float32), np.eye(4)), files["nifti_empty"])
    files["nifti_all_nan"] = root / "nan.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 3), np.nan, np.float32), np.eye(4)), files["nifti_all_nan"])
    files["text_named_nifti"] = root / "notes.nii.gz"
    files["text_named_nifti"].write_text("this is not an image")
    files["empty_file"] = root / "zero_bytes.nrrd"
    files["empty_file"].write_bytes(b"")
    files["one_by_one"] = write_dicom(root / "one_pixel.dcm", np.array([[7]]), generate_uid())
    files["rle_bomb"] = rle_bomb(root / "rle_bomb.dcm")
    files["jpeg2000_larger_than_header"] = root / "j2k_bomb.dcm"
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    ds.Rows, ds.Columns = 16, 16  # the codestream declares 64 x 64
    ds.save_as(files["jpeg2000_larger_than_header"])
    files["truncated_enhanced_dicom"] = enhanced(root / "enhanced_cut.dcm", rng)
    ds = pydicom.dcmread(files["truncated_enhanced_dicom"])
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]  # 3 of the 6 frames its functional groups list
    ds.save_as(files["truncated_enhanced_dicom"])
    good.unlink()
    return files


def enhanced(path: Path, rng: np.random.Generator, positions: int = 2, times: int = 3) -> Path:
    """An enhanced multi-frame image: ``positions`` x ``times`` frames, their geometry and timing in per-frame
    functional groups only."""
    write_dicom(path, rng.integers(0, 1000, (positions * times, 16, 16)), generate_uid())
    ds = pydicom.dcmread(path)
    del ds.ImageOrientationPatient, ds.ImagePositionPatient, ds.TriggerTime
    frames = []
    for t in range(times):
        for k in range(positions):
            frame = pydicom.Dataset()
            groups = (("PlaneOrientationSequence", "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]),
                      ("PlanePositionSequence", "ImagePositionPatient", [0, 0, 8.0 * k]),
                      ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime", 40.0 * t))
            for sequence, keyword, value in groups:
                item = pydicom.Dataset()
                setattr(item, keyword, value)
                setattr(frame, sequence, pydicom.Sequence([item]))
            frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence(frames)
    ds.save_as(path)
    return path


def rle_bomb(path: Path) -> Path:
    """A 64 x 64 RLE image whose one segment of 2 kB decodes to 128 kB."""

    write_dicom(path, np.zeros((64, 64)), generate_uid())
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.5"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([struct.pack("<16I", 1, 64, *([0] * 14)) + b"\x81\x00" * 1000])
    ds["PixelData"].VR = "OB"
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(path)
    return path


#: what the message of each bad file says (a regular expression)
REASONS = {
    "truncated_dicom": "cannot decode pixel data|pixel data truncated", "corrupt_dicom": "not a DICOM file",
    "no_pixel_data": "has no pixel data", "unsupported_transfer_syntax": "no image size found in its compressed data",
    "huge_declared_dimensions": "declared size 1000x65535x65535x1 exceeds the limit", "nifti_5d": "5-D images",
    "nifti_empty": "empty|blank", "nifti_all_nan": "no finite|blank", "text_named_nifti": "not a readable image",
    "empty_file": "not a readable image", "one_by_one": "blank", "rle_bomb": "RLE segment decodes to more",
    "jpeg2000_larger_than_header": "declares 64x64x1 in its compressed data, the header 16x16x1",
    "truncated_enhanced_dicom": "cannot decode pixel data|pixel data truncated",
}


def acceptable(root: Path) -> dict[str, Path]:
    """Odd but valid inputs that must work: a 2x2 image, a partly NaN/Inf volume, DICOM without extension."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    files = {"two_by_two": write_dicom(root / "tiny.dcm", np.array([[7, 9], [1, 3]]), generate_uid())}
    arr = rng.random((16, 16, 4)).astype(np.float32)
    arr[0, 0, 0], arr[1, 1, 1], arr[2, 2, 2] = np.nan, np.inf, -np.inf
    files["partly_nan"] = root / "partly_nan.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), files["partly_nan"])
    files["dicom_no_extension"] = write_dicom(root / "IM0001", rng.integers(0, 500, (24, 20)), generate_uid())
    files["enhanced_two_positions"] = enhanced(root / "enhanced.dcm", rng, positions=2)  # two units
    return files


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file under the folders with a hash of its content (what 'nothing changed' means)."""
    state = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p.name != ".lock" and "logs" not in p.parts:
                state[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return state


@pytest.mark.integration
def test_worker_processes_read_exactly_like_one_process(tmp_path, tiny_phantoms, monkeypatch):
    """Headers and pixels read by two worker processes: the same units in the same order, the same tensors
    bit for bit, and every bad file reported with the same reason."""
    from deepmcat import data, dicom
    from deepmcat.io import scan

    bad_corpus(tmp_path / "bad")
    folders = [tiny_phantoms, tmp_path / "bad"]
    serial_scan = scan(folders)
    serial = data.load_units(serial_scan.units, _cfg(), progress=False)
    monkeypatch.setattr(dicom, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(data, "PARALLEL_MIN_UNITS", 1)
    parallel_scan = scan(folders, workers=2)
    parallel = data.load_units(parallel_scan.units, _cfg(), progress=False, workers=2)
    assert [u.files for u in parallel.units] == [u.files for u in serial.units] and len(serial.units) >= 24
    assert np.array_equal(parallel.tensors, serial.tensors)
    assert sorted(parallel_scan.skipped + parallel.failed) == sorted(serial_scan.skipped + serial.failed)
    assert len(serial_scan.skipped + serial.failed) >= len(REASONS)


def test_workers_asked_for_by_a_program_read_from_standard_input_run_in_its_process():
    """``python -`` has no main file that a worker could import: the pool's workers died looking for it and
    were started again for ever. The work now runs in the calling process, and says so."""
    program = ("from deepmcat.parallel import ordered_map\n"
               "print(list(ordered_map(abs, [-3, -2, -1, 0, 1], workers=2, progress=False)))\n")
    done = subprocess.run([sys.executable, "-"], input=program, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[3, 2, 1, 0, 1]"
    assert "not a file that worker processes can import (<stdin>)" in done.stderr


@pytest.mark.parametrize("script, says", [
    ("import os\nfrom deepmcat.parallel import ordered_map\nif __name__ == '__main__':\n"
     "    print(list(ordered_map(os._exit, [1, 1, 1, 1], workers=2, progress=False)))\n", "killed for lack of memory"),
    ("from deepmcat.parallel import ordered_map\n"
     "print(list(ordered_map(abs, [-3, -2, -1, 0, 1], workers=2, progress=False)))\n", "if __name__"),
])
def test_a_worker_that_dies_stops_the_work_with_an_error_that_says_why(tmp_path, script, says):
    """A worker killed mid-item (``os._exit`` stands in for the kernel's OOM killer), and a script without a
    main guard (every worker re-runs it on import, and dies starting processes of its own): the pool started
    new workers and waited for the lost items for ever (both seen here). Now the program stops, at once,
    naming the likely causes."""
    path = tmp_path / "job.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and not done.stdout
    assert "a worker process died" in done.stderr and says in done.stderr


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_reports_every_bad_file_and_keeps_going(tmp_path, tiny_phantoms, capsys, caplog):
    from deepmcat.data import load_collection, load_units
    from deepmcat.io import scan

    bad = bad_corpus(tmp_path / "bad")
    report = scan(tmp_path / "bad")
    reasons = {Path(p).name: r for p, r in report.skipped + load_units(report.units, _cfg(), progress=False).failed}
    for kind, path in bad.items():
        reason = next((r for p, r in reasons.items() if path.name in p or path.name in r), None)
        assert reason is not None, f"{kind} not reported"
        assert re.search(REASONS[kind], reason), (kind, reason)

    # training on nothing but bad files: one clear line, exit status 2, no model folder half-written
    code = main(["train", "--data", str(tmp_path / "bad"), "--out", str(tmp_path / "model"), "--clusters", "2",
                 "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and err[-1].startswith("deepmcat train: error: none of the")
    assert not (tmp_path / "model" / "model.pt").exists()

    good = acceptable(tmp_path / "odd")
    collection = load_collection(tmp_path / "odd", _cfg())
    assert len(collection.units) == len(good) + 1 and not collection.failed  # the enhanced file holds two units
    assert np.isfinite(collection.tensors).all()


app_studies, app_server = shared_app_fixtures()  # the server this module shares


def _cfg():
    from deepmcat.config import PreprocessConfig

    return PreprocessConfig(frames=4, size=32)


# -------------------------------------------------------------------------------------------- server


@pytest.fixture(scope="module")
def trained(app_server):
    client = MONAILabelClient(app_server.url)
    if not client.info()["models"]["deepmcat"]["deepmcat"]["trained"]:
        client.train_start("deepmcat", {})
        assert wait_for_training(client)["status"] == "DONE"
    # MONAI Label scores every image after training (a subprocess writing image info): let it finish
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{app_server.url}/scoring/", timeout=10) as resp:
                if json.loads(resp.read()).get("status") not in ("SUBMITTED", "RUNNING"):
                    break
        except urllib.error.HTTPError:  # 404: no scoring task yet
            pass
        time.sleep(1)
    return client


def status_of(call) -> int:
    try:
        call()
    except MONAILabelClientException as exc:
        return int(exc.msg.split("Status: ")[1].split(";")[0])
    return 200


@integration
def test_server_refuses_bad_input_with_4xx_and_changes_nothing(trained, app_server, app_studies, app_truth,
                                                               tmp_path):
    client = trained
    image = next(iter(app_truth))
    model_dir = Path(app_server.conf["model_dir"])
    before = snapshot(app_studies, model_dir)
    outcomes = {}
    for kind, path in bad_corpus(tmp_path / "bad").items():
        outcomes[kind] = status_of(lambda: client.infer("deepmcat", "", {}, file=str(path)))
    for name, ident in {"traversal_image_id": "../../../etc/passwd", "absolute_image_id": "/etc/passwd",
                        "unknown_image_id": "no_such_image"}.items():
        outcomes[name] = status_of(lambda: client.infer("deepmcat", ident, {}))
    outcomes["unknown_model"] = status_of(lambda: client.infer("no_such_model", image, {}))
    label = tmp_path / "label.json"
    label.write_text(json.dumps({"category": "cine_sax"}))
    outcomes["label_for_unknown_image"] = status_of(lambda: client.save_label("../../x", str(label), "final",
                                                                             {"category": "cine_sax"}))
    empty_label = tmp_path / "empty.json"
    empty_label.write_text("{}")
    outcomes["label_without_category"] = status_of(lambda: client.save_label(image, str(empty_label), "final", {}))
    outcomes["label_category_with_slash"] = status_of(
        lambda: client.save_label(image, str(label), "final", {"category": "../../etc"}))
    expected = {**{kind: 422 for kind in REASONS}, "traversal_image_id": 404, "absolute_image_id": 404,
                "unknown_image_id": 404, "unknown_model": 404, "label_for_unknown_image": 404,
                "label_without_category": 400, "label_category_with_slash": 400}
    assert outcomes == expected
    after = snapshot(app_studies, model_dir)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not changed, changed
    _, answer = client.infer("deepmcat", image, {})  # and the server still answers
    assert json.loads(answer)["category"]


@integration
def test_answers_say_whether_a_series_is_like_a_learned_category(trained, app_truth):
    """Every answer carries ``novel``; "unknown" exactly when it is set, the nearest cluster kept in topk.
    Of the series the model was trained on, at most the farthest few (beyond its 99th percentile) are unknown."""
    answers = [json.loads(trained.infer("deepmcat", image, {})[1]) for image in sorted(app_truth)]
    assert all(isinstance(a["novel"], bool) for a in answers)
    assert all((a["category"] == "unknown") == a["novel"] for a in answers)
    assert all(a["topk"][0]["cluster"] == a["cluster"] and a["topk"][0]["category"] != "unknown" for a in answers)
    assert sum(a["novel"] for a in answers) <= 2, [a["category"] for a in answers]


@integration
def test_a_brain_mr_sent_by_mistake_is_answered_unknown(trained):
    """A category absent from training — nibabel's real 4-D brain fMRI (24 slices x 2 volumes), uploaded to
    the cardiac model — is answered "unknown" (``novel``), its nearest cluster kept in ``topk``."""
    brain = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
    _, raw = trained.infer("deepmcat", "", {}, file=str(brain))
    answer = json.loads(raw)
    assert answer["novel"] is True and answer["category"] == "unknown", answer
    assert answer["topk"][0]["cluster"] == answer["cluster"] and answer["topk"][0]["category"] != "unknown"
    assert answer["novelty"] > 0


@integration
def test_uploads_above_the_size_limit_get_413(tmp_path):
    from deepmcat.serve import start_server
    from tests.helpers import APP_CONF, make_app_studies

    studies = make_app_studies(tmp_path)
    server = start_server(studies, dict(APP_CONF, model_dir=tmp_path / "model", max_upload_mb=1),
                          log_path=tmp_path / "server.log")
    try:
        big = tmp_path / "big.nii"
        nib.save(nib.Nifti1Image(np.random.default_rng(0).random((128, 128, 32), np.float32), np.eye(4)), big)
        assert big.stat().st_size > 2**20
        client = MONAILabelClient(server.url)
        try:
            client.infer("deepmcat", "", {}, file=str(big))
            raise AssertionError("an upload above the limit was accepted")
        except MONAILabelClientException as exc:
            assert "413" in exc.msg and "max_upload_mb" in exc.msg
        assert client.info()["name"] == "DeepMCAT"
    finally:
        server.stop()


@integration
def test_load_of_8_concurrent_clients(trained, app_server, app_studies, app_truth):
    """96 requests from 8 clients (uploads and ids): no failure, bounded memory growth of the server (the
    sustained load and its latency are measured by benchmarks/latency.py, not here)."""
    images = list(app_truth)[:12]
    pid = app_server.process.pid

    def one(i: int) -> tuple:
        client = MONAILabelClient(app_server.url)
        image = images[i % len(images)]
        if i % 2:
            _, answer = client.infer("deepmcat", "", {}, file=str(app_studies / f"{image}.nii.gz"))
        else:
            _, answer = client.infer("deepmcat", image, {})
        answer = json.loads(answer)
        return image, answer["cluster"], answer["category"], round(answer["confidence"], 3)

    sequential = {image: tuple(rest) for image, *rest in map(one, range(len(images)))}  # each asked alone
    rss_before = psutil.Process(pid).memory_info().rss
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(96)))
    growth_mb = (psutil.Process(pid).memory_info().rss - rss_before) / 2**20
    assert len(answers) == 96
    mixed_up = [(image, rest, sequential[image]) for image, *rest in answers if tuple(rest) != sequential[image]]
    assert not mixed_up, mixed_up[:3]  # every concurrent answer is the image's own, by upload or by id
    assert growth_mb < 300, f"server memory grew by {growth_mb:.0f} MB over 96 requests"


# ------------------------------------------------------------------------------------------ training


@integration
def test_killed_training_keeps_the_published_model_and_resumes(tiny_phantoms, tmp_path):
    """A first training publishes a model; a second one (other settings) is SIGKILLed mid-run: the
    published model is untouched and loads, and rerunning resumes from the killed run's checkpoint."""
    cli = os.path.join(os.path.dirname(sys.executable), "deepmcat")
    out = tmp_path / "model"
    base = [cli, "train", "--data", str(tiny_phantoms), "--out", str(out), "--clusters", "4", "--frames", "4",
            "--size", "32", "--device", "cpu", "--quiet"]
    subprocess.run(base + ["--warmup-epochs", "1", "--epochs", "1"], check=True, capture_output=True)
    published = (out / "model.pt").read_bytes()
    long_run = base + ["--warmup-epochs", "40", "--epochs", "1"]
    proc = subprocess.Popen(long_run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    rng = np.random.default_rng()
    kill_after_epochs = int(rng.integers(2, 6))  # a random point, after some checkpoints
    while time.time() < deadline:
        try:
            from deepmcat import checkpoint

            state = checkpoint.load(out / "checkpoint.pt")
            if state["config"]["train"]["warmup_epochs"] == 40 and state["epoch"] >= kill_after_epochs:
                break
        except Exception:
            pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert (out / "model.pt").read_bytes() == published  # the killed run published nothing

    from deepmcat.inference import Model

    Model(out, device="cpu")  # still loads, checksum verified
    killed_at = checkpoint.load(out / "checkpoint.pt")["epoch"]
    assert killed_at >= kill_after_epochs

    resumed = subprocess.run([a for a in long_run if a != "--quiet"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from epoch {killed_at} of 41" in resumed.stderr
    assert (out / "model.pt").read_bytes() != published
