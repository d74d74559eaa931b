"""Shared fixtures: small generated data sets, tiny DICOM series, app servers, a tiny trained model.
(Helpers that tests import are in helpers.py.)"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import APP_CONF, launch_app, make_app_studies, write_dicom

@pytest.fixture(scope="session", autouse=True)
def tensor_cache(tmp_path_factory) -> Path:
    """The commands' default cache folder (:mod:`deepmcat.cache`) in the session's temporary folder, not the
    user's home."""
    from deepmcat.cache import CACHE_ENV

    folder = tmp_path_factory.mktemp("deepmcat-cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if previous is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = previous


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


@pytest.fixture(scope="session")
def shared_app_studies(tmp_path_factory) -> Path:
    return make_app_studies(tmp_path_factory.mktemp("shared-app"))


@pytest.fixture(scope="session")
def shared_app_server(shared_app_studies):
    """One server, no model yet, for the modules that run in this order and leave no accepted label behind
    before the last of them: test_hostile_client (which trains it), test_reliability, test_slicer_logic.
    Two server starts and trainings fewer. Its temporary files go to ``tmp/`` beside the studies, where
    test_hostile_client checks that no upload stays behind."""
    from deepmcat.serve import start_server

    root = shared_app_studies.parent
    (root / "tmp").mkdir(exist_ok=True)
    server = start_server(shared_app_studies, dict(APP_CONF, model_dir=root / "model"), log_path=root / "server.log",
                          env={"TMPDIR": str(root / "tmp")})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trained_tiny_model(tiny_phantoms, tmp_path_factory) -> Path:
    """A model folder trained for two epochs on ``tiny_phantoms`` (4 clusters, 4 x 32 x 32 input)."""
    from deepmcat.config import DeepMCATConfig
    from deepmcat.data import load_collection
    from deepmcat.trainer import Trainer

    out = tmp_path_factory.mktemp("tiny-model")
    cfg = DeepMCATConfig().override(clusters=4, frames=4, size=32, warmup_epochs=1, epochs=1, device="cpu")
    Trainer(cfg, out, progress=False).fit_collection(load_collection(tiny_phantoms, cfg.preprocess, progress=False))
    return out
