"""Reading and grouping: DICOM series → units, multi-frame, compressed, NIfTI 4-D, corrupt files."""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from deepmcat.io import ReadError, read_unit, scan
from deepmcat.structure import series_structure
from tests.helpers import REAL_CMR, write_dicom


def _by_series(report):
    out = {}
    for u in report.units:
        out.setdefault(u.series_uid, []).append(u)
    return out


def test_cine_positions_become_units_with_frames_in_trigger_order(cine_folder):
    report = scan(cine_folder)
    cine = _by_series(report)["1.1"]
    assert len(cine) == 2
    for unit in cine:
        px = read_unit(unit)
        assert px.array.shape == (3, 16, 20)
        assert list(px.array[:, 0, 0]) == [100, 200, 300]  # sorted by TriggerTime, not by file name


def test_mixed_image_types_are_split_and_phase_keeps_sign(cine_folder):
    flow = _by_series(scan(cine_folder))["1.2"]
    assert len(flow) == 2
    types = sorted(u.meta["image_type"] for u in flow)
    assert types == ["ORIGINAL\\PRIMARY\\M", "ORIGINAL\\PRIMARY\\P"]
    phase = next(u for u in flow if u.meta["image_type"].endswith("P"))
    assert read_unit(phase).array.min() < 0  # RescaleIntercept applied


def test_one_frame_per_position_is_one_volume_ordered_along_the_normal(cine_folder):
    vol = _by_series(scan(cine_folder))["1.3"]
    assert len(vol) == 1
    assert list(read_unit(vol[0]).array[:, 0, 0]) == [0, 1, 2]


def test_multiframe_dicom_is_one_unit(tmp_path):
    frames = np.stack([np.full((10, 12), i, np.uint16) for i in range(5)])
    write_dicom(tmp_path / "mf.dcm", frames, "9.9")
    report = scan(tmp_path)
    assert len(report.units) == 1
    assert read_unit(report.units[0]).array.shape == (5, 10, 12)


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_compressed_transfer_syntaxes_decode_like_the_uncompressed_file(tmp_path, name):
    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    shutil.copy(get_testdata_file(name), tmp_path / name)
    report = scan(tmp_path)
    if name == "MR_small_jpeg_ls_lossless.dcm":
        pytest.importorskip("libjpeg", reason="JPEG-LS needs pylibjpeg-libjpeg")
    px = read_unit(report.units[0])
    assert px.array.shape == (1, 64, 64)
    assert np.array_equal(px.array[0], reference.astype(np.float32))


def _as_pydicom_decodes(unit):
    return read_unit(dataclasses.replace(unit, locations=None))


@pytest.mark.parametrize("bits, signed, syntax", [(16, 0, "1.2.840.10008.1.2"), (16, 1, "1.2.840.10008.1.2.1"),
                                                   (8, 0, "1.2.840.10008.1.2.1"), (32, 1, "1.2.840.10008.1.2")])
def test_located_pixel_bytes_decode_as_pydicom_does(tmp_path, bits, signed, syntax):
    """The header pass notes where a plain image's pixel values lie; reading just those bytes gives what
    pydicom's decoder gives (rescaled, in trigger order), and the frames not used are never read."""
    rng = np.random.default_rng(bits + signed)
    info = np.iinfo(f"{'i' if signed else 'u'}{bits // 8}")
    for t in range(5):
        path = write_dicom(tmp_path / f"f{t}.dcm", np.zeros((6, 7), np.uint16), "4.4", trigger=float(4 - t),
                           spacing=(1.25, 0.75), intercept=-7.0)
        ds = pydicom.dcmread(path)
        ds.BitsAllocated = ds.BitsStored = bits
        ds.HighBit, ds.PixelRepresentation, ds.RescaleSlope = bits - 1, signed, 0.5 + t
        values = rng.integers(max(info.min, -10_000), min(info.max, 10_000), (6, 7), endpoint=True)
        ds.PixelData = values.astype(f"<{'i' if signed else 'u'}{bits // 8}").tobytes()
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, write_like_original=False)
    (unit,) = scan(tmp_path).units
    assert all(unit.locations)
    fast, slow = read_unit(unit, frames=3), _as_pydicom_decodes(unit).array
    np.testing.assert_array_equal(fast.array, slow[[0, 2, 4]])
    assert fast.spacing == (1.25, 0.75)


