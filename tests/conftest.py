"""Shared fixtures: small generated data sets and tiny DICOM series written with pydicom."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REAL_CMR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "cmr-chd1055302"


def write_dicom(path: Path, pixels: np.ndarray, series_uid: str, *, position=(0.0, 0.0, 0.0), trigger=0.0,
                instance=1, image_type=("ORIGINAL", "PRIMARY", "M"), spacing=(1.0, 1.0), intercept=0.0,
                description="test") -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2.3", series_uid, "MR"
    ds.SeriesDescription, ds.ImageType = description, list(image_type)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = list(position)
    ds.TriggerTime, ds.InstanceNumber = trigger, instance
    ds.PixelSpacing = list(spacing)
    frames = pixels if pixels.ndim == 3 else pixels[None]
    ds.Rows, ds.Columns = frames.shape[1:]
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, intercept
    ds.PixelData = frames.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, write_like_original=False)
    return path


@pytest.fixture
def cine_folder(tmp_path: Path) -> Path:
    """One cine series: 2 slice positions x 3 frames, written out of order; plus a flow series whose
    magnitude and phase share one SeriesInstanceUID; plus a 3-frame-position volume."""
    rng = np.random.default_rng(0)
    root = tmp_path / "dicom"
    n = 0
    for z in (0.0, 10.0):
        for t in (2, 0, 1):
            n += 1
            img = np.full((16, 20), 100 * (t + 1), np.uint16)
            write_dicom(root / "cine" / f"f{n}.dcm", img, "1.1", position=(0, 0, z), trigger=40.0 * t,
                        instance=n)
    for t in range(3):
        write_dicom(root / "flow" / f"m{t}.dcm", rng.integers(0, 1000, (12, 12)), "1.2", trigger=30.0 * t,
                    instance=t + 1)
        write_dicom(root / "flow" / f"p{t}.dcm", rng.integers(0, 4096, (12, 12)), "1.2", trigger=30.0 * t,
                    instance=t + 10, image_type=("ORIGINAL", "PRIMARY", "P"), intercept=-2048)
    for z in range(3):
        write_dicom(root / "vol" / f"v{z}.dcm", np.full((8, 8), z, np.uint16), "1.3", position=(0, 0, 5.0 * z),
                    instance=3 - z)
    return root


@pytest.fixture(scope="session")
def tiny_phantoms(tmp_path_factory) -> Path:
    """Two balanced synthetic subjects as DICOM (24 units of 12 categories)."""
    from deepmcat.generate import generate

    out = tmp_path_factory.mktemp("phantoms")
    generate(out, subjects=2, seed=3, balanced=True, progress=False)
    return out


#: small and fast app settings for the server tests
APP_CONF = {"clusters": 4, "epochs": 1, "warmup_epochs": 2, "frames": 4, "size": 32, "device": "cpu"}


def make_app_studies(root: Path) -> Path:
    """A MONAI Label studies folder under ``root``: 3 imbalanced generated subjects as NIfTI (40 images);
    the labels CSV is moved beside it (``root/labels.csv``)."""
    from deepmcat.generate import generate

    data = root / "studies"
    generate(data, subjects=3, seed=5, balanced=False, fmt="nifti", progress=False)
    shutil.move(data / "labels.csv", root / "labels.csv")
    return data


def launch_app(studies: Path):
    """The DeepMCAT app in a real ``monailabel start_server`` process on 127.0.0.1 (a free port)."""
    from deepmcat.serve import start_server

    return start_server(studies, dict(APP_CONF, model_dir=studies.parent / "model"),
                        log_path=studies.parent / "server.log")


@pytest.fixture(scope="module")
def app_studies(tmp_path_factory) -> Path:
    return make_app_studies(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def app_truth(app_studies) -> dict[str, str]:
    """Datastore image id → generated category."""
    with open(app_studies.parent / "labels.csv") as fh:
        return {r["path"].split(".nii")[0]: r["category"] for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def app_server(app_studies):
    """A fresh server (no model yet) for each test module that asks for one."""
    server = launch_app(app_studies)
    yield server
    server.stop()


def wait_for_training(client, timeout: float = 300) -> dict:
    """Poll ``client.train_status()`` (MONAI Label's client or the Slicer module's) until training ends."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.train_status()
        if status["status"] not in ("SUBMITTED", "RUNNING"):
            return status
        time.sleep(1)
    raise TimeoutError("training did not finish")


@pytest.fixture(scope="session")
def trained_tiny_model(tiny_phantoms, tmp_path_factory) -> Path:
    """A model folder trained for two epochs on ``tiny_phantoms`` (4 clusters, 4 x 32 x 32 input)."""
    from deepmcat.cli import main

    out = tmp_path_factory.mktemp("tiny-model")
    assert main(["train", "--data", str(tiny_phantoms), "--out", str(out), "--clusters", "4", "--frames", "4",
                 "--size", "32", "--warmup-epochs", "1", "--epochs", "1", "--device", "cpu", "--quiet"]) == 0
    return out
