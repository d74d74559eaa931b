"""What a hostile file or client must not achieve through the library: code execution through a model file,
decompression bombs, spreadsheet formulas in CSVs, credentials in outputs, a torn organize journal."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
import torch

from deepmcat import checkpoint


class RunsACommand:
    """An object whose unpickling runs a shell command (what an attacker puts in a model file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_with_valid_checksum(path: Path, state: dict) -> None:
    """The project's own file layout (magic, SHA-256 of the payload, newline, payload) around ``state``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    path.write_bytes(checkpoint.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def test_a_model_file_that_needs_pickle_is_refused_and_runs_nothing(tmp_path):
    from deepmcat.inference import Model

    marker = tmp_path / "pwned"
    write_with_valid_checksum(tmp_path / checkpoint.MODEL, {"format": "deepmcat", "net": RunsACommand(marker)})
    with pytest.raises(checkpoint.CheckpointError, match="refused: it holds Python objects"):
        Model(tmp_path, device="cpu")
    with pytest.raises(checkpoint.CheckpointError, match="refused"):
        checkpoint.load(tmp_path / checkpoint.MODEL)
    assert not marker.exists()


def test_saved_files_load_weights_only_with_numpy_content(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    state = {"format": "deepmcat", "centroids": np.ones((2, 3), np.float32), "n": np.int64(4),
             "rng": rng.bit_generator.state, "nested": [{"a": np.zeros(2)}, (1, "x", None)]}
    checkpoint.save(state, tmp_path / "x.pt")
    loaded = checkpoint.load(tmp_path / "x.pt")
    assert np.array_equal(np.asarray(loaded["centroids"]), state["centroids"])
    assert loaded["n"] == 4 and isinstance(loaded["n"], int)
    assert loaded["rng"] == state["rng"] and loaded["nested"][1] == (1, "x", None)


def test_a_model_file_missing_weights_is_refused(tmp_path, trained_tiny_model):
    from deepmcat.inference import Model

    state = checkpoint.load(trained_tiny_model / checkpoint.MODEL)
    first = next(iter(state["net"]))
    del state["net"][first]
    checkpoint.save(state, tmp_path / checkpoint.MODEL)
    with pytest.raises(checkpoint.CheckpointError, match=f"missing \\['{first}'\\]"):
        Model(tmp_path, device="cpu")


# ------------------------------------------------------------------------------------ decoding budget


@pytest.fixture
def small_budget(monkeypatch):
    """A 1 MB decoding budget, so that bombs stay small and quick."""
    from deepmcat import limits

    monkeypatch.setattr(limits, "MAX_UNIT_BYTES", 2**20)


def read_error(path: Path) -> str:
    from deepmcat.data import load_units
    from deepmcat.config import PreprocessConfig
    from deepmcat.io import scan

    report = scan(path)
    failed = report.skipped + load_units(report.units, PreprocessConfig(frames=4, size=32), progress=False).failed
    assert len(failed) == 1, failed
    return failed[0][1]


def test_a_deflate_bomb_is_refused_before_it_is_inflated(tmp_path, small_budget):
    import zlib

    import numpy as np
    import pydicom
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from tests.helpers import write_dicom

    path = write_dicom(tmp_path / "bomb.dcm", np.zeros((1024, 1024), np.uint16), "1.2.3")  # 2 MB of zeros
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    body = io.BytesIO()
    with DicomFileLike(body) as fp:
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, ds)
        deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        payload = deflater.compress(body.getvalue()) + deflater.flush()
    with open(path, "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(DicomFileLike(fh), ds.file_meta)
        fh.write(payload)
    assert path.stat().st_size < 20_000  # what the attacker sends
    assert "exceeds the limit" in read_error(tmp_path)


def test_vector_components_count_in_the_budget(tmp_path, small_budget):
    import itk
    import numpy as np

    # 64 x 64 x 8 voxels (128 kB as float32) of 10 float64 components: 3 MB to allocate and convert
    image = itk.image_from_array(np.zeros((8, 64, 64, 10), np.float64), is_vector=True)
    itk.imwrite(image, str(tmp_path / "vectors.mha"))
    assert "10 components exceeds the limit" in read_error(tmp_path)


# ------------------------------------------------------------------------------------ odd headers


def test_one_malformed_header_skips_its_file_only(tmp_path):
    import numpy as np

    from deepmcat.io import read_unit, scan
    from tests.helpers import write_dicom

    for i in range(3):
        write_dicom(tmp_path / f"f{i}.dcm", np.full((8, 8), i + 1), "1.5", trigger=12.5 + i, instance=i + 1,
                    spacing=(0.7, 1.0))
    bad = tmp_path / "f1.dcm"
    bad.write_bytes(bad.read_bytes().replace(b"13.5", b"abcd"))  # TriggerTime "abcd"
    nan = tmp_path / "f2.dcm"
    nan.write_bytes(nan.read_bytes().replace(b"0.7\\1", b"NaN\\1"))  # PixelSpacing "NaN\1"
    report = scan(tmp_path)
    assert [(Path(p).name, "malformed DICOM header" in r) for p, r in report.skipped] == [("f1.dcm", True)]
    assert len(report.units) == 1 and len(report.units[0].files) == 2
    pixels = read_unit(report.units[0])
    assert pixels.spacing == (0.7, 1.0)  # the first file's spacing, valid
    import pydicom

    from deepmcat.dicom import _pixel_spacing

    assert _pixel_spacing(pydicom.dcmread(nan)) == (1.0, 1.0)


def test_nifti_files_of_one_name_in_two_folders_are_two_series(tmp_path):
    import nibabel as nib
    import numpy as np

    from deepmcat.io import scan

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(np.random.rand(8, 8, 3).astype(np.float32), np.eye(4)),
                 tmp_path / folder / "image.nii.gz")
    assert sorted(u.series_uid for u in scan(tmp_path).units) == ["a/image.nii.gz", "b/image.nii.gz"]


def test_only_the_frames_used_are_decoded_and_a_4d_file_once(tmp_path, monkeypatch):
    import itk
    import nibabel as nib
    import numpy as np

    from deepmcat import dicom
    from deepmcat import io as dio
    from deepmcat.config import PreprocessConfig
    from deepmcat.data import load_units
    from deepmcat.preprocess import canonical
    from tests.helpers import write_dicom

    for t in range(20):
        write_dicom(tmp_path / "cine" / f"{t:02d}.dcm", np.random.default_rng(t).integers(0, 900, (16, 16)), "1.6",
                    trigger=10.0 * t, instance=t + 1)
    nib.save(nib.Nifti1Image(np.random.rand(16, 16, 5, 12).astype(np.float32), np.eye(4)), tmp_path / "sax.nii.gz")
    decoded, reads = [], []
    real_frames, real_located, real_imread = dicom._dicom_frames, dicom._located_frame, itk.imread
    monkeypatch.setattr(dicom, "_dicom_frames", lambda path: decoded.append(path) or real_frames(path))
    monkeypatch.setattr(dicom, "_located_frame", lambda path, at: decoded.append(path) or real_located(path, at))
    monkeypatch.setattr(itk, "imread", lambda *a, **k: reads.append(a[0]) or real_imread(*a, **k))
    cfg = PreprocessConfig(frames=4, size=16)
    units = dio.scan(tmp_path).units
    collection = load_units(units, cfg, progress=False)
    assert len(collection.units) == 6 and len(decoded) == 4 and len(reads) == 1
    cine = next(i for i, u in enumerate(collection.units) if u.source == "dicom")
    full = canonical(dio.read_unit(collection.units[cine]), cfg)  # every frame decoded, then sampled
    assert np.array_equal(collection.tensors[cine], full)


# ------------------------------------------------------------------------------------ outputs


def test_csv_cells_never_start_a_formula(tmp_path):
    import csv

    from deepmcat.tables import safe_cell, write_csv

    assert safe_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert [safe_cell(v) for v in ("+1+1", "@SUM(A1)", "-cmd", "\tx", "\rx")] == [
        "'+1+1", "'@SUM(A1)", "'-cmd", "'\tx", "'\rx"]
    assert [safe_cell(v) for v in ("-0.5", "+3", "cine_sax", 7, "")] == ["-0.5", "+3", "cine_sax", 7, ""]
    write_csv([{"a": "=1+1", "b": "-2"}], tmp_path / "x.csv", ["a", "b"])
    assert list(csv.DictReader(open(tmp_path / "x.csv"))) == [{"a": "'=1+1", "b": "-2"}]


def test_credentials_in_dicomweb_urls_are_not_shown():
    from deepmcat.sources import redact_url

    assert redact_url("http://admin:s3cret@127.0.0.1:8042/dicom-web") == "http://127.0.0.1:8042/dicom-web"
    assert redact_url("https://user@pacs.example/dicom-web") == "https://pacs.example/dicom-web"
    assert redact_url("http://127.0.0.1:8042/dicom-web") == "http://127.0.0.1:8042/dicom-web"


def test_names_of_an_older_model_never_overwrite_a_newer_ones(trained_tiny_model, tmp_path):
    import json
    import shutil

    from deepmcat.inference import Model

    folder = tmp_path / "model"
    shutil.copytree(trained_tiny_model, folder)
    old = Model(folder, device="cpu")  # loaded by a label request before a retrain published
    state = checkpoint.load(folder / checkpoint.MODEL)
    state["trained_at"] = "2099-01-01T00:00:00+00:00"
    checkpoint.save(state, folder / checkpoint.MODEL)  # the retrain publishes a new model
    new = Model(folder, device="cpu")
    assert new.save_names({0: "cine_sax\n\x07"}) is True
    assert old.save_names({0: "stale"}) is False  # the compare-and-swap refuses the older model's names
    assert Model(folder, device="cpu").names == {0: "cine_sax"}  # control characters removed
    stored = json.loads((folder / checkpoint.NAMES).read_text())
    assert stored["trained_at"] == "2099-01-01T00:00:00+00:00"
    # names written for another model are not applied; hand-written plain names are
    state["trained_at"] = "2100-01-01T00:00:00+00:00"
    checkpoint.save(state, folder / checkpoint.MODEL)
    assert Model(folder, device="cpu").names == {}
    (folder / checkpoint.NAMES).write_text('{"1": "t1_map"}')
    assert Model(folder, device="cpu").names == {1: "t1_map"}


def test_organize_resumes_from_a_torn_journal_once_per_folder_and_per_model(trained_tiny_model, tiny_phantoms,
                                                                             tmp_path):
    import csv
    import json
    import shutil

    from deepmcat.inference import Model
    from deepmcat.organize import JOURNAL, LOCK, Organizer, exclusive
    from deepmcat.sources import FolderSource

    source = FolderSource(tiny_phantoms)
    out = tmp_path / "out"
    model = Model(trained_tiny_model, device="cpu")
    first = Organizer(model, source, out, progress=False).run()
    n = len(source)
    assert first.processed == n and len(first.rows) == n
    lines = (out / JOURNAL).read_bytes().splitlines(keepends=True)
    # an interruption mid-line: the last line is torn (cut inside a quoted string)
    (out / JOURNAL).write_bytes(b"".join(lines[:-2]) + lines[-2][: len(lines[-2]) // 2])
    again = Organizer(model, source, out, progress=False).run()
    assert (again.done_before, again.processed) == (n - 2, 2)
    rows = list(csv.DictReader(open(out / "series.csv")))
    assert sorted(r["series_uid"] for r in rows) == sorted(r.uid for r in source.series())  # no duplicates
    assert {r["model"] for r in rows} == {model.info["trained_at"]}
    assert len((out / "embeddings.csv").read_text().splitlines()) == n
    assert all(json.loads(line)["model"] for line in (out / JOURNAL).read_bytes().splitlines())
    # a second run on the same folder while one runs is refused
    with exclusive(out):
        with pytest.raises(ValueError, match="another deepmcat organize or watch is writing"):
            Organizer(model, source, out, progress=False).run()
    assert (out / LOCK).exists()
    # another model's rows are redone
    other = tmp_path / "other-model"
    shutil.copytree(trained_tiny_model, other)
    state = checkpoint.load(other / checkpoint.MODEL)
    state["trained_at"] = "2099-01-01T00:00:00+00:00"
    checkpoint.save(state, other / checkpoint.MODEL)
    redone = Organizer(Model(other, device="cpu"), source, out, progress=False).run()
    assert (redone.done_before, redone.processed) == (0, n)
    assert {r["model"] for r in csv.DictReader(open(out / "series.csv"))} == {"2099-01-01T00:00:00+00:00"}


def _app_settings():
    """The app's settings module, loaded by path (the app's ``lib`` is not an installed package)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "apps" / "deepmcat" / "lib" / "settings.py"
    spec = importlib.util.spec_from_file_location("deepmcat_app_settings", path)
    settings = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up there
    spec.loader.exec_module(settings)
    return settings.AppSettings