@pytest.mark.parametrize("name, located", [
    ("MR_small.dcm", True), ("MR_small_implicit.dcm", True), ("MR_small_padded.dcm", True), ("CT_small.dcm", True),
    ("rtdose_1frame.dcm", True), ("MR_small_bigendian.dcm", False), ("MR_small_RLE.dcm", False),
    ("rtdose.dcm", False), ("liver_1frame.dcm", False), ("image_dfl.dcm", False), ("SC_rgb_small_odd.dcm", False),
    ("SC_ybr_full_422_uncompressed.dcm", False)])
def test_only_plain_images_are_read_by_location(tmp_path, name, located):
    shutil.copy(get_testdata_file(name), tmp_path / name)
    (unit,) = scan(tmp_path).units
    assert bool(unit.locations and all(unit.locations)) == located
    np.testing.assert_array_equal(read_unit(unit).array, _as_pydicom_decodes(unit).array)


@pytest.mark.skipif(not REAL_CMR.is_dir(), reason="real CMR examination not present")
def test_real_cmr_examination_reads_alike_by_location_and_through_pydicom():
    units = scan(REAL_CMR).units
    assert sum(all(u.locations or [None]) for u in units) == len(units)  # Philips: every frame plain
    for unit in units:
        fast, slow = read_unit(unit, frames=8), read_unit(dataclasses.replace(unit, locations=None), frames=8)
        np.testing.assert_array_equal(fast.array, slow.array)
        assert fast.spacing == slow.spacing


def test_values_remembered_across_a_series_headers_are_those_each_header_gives(tmp_path, cine_folder):
    """Header records reuse what earlier files' identical stored values gave (DerivedValues); each file read
    alone, with nothing remembered, gives the same group key and member."""
    from deepmcat.dicom import header_records
    from deepmcat.io import list_files

    for name in ("MR_small.dcm", "MR_small_bigendian.dcm", "CT_small.dcm", "rtdose.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    files = list_files(cine_folder) + list_files(tmp_path) + (list_files(REAL_CMR) if REAL_CMR.is_dir() else [])
    together = header_records(files)
    assert sum(len(r) == 4 for r in together) >= 20
    for record, path in zip(together, files):
        alone = header_records([path])[0]
        assert record[:3] == alone[:3], path


def test_rgb_secondary_capture_becomes_luminance(tmp_path):
    shutil.copy(get_testdata_file("SC_rgb_small_odd.dcm"), tmp_path / "rgb.dcm")
    px = read_unit(scan(tmp_path).units[0])
    rgb = pydicom.dcmread(tmp_path / "rgb.dcm").pixel_array.astype(np.float32)  # (rows, cols, 3), RGB
    assert px.array.shape == (1, *rgb.shape[:2])
    assert np.allclose(px.array[0], rgb @ np.array([0.299, 0.587, 0.114], np.float32), atol=1e-3)


def test_nifti_4d_gives_one_unit_per_slice_with_time_frames(tmp_path):
    data = np.zeros((20, 16, 3, 7), np.float32)  # x, y, slices, time
    for z in range(3):
        for t in range(7):
            data[..., z, t] = 10 * z + t
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 2.0, 8.0, 1.0])), tmp_path / "cine.nii.gz")
    report = scan(tmp_path)
    assert len(report.units) == 3
    px = read_unit(report.units[1])
    assert px.array.shape == (7, 16, 20)  # frames, rows (y), cols (x)
    assert list(px.array[:, 0, 0]) == [10 + t for t in range(7)]
    assert px.spacing == (2.0, 1.5)


