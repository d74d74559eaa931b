"""Helpers the tests share (fixtures live in conftest.py): DICOM files written with pydicom, a small app
studies folder, the app server, and waiting for a training to end."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from deepmcat.generate import mr_dataset

REAL_CMR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "cmr-chd1055302"


def write_dicom(path: Path, pixels: np.ndarray, series_uid: str, *, position=(0.0, 0.0, 0.0), trigger=0.0,
                instance=1, image_type=("ORIGINAL", "PRIMARY", "M"), spacing=(1.0, 1.0), intercept=0.0,
                description="test") -> Path:
    ds = mr_dataset(path, "1.2.3", series_uid)
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


def wait_for_training(client, timeout: float = 300) -> dict:
    """Poll ``client.train_status()`` (MONAI Label's client or the Slicer module's) until training ends."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.train_status()
        if status["status"] not in ("SUBMITTED", "RUNNING"):
            return status
        time.sleep(1)
    raise TimeoutError("training did not finish")


def shared_app_fixtures():
    """``app_studies`` and ``app_server`` fixtures bound to conftest's ``shared_app_server``, for a module that shares
    it to assign: ``app_studies, app_server = shared_app_fixtures()`` (``app_truth`` follows)."""

    @pytest.fixture(scope="module")
    def app_studies(shared_app_studies):
        return shared_app_studies

    @pytest.fixture(scope="module")
    def app_server(shared_app_server):
        return shared_app_server

    return app_studies, app_server
