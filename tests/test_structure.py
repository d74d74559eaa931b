"""The series structure beside the pixels (:mod:`deepmcat.structure`): the scan plane's axis and how models
published before it keep their answers."""

from pathlib import Path

import numpy as np
import pytest

from deepmcat.io import scan
from deepmcat.structure import (COUNTS, PAIRED, PLANE, STATIC, StructureScale, observed_structure, plane_axis,
                                 series_structure)
from tests.helpers import write_dicom


def _normal(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([np.cos(a), np.sin(a), 0.0])


def test_the_plane_axis_ignores_the_normals_sign_and_its_distance_is_the_angle():
    axis = plane_axis(_normal(0))
    assert np.linalg.norm(axis) == pytest.approx(1.0)
    assert np.allclose(plane_axis(-_normal(0)), axis)  # slices stored in the other order: the same plane
    assert np.allclose(plane_axis(3 * _normal(0)), axis)
    for theta in (10, 45, 90, 135):
        gap = float(((plane_axis(_normal(theta)) - axis) ** 2).sum())
        assert gap == pytest.approx(2 * np.sin(np.radians(theta)) ** 2)
    for unknown in (None, [], [0, 0, 0], [np.nan, 0, 1]):
        assert np.array_equal(plane_axis(unknown), np.zeros(PLANE))


def test_dicom_units_record_their_scan_planes_normal(tmp_path):
    """ImageOrientationPatient's row and column directions give the normal; a unit without it has none (and
    the zero axis)."""
    write_dicom(tmp_path / "axial" / "1.dcm", np.ones((8, 8), np.uint16), "9.1")
    tilted = write_dicom(tmp_path / "tilted" / "1.dcm", np.ones((8, 8), np.uint16), "9.2")
    import pydicom

    ds = pydicom.dcmread(tilted)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
    ds.save_as(tilted)
    bare = write_dicom(tmp_path / "bare" / "1.dcm", np.ones((8, 8), np.uint16), "9.3")
    ds = pydicom.dcmread(bare)
    del ds.ImageOrientationPatient
    ds.save_as(bare)
    units = {u.series_uid: u for u in scan(tmp_path).units}
    assert np.allclose(units["9.1"].meta["normal"], [0, 0, 1])
    assert np.allclose(np.abs(units["9.2"].meta["normal"]), [1, 0, 0])
    assert "normal" not in units["9.3"].meta
    rows = series_structure([units["9.1"], units["9.2"], units["9.3"]])
    assert rows.shape == (3, STATIC + 1)
    assert np.allclose(rows[:, COUNTS:PAIRED], [plane_axis([0, 0, 1]), plane_axis([1, 0, 0]), np.zeros(PLANE)])
    assert not rows[:, PAIRED].any()  # no examination holds two image types acquired alike here
    assert rows[:, STATIC].tolist() == [1.0, 1.0, 1.0]  # single images


def test_a_static_stack_is_told_from_a_time_series_of_one_slice(tmp_path):
    """Late enhancement (slices of a volume, one image each) and T1 mapping (images of one slice over
    inversion times) look alike to the network; the static flag tells them apart, as DICOM and as NIfTI (a 3-D
    file is slices, a 4-D file of one slice is times). A scale published before the flag ignores it."""
    import nibabel as nib

    frame = np.ones((8, 8), np.uint16)
    for k in range(5):
        write_dicom(tmp_path / "lge" / f"{k}.dcm", frame, "8.1", position=(0.0, 0.0, 8.0 * k), instance=k + 1)
        write_dicom(tmp_path / "t1" / f"{k}.dcm", frame, "8.2", trigger=100.0 * k, instance=k + 1)
    nib.save(nib.Nifti1Image(np.ones((8, 8, 5), np.float32), np.eye(4)), tmp_path / "lge.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 1, 5), np.float32), np.eye(4)), tmp_path / "t1.nii.gz")
    units = {u.series_uid: u for u in scan(tmp_path).units}
    order = ["8.1", "8.2", "lge.nii.gz", "t1.nii.gz"]
    raw = series_structure([units[k] for k in order])
    assert raw[:, STATIC].tolist() == [1.0, 0.0, 1.0, 0.0]
    old = StructureScale.from_state({"mean": [0.0, 0.0], "std": [1.0, 1.0], "weight": 0.3, "pair_weight": 0.6})
    assert old.static_weight == 0.0 and old.dims == COUNTS + 1
    new = StructureScale.from_state(StructureScale.fit(raw, 0.3, static_weight=1.0).state())
    assert new.dims == COUNTS + 1 and new(raw, 4)[:, -1].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_a_scale_published_before_the_plane_existed_answers_as_it_did():
    """An older model's state has no plane weight: given today's eight columns it still makes its two."""
    old = StructureScale.from_state({"mean": [1.0, 2.0], "std": [0.5, 1.0], "weight": 0.3})
    raw = np.array([[2.0, 3.0, *plane_axis([0, 0, 1])]], np.float32)
    assert old.plane_weight == 0.0 and old.dims == COUNTS
    assert np.allclose(old(raw, 1), [[0.6, 0.3]])
    assert old(None, 4).shape == (4, COUNTS)
    new = StructureScale.from_state(StructureScale.fit(raw, 0.3, 0.5).state())
    assert new.dims == COUNTS + PLANE and np.allclose(new(raw, 1)[0, COUNTS:], 0.5 * raw[0, COUNTS:])


def test_frames_beyond_the_cap_count_as_one_kind_of_acquisition():
    """A 16- and a 30-frame series get one depth coordinate, 1-, 3-, 9- and 12-image series keep theirs apart;
    a scale published before the cap (no ``depth_cap`` in its state) counts every frame, as it did."""
    raw = np.zeros((6, COUNTS + PLANE))
    raw[:, 1] = np.log2([1, 3, 9, 12, 16, 30])
    capped = StructureScale.fit(raw, 1.0, depth_cap=16)
    depth = capped(raw, 6)[:, 1]
    assert depth[4] == depth[5] and len(set(depth[:5].tolist())) == 5
    restored = StructureScale.from_state(capped.state())
    assert restored.depth_cap == 16 and np.allclose(restored(raw, 6), capped(raw, 6))
    old = StructureScale.from_state({k: v for k, v in capped.state().items() if k != "depth_cap"})
    assert old.depth_cap == 0 and old(raw, 6)[4, 1] < old(raw, 6)[5, 1]


def test_flow_magnitude_is_paired_with_its_phase_and_a_vessel_cine_is_not(tmp_path):
    """The pair flag: units whose examination holds another image type with the same orientation, matrix,
    spacing and frame count (magnitude and phase, in one series or two); a cine of the same vessel with its
    own geometry is not paired. A scale published before the flag ignores it; one fitted with a weight adds
    the flag times the weight."""
    frames = np.ones((3, 8, 8), np.uint16)
    write_dicom(tmp_path / "mag" / "1.dcm", frames, "7.1", image_type=["ORIGINAL", "PRIMARY", "M"])
    write_dicom(tmp_path / "phase" / "1.dcm", frames, "7.2", image_type=["ORIGINAL", "PRIMARY", "P"])
    write_dicom(tmp_path / "cine" / "1.dcm", np.ones((3, 10, 8), np.uint16), "7.3",
                image_type=["ORIGINAL", "PRIMARY", "M"])
    units = {u.series_uid: u for u in scan(tmp_path).units}
    assert [units[k].meta["paired"] for k in ("7.1", "7.2", "7.3")] == [1, 1, 0]
    raw = series_structure([units[k] for k in ("7.1", "7.3")])
    assert raw[:, PAIRED].tolist() == [1.0, 0.0]
    old = StructureScale.from_state({"mean": [0.0, 0.0], "std": [1.0, 1.0], "weight": 0.3, "plane_weight": 0.3})
    assert old.pair_weight == 0.0 and old.dims == COUNTS + PLANE
    new = StructureScale.from_state(StructureScale.fit(raw, 0.3, 0.3, pair_weight=0.5).state())
    assert new.dims == COUNTS + PLANE + 1 and new(raw, 2)[:, -1].tolist() == [0.5, 0.0]


def test_the_generators_flow_phase_lies_where_its_magnitude_does(tmp_path):
    """One flow acquisition is written as two series of one SeriesInstanceUID: both at one orientation, so that
    every generated flow pair is flagged (written at two orientations, some were and some were not, and the
    flag split the category)."""
    import pydicom

    from deepmcat.generate import generate

    generate(tmp_path, 1, seed=3, progress=False)
    geometry = {}
    for category in ("flow_magnitude", "flow_phase"):
        (folder,) = tmp_path.glob(f"sub-0001/*_{category}")
        ds = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
        geometry[category] = (ds.SeriesInstanceUID, list(ds.ImageOrientationPatient), list(ds.ImagePositionPatient))
    assert geometry["flow_magnitude"] == geometry["flow_phase"]
    flow = [u for u in scan(tmp_path).units if "_flow_" in Path(u.files[0]).parent.name]
    assert len(flow) == 2 and {u.meta["paired"] for u in flow} == {1}


def test_the_torso_generators_three_chamber_plane_lies_between_its_two_and_four_chamber_planes():
    """The 3-chamber plane holds the apex, the mitral and the aortic valve; the aortic valve sits toward the
    septum, so the plane lies between the 4- and 2-chamber planes (30-60 degrees from each), not within a few
    degrees of the 2-chamber plane, where an aortic root drawn on the LV axis put it (a picture no archive
    holds twice)."""
    from deepmcat.families import torso

    def angle(a, b):
        return np.degrees(np.arccos(min(1.0, abs(float(a @ b)))))

    for subject in range(20):
        rng = np.random.default_rng(subject)
        planes = torso.views(torso.Body.draw(rng), rng)
        assert 30 <= angle(planes["3ch"].normal, planes["2ch"].normal) <= 60
        assert 30 <= angle(planes["3ch"].normal, planes["4ch"].normal) <= 60
        assert angle(planes["2ch"].normal, planes["4ch"].normal) == pytest.approx(90)



def test_the_shell_generators_contrasts_and_planes_are_those_of_real_examinations():
    """The held-out shell family: phase-sensitive LGE keeps the sign of the inverted signal (air grey between
    nulled myocardium and blood), multi-echo images decay with the echo time while fat beats against water,
    and the 3-chamber plane lies between the 4- and 2-chamber planes."""
    from deepmcat.families import shell

    ti = shell.TISSUES["myo"][3] * np.log(2)
    psir = {t: shell.signal("psir", t, ti=ti, contrast=True) for t in ("air", "myo", "blood", "scar")}
    assert abs(psir["myo"]) < 0.05 and psir["air"] == 0 and psir["blood"] > 0.2 and psir["scar"] > psir["myo"]
    assert shell.signal("ir", "body", ti=100) == pytest.approx(abs(shell.signal("psir", "body", ti=100)))
    echoes = [shell.signal("echo", "myo", te=te) for te in (2.0, 6.6, 11.2)]
    assert echoes[0] > echoes[1] > echoes[2]
    assert shell.signal("echo", "fat", te=2.3) < 0.1 * shell.signal("echo", "fat", te=4.6)
    assert shell.signal("haste", "blood") == 0 < shell.signal("haste", "myo")

    def angle(a, b):
        return np.degrees(np.arccos(min(1.0, abs(float(a @ b) / np.linalg.norm(a) / np.linalg.norm(b)))))

    for subject in range(20):
        normals = shell.long_axis_normals(shell.Anatomy(np.random.default_rng(subject)))
        assert angle(normals["lax_2c"], normals["lax_4c"]) == pytest.approx(90)
        assert 20 <= angle(normals["lax_3c"], normals["lax_4c"]) <= 45
        assert 45 <= angle(normals["lax_3c"], normals["lax_2c"]) <= 75


def test_the_spheroid_generators_contrast_agent_and_k_space_behave_like_a_scanner():
    """The held-out spheroid family: ten minutes after gadolinium, the inversion time that nulls myocardium
    leaves blood grey and scar bright; a first-pass bolus reaches the right ventricle before the left and the
    muscle last and weakest; a T1 map shows blood above myocardium above fat; k-space keeps the displayed
    matrix, and a zero-filled acquisition rings at an edge (Gibbs) where the full one does not."""
    from deepmcat.families import spheroid

    late = {n: spheroid.TISSUE[n][3] for n in ("myo", "blood", "scar")}
    ti = spheroid.relaxation("myo", late["myo"])[0] * np.log(2)
    lge = {n: spheroid.signal("ir", *spheroid.relaxation(n, late[n]), ti=ti) for n in late}
    assert lge["myo"] < 0.01 and 0.1 < lge["blood"] < lge["scar"]
    bolus = spheroid._first_pass(50, np.random.default_rng(0))
    peaks = {n: int(np.argmax(bolus[n])) for n in ("blood_rv", "blood_lv", "myo")}
    assert peaks["blood_rv"] < peaks["blood_lv"] < peaks["myo"] and bolus["myo"].max() < 0.5 * bolus["blood_lv"].max()
    native = {n: spheroid.relaxation(n)[0] for n in ("blood_lv", "myo", "fat")}
    assert native["blood_lv"] > native["myo"] > native["fat"]

    edge = np.zeros((1, 64, 64))
    edge[:, :, 32:] = 1.0
    peak = {}
    for lines in (64, 20):  # every line acquired, or the central 20 of 64 (zero-filled)
        receive = spheroid.Receiver(np.random.default_rng(1), (64, 64), snr=1e6)
        centre = np.zeros((64, 64), bool)
        centre[32 - lines // 2 : 32 + lines // 2, 32 - lines // 2 : 32 + lines // 2] = True
        receive.mask, receive.bias = np.fft.ifftshift(centre), np.ones((64, 64))
        image = receive(edge)
        assert image.shape == edge.shape and image.min() >= 0
        peak[lines] = float(image[0, 32, 32:].max())
    assert peak[64] == pytest.approx(1.0, abs=0.01) and peak[20] > 1.05


def test_a_series_read_alone_leaves_its_stack_and_pair_unknown(tmp_path):
    """Read with its examination, a one-slice magnitude series knows it is paired and a one-slice series
    knows it is one slice; read alone, an unpaired one-slice series cannot know either (NaN), while a series
    holding both image types still knows it is paired, and a multi-slice stack its size."""
    frames = np.ones((3, 8, 8), np.uint16)
    write_dicom(tmp_path / "mag" / "1.dcm", frames, "7.1", image_type=["ORIGINAL", "PRIMARY", "M"])
    write_dicom(tmp_path / "phase" / "1.dcm", frames, "7.2", image_type=["ORIGINAL", "PRIMARY", "P"])
    whole = observed_structure(scan(tmp_path).units)
    assert not np.isnan(whole).any() and whole[:, PAIRED].tolist() == [1.0, 1.0]
    alone = observed_structure(scan(tmp_path / "mag").units)
    assert np.isnan(alone[0, 0]) and np.isnan(alone[0, PAIRED]) and not np.isnan(alone[0, 1 : PAIRED]).any()
    # one series of a scanned folder (organize's): the scan saw the examination, so "unpaired" is known
    write_dicom(tmp_path / "cine" / "1.dcm", np.ones((3, 10, 8), np.uint16), "7.5")
    cine = [u for u in scan(tmp_path).units if u.series_uid == "7.5"]
    assert observed_structure(cine)[0, [0, PAIRED]].tolist() == [0.0, 0.0]
    assert series_structure(scan(tmp_path / "mag").units)[0, PAIRED] == 0.0  # training counts what it sees
    both = tmp_path / "both"
    write_dicom(both / "1.dcm", frames, "7.3", image_type=["ORIGINAL", "PRIMARY", "M"])
    write_dicom(both / "2.dcm", frames, "7.3", image_type=["ORIGINAL", "PRIMARY", "P"], instance=2)
    assert observed_structure(scan(both).units)[:, PAIRED].tolist() == [1.0, 1.0]
    stack = tmp_path / "stack"
    for k in range(3):
        write_dicom(stack / f"{k}.dcm", frames, "7.4", position=(0.0, 0.0, 8.0 * k), instance=k + 1)
    sizes = observed_structure(scan(stack).units)[:, 0]
    assert sizes == pytest.approx([np.log2(3)] * 3)