def test_nifti_3d_is_one_volume_unit(tmp_path):
    nib.save(nib.Nifti1Image(np.random.rand(10, 12, 5).astype(np.float32), np.eye(4)), tmp_path / "v.nii")
    report = scan(tmp_path)
    assert len(report.units) == 1 and read_unit(report.units[0]).array.shape == (5, 12, 10)


def _volume(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 2)).astype(np.float32), np.eye(4)), path)
    return path


def test_nifti_examinations_from_bids_names_subject_folders_and_sidecars(tmp_path):
    """Which examination and acquisition a NIfTI file belongs to: its dcm2niix sidecar first, then a BIDS-like
    name, then its subject folder; alone otherwise (README, NIfTI studies)."""
    import json

    _volume(tmp_path / "sub-07_ses-2_cine.nii.gz")
    _volume(tmp_path / "patient-a" / "lge.nii.gz")
    _volume(tmp_path / "loose.nii.gz")
    mag, phase = _volume(tmp_path / "flow_mag.nii.gz"), _volume(tmp_path / "flow_ph.nii.gz")
    for path, kind in ((mag, ["ORIGINAL", "PRIMARY", "M"]), (phase, ["ORIGINAL", "PRIMARY", "P"])):
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(
            {"StudyInstanceUID": "1.9", "SeriesInstanceUID": "1.9.4", "SeriesDescription": "flow AAo",
             "ImageType": kind, "Modality": "MR"}))
    _volume(tmp_path / "sub-08_t1.nii.gz").with_name("sub-08_t1.json").write_text("{not json")
    units = {Path(u.files[0]).name: u for u in scan(tmp_path).units}
    assert units["sub-07_ses-2_cine.nii.gz"].study == "sub-07_ses-2"
    assert units["lge.nii.gz"].study == "patient-a"
    assert units["loose.nii.gz"].study == units["loose.nii.gz"].series_uid == "loose.nii.gz"
    assert units["sub-08_t1.nii.gz"].study == "sub-08"  # a broken sidecar is ignored, the name still counts
    m, p = units["flow_mag.nii.gz"], units["flow_ph.nii.gz"]
    assert m.study == p.study == "1.9" and m.meta["series_description"] == "flow AAo"
    assert m.acquisition == "1.9.4|ORIGINAL\\PRIMARY\\M" and p.acquisition == "1.9.4|ORIGINAL\\PRIMARY\\P"


def test_nifti_localizer_planes_stored_a_file_each_are_one_acquisition(tmp_path):
    """NIfTI holds only parallel slices, so a localizer's planes are a file each (dcm2niix's ``_i<N>`` postfix,
    or the plane's name): one acquisition, as its DICOM series is. Other files stay series of their own, and a
    sidecar naming the series still decides."""
    import json

    for name in ("loc_i00001", "loc_i00002", "loc_i00003", "sub-01_05_scout_cor", "sub-01_05_scout_SAG",
                 "sub-01_05_scout_ax", "sub-01_06_cine", "sub-01_07_cine", "taxi", "_ax", "p1/survey_tra",
                 "p2/survey_tra", "side_i1", "side_i2"):
        _volume(tmp_path / f"{name}.nii.gz")
    for name, series in (("side_i1", "1.2.3"), ("side_i2", "1.2.4")):
        (tmp_path / f"{name}.json").write_text(json.dumps({"SeriesInstanceUID": series}))
    acquisition = {Path(u.files[0]).relative_to(tmp_path).as_posix().split(".")[0]: u.acquisition.split("|")[0]
                   for u in scan(tmp_path).units}
    assert acquisition["loc_i00001"] == acquisition["loc_i00002"] == acquisition["loc_i00003"] == "loc"
    assert acquisition["sub-01_05_scout_cor"] == acquisition["sub-01_05_scout_SAG"] == acquisition["sub-01_05_scout_ax"]
    assert acquisition["sub-01_06_cine"] != acquisition["sub-01_07_cine"]
    assert acquisition["taxi"] == "taxi.nii.gz" and acquisition["_ax"] == "_ax.nii.gz"  # no series name before it
    assert acquisition["p1/survey_tra"] != acquisition["p2/survey_tra"]  # two examinations' folders
    assert (acquisition["side_i1"], acquisition["side_i2"]) == ("1.2.3", "1.2.4")


