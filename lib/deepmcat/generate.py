"""Write synthetic subjects (:mod:`deepmcat.phantoms`) as DICOM series or NIfTI files plus ``labels.csv``."""

from __future__ import annotations

import csv
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from deepmcat.families import FAMILIES
from deepmcat.parallel import ordered_map
from deepmcat.phantoms import SeriesSpec, subject_series
from deepmcat.sidecars import write_sidecar

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
#: plane normals (patient LPS) the phantom planes are tilted around
_NORMALS = {
    "sax": (0.55, 0.45, -0.70),
    "lax": (-0.45, 0.80, 0.40),
    "axial": (0.0, 0.0, 1.0),
    "scout": (0.0, 1.0, 0.0),
}
_SCOUT_NORMALS = [(0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]
#: 12-bit storage of magnitude images
_MAX_STORED = 4095


def _orientation(normal, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(normal, float) + rng.normal(0, 0.05, 3)
    n /= np.linalg.norm(n)
    helper = np.array([0.0, 0.0, 1.0]) if abs(n[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    row = np.cross(helper, n)
    row /= np.linalg.norm(row)
    col = np.cross(n, row)
    return row, col


def _stored(spec: SeriesSpec) -> tuple[np.ndarray, float, float]:
    """Integer pixels plus (slope, intercept) that map them back to physical values."""
    if spec.signed:  # phase in [-1, 1] of VENC → 0..4095 with intercept -2048: signed after rescale
        return np.round(spec.images * 2047 + 2048).astype(np.uint16), 1.0, -2048.0
    if spec.category == "t1_map":  # milliseconds as they are
        return np.round(spec.images).astype(np.uint16), 1.0, 0.0
    peak = float(np.percentile(spec.images, 99.9)) or 1.0
    scaled = np.clip(spec.images / peak * 0.8 * _MAX_STORED, 0, _MAX_STORED)
    return np.round(scaled).astype(np.uint16), 1.0, 0.0


def phantom_uid(seed: int, subject: int, what: str) -> str:
    """A deterministic UID for one subject's study or series. The parts are joined with separators: pydicom
    hashes its entropy sources concatenated as they are, so (subject 1, series 12) and (subject 11, series 2)
    would otherwise be one UID."""
    return generate_uid(entropy_srcs=[f"deepmcat-phantom;seed={seed};subject={subject};{what}"])


def mr_dataset(path: Path, study_uid: str, series_uid: str) -> FileDataset:
    """An empty MR image dataset (explicit VR little endian) with its file meta and UIDs filled in."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MR_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study_uid, series_uid, "MR"
    return ds


def phantom_image(path: Path, study_uid: str, series_uid: str, frame_uid: str, subject: int, date: str,
                  number: int, instance: int, description: str, image_type: list[str]) -> FileDataset:
    """:func:`mr_dataset` with what every phantom image carries: frame of reference, patient, dates, series
    and instance numbers, description and image type (shared by every family's writer)."""
    ds = mr_dataset(path, study_uid, series_uid)
    ds.FrameOfReferenceUID = frame_uid
    ds.PatientName, ds.PatientID = f"Phantom^{subject:04d}", f"PHANTOM-{subject:04d}"
    ds.StudyDate = ds.SeriesDate = date
    ds.Manufacturer = "DeepMCAT phantom"
    ds.SeriesNumber, ds.InstanceNumber = number, instance
    ds.SeriesDescription, ds.ImageType = description, image_type
    return ds


def write_dicom_series(spec: SeriesSpec, out_dir: Path, subject: int, number: int, study_uid: str,
                       series_uid: str, rng: np.random.Generator,
                       axes: tuple[np.ndarray, np.ndarray]) -> list[Path]:
    """One file per frame and slice position, with real geometry, timing and UIDs; ``axes`` (row and column
    directions) orient every slice but a scout's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pixels, slope, intercept = _stored(spec)
    n_slices, n_frames, rows, cols = pixels.shape
    base_date = (dt.date(2020, 1, 1) + dt.timedelta(days=subject)).strftime("%Y%m%d")
    paths = []
    instance = 0
    frame_uid = generate_uid(entropy_srcs=[study_uid, "frame-of-reference"])
    for s in range(n_slices):
        row_dir, col_dir = _orientation(_SCOUT_NORMALS[s % 3], rng) if spec.plane == "scout" else axes
        n = np.cross(row_dir, col_dir)
        centre = n * (s - (n_slices - 1) / 2) * spec.slice_gap
        origin = centre - row_dir * cols / 2 * spec.spacing[1] - col_dir * rows / 2 * spec.spacing[0]
        for f in range(n_frames):
            instance += 1
            path = out_dir / f"IM_{instance:05d}.dcm"
            ds = phantom_image(path, study_uid, series_uid, frame_uid, subject, base_date, number, instance,
                               spec.description, spec.image_type)
            ds.Rows, ds.Columns = rows, cols
            ds.PixelSpacing = [round(spec.spacing[0], 4), round(spec.spacing[1], 4)]
            ds.SliceThickness = 8.0
            ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row_dir, *col_dir)]
            ds.ImagePositionPatient = [round(float(v), 4) for v in origin]
            ds.SliceLocation = round(float(np.dot(n, origin)), 4)
            ds.TriggerTime = round(float(spec.trigger_ms[f]), 2) if spec.trigger_ms is not None else 0.0
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
            ds.PixelData = pixels[s, f].tobytes()
            ds.save_as(path, write_like_original=False)
            paths.append(path)
    return paths


def write_nifti_series(spec: SeriesSpec, path_stem: Path) -> list[Path]:
    """One flat file per series (``sub-<subject>_…``, a BIDS-like name that says the examination): 4-D
    (x, y, slices, time) for cine, 3-D (x, y, slices) otherwise."""
    import nibabel as nib

    images = spec.images  # (slices, frames, rows, cols)
    sp = (spec.spacing[1], spec.spacing[0], max(spec.slice_gap, 8.0))
    if spec.plane == "scout":  # planes of other orientations cannot share one NIfTI grid
        stems = [path_stem.with_name(f"{path_stem.name}_{p}") for p in ("cor", "sag", "ax")[: images.shape[0]]]
        groups = [images[i : i + 1] for i in range(images.shape[0])]
    else:
        stems, groups = [path_stem], [images]
    paths = []
    for stem, group in zip(stems, groups):
        arr = np.transpose(group, (3, 2, 0, 1))  # (x, y, slices, frames)
        if arr.shape[3] == 1:
            arr = arr[..., 0]
        affine = np.diag([sp[0], sp[1], sp[2], 1.0])
        img = nib.Nifti1Image(arr.astype(np.float32), affine)
        img.header.set_xyzt_units("mm", "msec")
        if arr.ndim == 4 and spec.trigger_ms is not None and len(spec.trigger_ms) > 1:
            img.header["pixdim"][4] = float(spec.trigger_ms[1] - spec.trigger_ms[0])
        path = stem.with_suffix(".nii.gz")
        nib.save(img, str(path))
        paths.append(path)
    return paths


def apply_wrong_descriptions(series: list[SeriesSpec], fraction: float, rng: np.random.Generator) -> None:
    """Swap the SeriesDescription of about ``fraction`` of the series for another category's (bad headers)."""
    if fraction <= 0:
        return
    descriptions = sorted({s.description for s in series})
    for spec in series:
        if rng.random() < fraction:
            others = [d for d in descriptions if d != spec.description]
            if others:
                spec.description = str(rng.choice(others))


@dataclass(frozen=True)
class SubjectJob:
    """One subject to write: everything a worker process needs."""

    out: Path
    subject: int
    seed: int
    balanced: bool
    fmt: str
    wrong_descriptions: float
    sidecars: bool = False
    family: str = "classic"


def write_subject(job: SubjectJob) -> list[tuple[str, str, str, int]]:
    """Write one subject's series; returns its ``labels.csv`` rows. Seeded by (seed, subject) alone, so the
    output does not depend on how many workers write it."""
    if job.family != "classic":
        from deepmcat.families.files import write_subject as write_family_subject

        return write_family_subject(job.family, job.out, job.subject, job.seed, job.balanced, job.fmt,
                                    job.wrong_descriptions, job.sidecars)
    rng = np.random.default_rng([job.seed, job.subject, 7])
    series = subject_series(job.seed, job.subject, job.balanced)
    original = [spec.description for spec in series]
    apply_wrong_descriptions(series, job.wrong_descriptions, rng)
    study_uid = phantom_uid(job.seed, job.subject, "study")
    group_uids: dict[str, str] = {}
    group_axes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows = []
    for number, spec in enumerate(series, start=1):
        key = spec.group or f"{number}"
        series_uid = group_uids.setdefault(key, phantom_uid(job.seed, job.subject, f"series={key}"))
        if job.fmt == "dicom":
            folder = job.out / f"sub-{job.subject:04d}" / f"{number:02d}_{spec.category}"
            # one orientation for a stack's parallel slices, and for every image type of one acquisition
            # (flow phase lies where its magnitude does); drawn for each series so that later ones keep theirs
            axes = group_axes.setdefault(key, _orientation(_NORMALS[spec.plane], rng))
            paths = write_dicom_series(spec, folder, job.subject, number, study_uid, series_uid, rng, axes)
        else:
            paths = write_nifti_series(spec, job.out / f"sub-{job.subject:04d}_{number:02d}_{spec.category}")
            for path in paths if job.sidecars else []:
                write_sidecar(path, description=spec.description, image_type=spec.image_type, number=number,
                              study_uid=study_uid, series_uid=series_uid)
        wrong = int(spec.description != original[number - 1])
        rows.extend((str(p.relative_to(job.out)), spec.category, spec.description, wrong) for p in paths)
    return rows


def generate(out: str | Path, subjects: int, seed: int = 0, balanced: bool = False, fmt: str = "dicom",
             wrong_descriptions: float = 0.0, progress: bool = True, workers: int | None = 1,
             sidecars: bool = False, family: str = "classic") -> Path:
    """Generate ``subjects`` synthetic subjects into ``out`` with ``workers`` processes (None or 0: one per
    core; ~3 s a subject on one core); returns the path of ``labels.csv``. ``fmt``: "dicom" (a file per frame,
    or per slice for multi-frame cine), "enhanced" (enhanced multi-frame DICOM, a file per series) or "nifti";
    NIfTI files get dcm2niix-style JSON sidecars with ``sidecars``. ``family`` picks the phantom family
    (:mod:`deepmcat.families`)."""
    if subjects < 1:
        raise ValueError("--subjects must be at least 1")
    if family not in FAMILIES:
        raise ValueError(f"unknown phantom family {family!r}: use one of {', '.join(FAMILIES)}")
    if fmt not in ("dicom", "enhanced", "nifti"):
        raise ValueError(f"unknown format {fmt!r}: use dicom, enhanced or nifti")
    if fmt == "enhanced" and family == "classic":
        raise ValueError("--format enhanced (enhanced multi-frame DICOM) is written by the other families: "
                         "add --family torso, blob, contour, shell or spheroid")
    if not 0.0 <= wrong_descriptions <= 1.0:
        raise ValueError("--wrong-descriptions must be a fraction in [0, 1]")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [SubjectJob(out, subject, seed, balanced, fmt, wrong_descriptions, sidecars, family)
            for subject in range(1, subjects + 1)]
    labels = out / "labels.csv"
    partial = out / "labels.csv.partial"  # renamed when every subject is written: an interrupted run leaves no labels.csv
    try:
        with open(partial, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "category", "series_description", "description_wrong"])
            for rows in ordered_map(write_subject, jobs, workers, min_items=4, desc="generating subjects",
                                    progress=progress):
                writer.writerows(rows)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, labels)
    return labels