def test_the_unknown_percentile_setting_is_a_bounded_number():
    """``--conf unknown_percentile`` takes 0-100 (0: no unknown answers); anything else names the setting."""
    parse = _app_settings().parse
    assert parse({}, "m").unknown_percentile == 99.0
    assert parse({"unknown_percentile": "0"}, "m").unknown_percentile == 0.0
    assert parse({"unknown_percentile": "97.5"}, "m").unknown_percentile == 97.5
    for bad in ("abc", "nan", "150", "-1", ""):
        with pytest.raises(ValueError, match="unknown_percentile"):
            parse({"unknown_percentile": bad}, "m")


def test_the_centre_crop_setting_reaches_training_and_is_bounded():
    """``--conf centre_crop`` (and a train request's) sets the second input scale; 0 trains on one scale, and
    a value outside [0, 1) is refused naming the setting, as ``deepmcat train --centre-crop`` refuses it."""
    settings = _app_settings().parse({}, "m")
    assert settings.deepmcat_config().preprocess.centre_crop == 0.5
    one_scale = settings.overridden({"centre_crop": "0"}).deepmcat_config().preprocess
    assert (one_scale.centre_crop, one_scale.views) == (0.0, 1)
    assert _app_settings().parse({"centre_crop": "0.25"}, "m").deepmcat_config().preprocess.centre_crop == 0.25
    for bad in ("1", "-0.1", "abc", "nan"):
        with pytest.raises(ValueError, match="centre_crop"):
            settings.overridden({"centre_crop": bad})