def _oriented_volume(path: Path, normal_axis: int, tilt_deg: float = 0.0) -> Path:
    """A 3-D NIfTI whose slices stack along ``normal_axis`` (0, 1, 2), turned by ``tilt_deg`` about another."""
    axes = np.roll(np.eye(3), -(normal_axis + 1), axis=1)  # columns: row, column, slice directions
    t = np.deg2rad(tilt_deg)
    turn = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    affine = np.eye(4)
    affine[:3, :3] = turn @ axes
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 2)).astype(np.float32), affine), path)
    return path


def test_numbered_nifti_files_are_one_localizer_only_when_their_planes_are_oblique(tmp_path):
    """Some writers number a localizer's plane files (``_1``, ``_2``, ``_3``) as they number a stack's slices
    or magnitude and phase: the planes' geometry decides. Pairwise oblique planes are one acquisition;
    parallel ones, or two planes 10° apart, stay series of their own; a sidecar naming the series decides."""
    import json

    for k, axis in enumerate((0, 1, 2), start=1):
        _oriented_volume(tmp_path / f"sub-01_s07_{k}.nii.gz", axis)
    for k in (1, 2):
        _oriented_volume(tmp_path / f"sub-01_s03_{k}.nii.gz", 2)
        _oriented_volume(tmp_path / f"sub-01_s05_{k}.nii.gz", 2, tilt_deg=10.0 * (k - 1))
        _oriented_volume(tmp_path / f"sub-01_s09_{k}.nii.gz", k - 1)
    (tmp_path / "sub-01_s09_2.json").write_text(json.dumps({"SeriesInstanceUID": "1.2.9"}))
    acquisition = {Path(u.files[0]).name.split(".")[0]: u.acquisition.split("|")[0] for u in scan(tmp_path).units}
    assert acquisition["sub-01_s07_1"] == acquisition["sub-01_s07_2"] == acquisition["sub-01_s07_3"] == "sub-01_s07"
    assert acquisition["sub-01_s03_1"] != acquisition["sub-01_s03_2"]
    assert acquisition["sub-01_s05_1"] != acquisition["sub-01_s05_2"]
    assert acquisition["sub-01_s09_1"] == "sub-01_s09_1.nii.gz" and acquisition["sub-01_s09_2"] == "1.2.9"


def test_generated_nifti_says_the_same_examinations_and_acquisitions_as_dicom(tmp_path):
    from deepmcat.generate import generate

    def structure(folder):
        units = scan(folder).units
        return len({u.study for u in units}), len({u.acquisition for u in units})

    generate(tmp_path / "dicom", subjects=2, seed=4, balanced=True, progress=False)
    generate(tmp_path / "bids", subjects=2, seed=4, balanced=True, fmt="nifti", progress=False)
    generate(tmp_path / "side", subjects=2, seed=4, balanced=True, fmt="nifti", progress=False, sidecars=True)
    dicom = structure(tmp_path / "dicom")
    assert dicom[0] == 2
    assert structure(tmp_path / "side") == dicom
    # names say the subject and the scout's planes (a file each) one acquisition; flow magnitude and phase are
    # two acquisitions in either format (two files, or one DICOM series of two image types)
    assert structure(tmp_path / "bids") == dicom


@pytest.mark.parametrize("family", ["torso", "blob", "contour", "shell", "spheroid"])
def test_phantom_families_read_alike_from_dicom_and_nifti_with_sidecars(tmp_path, family):
    """The independent phantom families: every unit labelled, and NIfTI with sidecars telling the same
    examinations and acquisitions as DICOM. torso: both vendor structures (a series per short-axis slice,
    multi-frame stacks); blob: signed 16-bit phase pixels."""
    from deepmcat.generate import generate
    from deepmcat.labels import read_labels, unit_truth

    found, units_of = {}, {}
    # contour's seed 3, shell's seed 1 and spheroid's seed 6: a subject of each vendor, every category
    seed = {"contour": 3, "spheroid": 6}.get(family, 1)
    for fmt in ("dicom", "nifti"):
        out = tmp_path / fmt
        generate(out, subjects=2, seed=seed, balanced=False, fmt=fmt, family=family, progress=False, sidecars=True)
        units = units_of[fmt] = scan(out).units
        truth = unit_truth(units, read_labels(out / "labels.csv"), out)
        assert truth is not None and len(set(truth)) >= 10
        found[fmt] = (len(units), len({u.acquisition for u in units}), len({u.study for u in units}),
                      sorted(truth))
    assert found["dicom"] == found["nifti"] and found["dicom"][2] == 2
    # the series structure the final clustering uses (slices in the stack, frames, the scan plane's axis) is
    # the same in both formats, a stack stored a series (file) per slice included; the plane's as DICOM rounds
    # ImageOrientationPatient (0.01) and the NIfTI affine keeps it (every unit has one here)
    structure = {fmt: series_structure(u) for fmt, u in units_of.items()}
    assert sorted(map(tuple, structure["dicom"][:, :2].tolist())) == sorted(map(tuple, structure["nifti"][:, :2].tolist()))
    assert all(u.meta.get("normal") for us in units_of.values() for u in us)
    for a, b in (("dicom", "nifti"), ("nifti", "dicom")):
        gaps = np.abs(structure[a][:, None] - structure[b][None]).max(axis=2).min(axis=1)
        assert gaps.max() < 0.03
    if family == "torso":
        multiframe = [u for u in units_of["dicom"] if "/mf" in u.unit_id]
        per_slice = {u.series_uid for u in units_of["dicom"] if u.meta["series_description"] == "sBTFE_SA_slice"}
        assert multiframe and len(per_slice) >= 7  # subject 1: vendor A, subject 2: vendor B
    elif family == "blob":
        phase = [u for u in units_of["dicom"] if "VELOCITY" in u.meta["image_type"]]
        assert phase and read_unit(phase[0], 8).array.min() < -1000  # signed pixels stay negative
    elif family == "spheroid":  # vendor G: a series per short-axis slice; vendor H: the stack in one series
        sax = [u for u in units_of["dicom"] if u.meta["series_description"] in ("cine_tfi_sax_retro", "FIESTA CINE SA")]
        per_series = Counter(u.meta["series_description"] for u in {u.series_uid: u for u in sax}.values())
        assert per_series["cine_tfi_sax_retro"] >= 8 and per_series["FIESTA CINE SA"] == 1
    else:  # contour's vendor C or shell's vendor F enhanced files, and the other vendor's file per image
        assert {u.frame_indices is not None for u in units_of["dicom"]} == {True, False}


def test_enhanced_multiframe_dicom_reads_as_the_same_series_stored_a_file_per_frame(tmp_path):
    """An enhanced MR file holds a whole series (every slice and time point, stored time point by time
    point); it gives the units, series structure and canonical tensors one file per frame gives (torso:
    vendor A's series per slice and one-series flow, vendor B's stacks), through the header and tensor
    caches too (units of one file are told apart)."""
    from deepmcat.cache import TensorCache
    from deepmcat.config import PreprocessConfig
    from deepmcat.data import load_collection
    from deepmcat.generate import generate

    cfg = PreprocessConfig()
    loaded = {}
    for fmt in ("dicom", "enhanced"):
        generate(tmp_path / fmt, subjects=2, seed=1, balanced=False, fmt=fmt, family="torso", progress=False)
        cache = TensorCache(tmp_path / f"cache-{fmt}")
        first = load_collection(tmp_path / fmt, cfg, progress=False, cache=cache)
        again = load_collection(tmp_path / fmt, cfg, progress=False, cache=cache)  # headers and tensors cached
        assert [u.unit_id for u in again.units] == [u.unit_id for u in first.units]
        assert np.array_equal(np.asarray(again.tensors[:]), np.asarray(first.tensors[:]))
        loaded[fmt] = first
    files = {fmt: sum(1 for p in (tmp_path / fmt).rglob("*.dcm")) for fmt in loaded}
    assert files["enhanced"] * 10 < files["dicom"]
    enhanced = [u for u in loaded["enhanced"].units if u.frame_indices is not None]
    assert len({u.files[0] for u in enhanced}) < len(enhanced)  # files holding several units

    def described(collection):
        return sorted((u.series_uid, u.meta["image_type"], tuple(u.meta["normal"]), u.meta["depth"],
                       np.asarray(t).tobytes()) for u, t in zip(collection.units, collection.tensors[:]))

    assert described(loaded["enhanced"]) == described(loaded["dicom"])
    assert sorted(u.stack for u in loaded["enhanced"].units) == sorted(u.stack for u in loaded["dicom"].units)
    # plain frames are read by their offsets; a compressed enhanced file is decoded, to the same pixels
    stack = max(enhanced, key=lambda u: sum(v.files == u.files for v in enhanced))
    ds = pydicom.dcmread(stack.files[0])
    ds.compress(pydicom.uid.RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    rle = scan(tmp_path / "rle.dcm").units
    same_file = [u for u in enhanced if u.files == stack.files]
    assert len(rle) == len(same_file) > 1
    for a, b in zip(rle, same_file):
        assert np.array_equal(read_unit(a, 8).array, read_unit(b, 8).array)


def test_enhanced_geometry_shared_by_every_frame_and_time_as_temporal_position(tmp_path):
    """Scanners put what every frame shares (the orientation) in the shared functional groups, and some give
    time as a temporal position index rather than a trigger delay: the same units come out."""
    from deepmcat.generate import generate

    generate(tmp_path / "data", subjects=2, seed=1, balanced=False, fmt="enhanced", family="torso", progress=False)
    before = {u.unit_id: u for u in scan(tmp_path / "data").units if u.frame_indices is not None}
    cines = Counter(u.files[0] for u in before.values() if len(u.frame_indices) > 1)
    path = cines.most_common(1)[0][0]  # subject 2's short-axis cine stack: slice positions x time points
    ds = pydicom.dcmread(path)
    frames = ds.PerFrameFunctionalGroupsSequence
    ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence = frames[0].PlaneOrientationSequence
    for frame in frames:
        del frame.PlaneOrientationSequence, frame.CardiacSynchronizationSequence
    ds.save_as(path)
    after = {u.unit_id: u for u in scan(tmp_path / "data").units if u.frame_indices is not None}
    changed = [k for k in before if before[k].files[0] == path]
    assert len(changed) > 1 and len(before[changed[0]].frame_indices) > 1
    assert all(after[k].frame_indices == before[k].frame_indices for k in changed)
    assert all(after[k].meta["normal"] == before[k].meta["normal"] for k in changed)


def test_flow_magnitude_and_phase_frames_in_one_enhanced_file_are_two_acquisitions(tmp_path):
    """Enhanced flow often holds magnitude and phase frames in one file, told apart by each frame's
    FrameType and rescaled by each frame's own pixel value transformation: they become the two units (image
    types) and the real values that two files give."""
    from deepmcat.generate import generate

    generate(tmp_path / "data", subjects=1, seed=1, balanced=False, fmt="enhanced", family="torso", progress=False)
    units = scan(tmp_path / "data").units
    phase = next(u for u in units if "P" in u.meta["image_type"].split("\\") and u.frame_indices is not None)
    magnitude = next(u for u in units if u.series_uid == phase.series_uid and u is not phase)
    parts = [pydicom.dcmread(u.files[0]) for u in (magnitude, phase)]
    merged = parts[0]
    frames = []
    for part, kind in zip(parts, ("M", "P")):
        shared = part.SharedFunctionalGroupsSequence[0]
        for frame in part.PerFrameFunctionalGroupsSequence:
            frame.PixelValueTransformationSequence = shared.PixelValueTransformationSequence
            item = pydicom.Dataset()
            item.FrameType = ["ORIGINAL", "PRIMARY", kind, "NONE"]
            frame.MRImageFrameTypeSequence = pydicom.Sequence([item])
            frames.append(frame)
    del merged.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence
    merged.PerFrameFunctionalGroupsSequence = pydicom.Sequence(frames)
    merged.NumberOfFrames = len(frames)
    merged.ImageType = ["ORIGINAL", "PRIMARY", "MIXED"]
    merged.PixelData = parts[0].PixelData + parts[1].PixelData
    merged.save_as(tmp_path / "flow.dcm")
    both = sorted(scan(tmp_path / "flow.dcm").units, key=lambda u: u.meta["image_type"])
    assert [u.meta["image_type"] for u in both] == ["ORIGINAL\\PRIMARY\\M\\NONE", "ORIGINAL\\PRIMARY\\P\\NONE"]
    assert len({u.acquisition for u in both}) == 2
    for unit, alone in zip(both, (magnitude, phase)):
        assert np.array_equal(read_unit(unit, 8).array, read_unit(alone, 8).array)
    assert read_unit(both[1], 8).array.min() < -100  # the phase frames' own rescale


def test_a_stack_stored_as_a_series_per_slice_is_one_acquisition_for_training(tmp_path):
    """Three one-slice cine series of one examination acquired alike form one stack; a series with another
    frame count, and the same series in another examination, do not join it. Outputs keep the series."""
    def cine(folder, series, z, frames=3, study="1.2.3"):
        for t in range(frames):
            path = write_dicom(tmp_path / folder / f"{t}.dcm", np.full((8, 8), 10 * t + z, np.uint16), series,
                               position=(0, 0, z), trigger=40.0 * t, instance=t + 1)
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID = study
            ds.save_as(path)

    for k, z in enumerate((0.0, 8.0, 16.0)):
        cine(f"b{k}", f"9.{k}", z)
    cine("tag", "9.7", 24.0, frames=4)
    cine("other", "9.8", 0.0, study="4.5.6")
    units = {u.series_uid: u for u in scan(tmp_path).units}
    stack = {units[f"9.{k}"].stack for k in range(3)}
    assert len(stack) == 1 and stack.pop().startswith("stack-")
    assert units["9.7"].stack == units["9.7"].acquisition and units["9.8"].stack == units["9.8"].acquisition
    assert len({units[f"9.{k}"].acquisition for k in range(3)}) == 3
    # each series, read alone later, still knows its stack's size; depth is its frame count
    assert [units[uid].meta["stack_units"] for uid in ("9.0", "9.1", "9.2", "9.7", "9.8")] == [3, 3, 3, 1, 1]
    alone = series_structure([units["9.1"], units["9.7"]])
    assert np.allclose(2 ** alone[:, :2], [[3, 3], [1, 4]])


def test_nifti_one_slice_cines_without_sidecars_stack_unless_two_share_a_position(tmp_path):
    """Without a sidecar's image type a magnitude file and its phase file look alike to the stack rule, but
    they lie at one slice position while a stack's slices do not: one-slice 4-D files of one examination,
    orientation, matrix and frame count at distinct positions are one stack; two at one position are not."""
    def cine(name: str, z: float, frames: int = 5) -> None:
        affine = np.eye(4)
        affine[2, 3] = z
        data = np.random.default_rng(int(z)).random((8, 8, 1, frames)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, affine), tmp_path / f"{name}.nii.gz")

    for k, z in enumerate((0.0, 8.0, 16.0)):
        cine(f"sub-01_s0{k + 1}", z)
    cine("sub-01_s04", 24.0, frames=7)  # another frame count: not of the stack
    cine("sub-01_s05", 40.0, frames=9)
    cine("sub-01_s06", 40.0, frames=9)  # magnitude and phase: one position
    units = {Path(u.files[0]).name.split(".")[0]: u for u in scan(tmp_path).units}
    assert len({units[f"sub-01_s0{k}"].stack for k in (1, 2, 3)}) == 1
    assert units["sub-01_s01"].stack.startswith("stack-") and units["sub-01_s01"].meta["stack_units"] == 3
    assert len({units[f"sub-01_s0{k}"].acquisition for k in (1, 2, 3)}) == 3  # outputs keep the series
    for name in ("sub-01_s04", "sub-01_s05", "sub-01_s06"):
        assert units[name].stack == units[name].acquisition


def test_corrupt_and_foreign_files_are_reported_not_raised(tmp_path, cine_folder):
    good = next((cine_folder / "cine").iterdir())
    data = good.read_bytes()
    tmp_path = tmp_path / "bad"
    tmp_path.mkdir()
    (tmp_path / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.dcm").write_bytes(b"\x00" * 200 + b"nonsense")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.nii.gz").write_bytes(b"not gzip at all")
    shutil.copy(get_testdata_file("MR_truncated.dcm"), tmp_path / "mr_truncated.dcm")
    report = scan(tmp_path)
    skipped = {Path(p).name for p, _ in report.skipped}
    assert {"garbage.dcm", "notes.txt", "broken.nii.gz"} <= skipped
    # a header that parses but whose pixel data is cut short fails at read time with a clear message
    assert len(report.units) == 2
    for unit in report.units:
        with pytest.raises(ReadError, match="truncated|pixel|cannot"):
            read_unit(unit)


def test_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan(tmp_path / "nope")


@pytest.mark.skipif(not REAL_CMR.is_dir(), reason="real CMR examination not present")
def test_real_cmr_examination_groups_into_its_series():
    report = scan(REAL_CMR)
    assert report.n_files == 401  # 399 DICOM frames, labels.csv, LICENSE
    assert {Path(p).name for p, _ in report.skipped} <= {"labels.csv", "LICENSE", "README.md"}
    series = _by_series(report)
    assert len(series) == 10
    flow = next(units for units in series.values() if units[0].meta["series_description"].startswith("Flow"))
    assert len(flow) == 3  # magnitude FFE, magnitude PCA and phase share one series: split by ImageType
    assert len(report.units) == 38  # 16 SAX slice positions, volumes, cine positions
    n_frames = sum(len(u.files) for u in report.units)
    assert n_frames == 399
    sizes = [read_unit(u).array.shape for u in report.units[:5]]
    assert all(len(s) == 3 for s in sizes)


def test_nifti_magnitude_and_phase_without_sidecars_are_paired_by_their_sign(tmp_path):
    """Without an image type, two one-slice files of one examination at one position and grid are magnitude
    and phase when one holds signed values and the other does not: both are paired. Two unsigned files at one
    position (a repeat) are not, nor a signed file at another position or with another frame count."""
    rng = np.random.default_rng(0)

    def flow(name: str, z: float, signed: bool, frames: int = 6) -> None:
        affine = np.eye(4)
        affine[2, 3] = z
        data = rng.random((8, 8, 1, frames)).astype(np.float32)
        nib.save(nib.Nifti1Image(2 * data - 1 if signed else data, affine), tmp_path / f"{name}.nii.gz")

    flow("sub-01_s01", 0.0, signed=False)
    flow("sub-01_s02", 0.0, signed=True)  # its phase
    flow("sub-01_s03", 30.0, signed=False)
    flow("sub-01_s04", 30.0, signed=False)  # a repeat at one position
    flow("sub-01_s05", 50.0, signed=False)
    flow("sub-01_s06", 60.0, signed=True)  # signed, but elsewhere
    flow("sub-01_s07", 70.0, signed=False)
    flow("sub-01_s08", 70.0, signed=True, frames=9)  # signed, at one position, another frame count
    paired = {Path(u.files[0]).name.split(".")[0]: u.meta["paired"] for u in scan(tmp_path).units}
    assert paired == {"sub-01_s01": 1, "sub-01_s02": 1, "sub-01_s03": 0, "sub-01_s04": 0, "sub-01_s05": 0,
                      "sub-01_s06": 0, "sub-01_s07": 0, "sub-01_s08": 0}
