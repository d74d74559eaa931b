"""Series of a phantom family with plane geometry (:class:`deepmcat.families.torso.Series`, also used by
the blob family) → DICOM files (one per frame, or multi-frame), enhanced multi-frame DICOM (a file per
series and matrix size, geometry and timing in per-frame functional groups) or NIfTI files (with optional
dcm2niix-style sidecars), plus the ``labels.csv`` rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from deepmcat.families.torso import Plane, Series
from deepmcat.sidecars import write_sidecar

#: 12-bit magnitude storage
MAX_STORED = 4095
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"


def stored(series: Series, images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Integer pixels and (slope, intercept). 12-bit: phase as 0..4095 ↦ -4096..4094, magnitude up to 4095;
    16-bit: phase as signed integers ±4096, magnitude up to about 30,000."""
    if series.storage == "16bit":
        if series.signed:
            return np.round(np.clip(images, -1, 1) * 4096).astype(np.int16), 1.0, 0.0
        peak = float(np.percentile(images, 99.9)) or 1.0
        return np.round(np.clip(images / peak * rng.uniform(8000, 30000), 0, 65535)).astype(np.uint16), 1.0, 0.0
    if series.signed:
        return np.round((np.clip(images, -1, 1) + 1) * 2047.5).astype(np.uint16), 2.0, -4096.0
    peak = float(np.percentile(images, 99.9)) or 1.0
    return np.round(np.clip(images / peak * rng.uniform(0.45, 0.9) * MAX_STORED, 0, MAX_STORED)).astype(np.uint16), \
        1.0, 0.0


def _examination(study_uid: str, subject: int) -> tuple[str, str]:
    """The frame of reference UID and the date every file of one subject's examination carries."""
    return (generate_uid(entropy_srcs=[study_uid, "family-frame-of-reference"]),
            (dt.date(2021, 3, 1) + dt.timedelta(days=subject)).strftime("%Y%m%d"))


def _set_pixels(ds, block: np.ndarray, storage: str) -> None:
    """The image pixel elements of the (frames, rows, cols) stored integers ``block`` (the frame count is the
    caller's: a classic image names it only when there are several)."""
    ds.Rows, ds.Columns = block.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = 12 if storage == "12bit" else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = int(block.dtype == np.int16)
    ds.PixelData = block.tobytes()


def write_dicom(series: Series, folder: Path, number: int, study_uid: str, series_uid: str, subject: int,
                rng: np.random.Generator) -> list[Path]:
    from deepmcat.generate import phantom_image

    folder.mkdir(parents=True, exist_ok=True)
    frame_uid, date = _examination(study_uid, subject)
    paths, instance = [], 0
    for plane, images in zip(series.planes, series.images):
        pixels, slope, intercept = stored(series, images, rng)
        frames = [pixels] if series.multiframe else [pixels[f : f + 1] for f in range(len(pixels))]
        for f, block in enumerate(frames):
            instance += 1
            path = folder / f"{instance:05d}.dcm"
            ds = phantom_image(path, study_uid, series_uid, frame_uid, subject, date, number, instance,
                               series.description, series.image_type)
            ds.ImageOrientationPatient = [round(float(v), 6) for v in (*plane.row, *plane.col)]
            ds.ImagePositionPatient = [round(float(v), 4) for v in plane.origin]
            ds.SliceLocation = round(float(plane.normal @ plane.centre), 4)
            ds.PixelSpacing = [round(plane.spacing, 5)] * 2
            ds.SliceThickness = 8.0
            ds.TriggerTime = round(float(series.trigger_ms[min(f, len(series.trigger_ms) - 1)]), 2)
            if series.category == "t1_molli":
                ds.InversionTime = ds.TriggerTime
            if len(block) > 1:
                ds.NumberOfFrames = len(block)
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
            _set_pixels(ds, block, series.storage)
            ds.save_as(path, write_like_original=False)
            paths.append(path)
    return paths


def _item(**elements) -> Sequence:
    """A one-item sequence of these elements (a functional group's macro)."""
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return Sequence([ds])


def write_enhanced_dicom(series: Series, folder: Path, number: int, study_uid: str, series_uid: str, subject: int,
                         rng: np.random.Generator) -> list[Path]:
    """The series as enhanced MR images: one file per matrix size holding every slice position and frame,
    stored time point by time point (readers must sort by the functional groups, not by storage order).
    Pixels are stored as :func:`write_dicom` stores them (same ``rng`` draws)."""
    from deepmcat.generate import phantom_image

    folder.mkdir(parents=True, exist_ok=True)
    frame_uid, date = _examination(study_uid, subject)
    stored_planes = [(plane, *stored(series, images, rng)) for plane, images in zip(series.planes, series.images)]
    paths = []
    for instance, shape in enumerate(dict.fromkeys(p.shape for p in series.planes), start=1):
        planes = [(k, *entry) for k, entry in enumerate(stored_planes) if entry[0].shape == shape]
        n_time = max(len(pixels) for _, _, pixels, _, _ in planes)
        order = [(k, plane, pixels, t) for t in range(n_time) for k, plane, pixels, _, _ in planes if t < len(pixels)]
        path = folder / f"{instance:05d}.dcm"
        ds = phantom_image(path, study_uid, series_uid, frame_uid, subject, date, number, instance,
                           series.description, series.image_type)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_MR_IMAGE_STORAGE
        slope, intercept = planes[0][3], planes[0][4]
        ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
        shared = ds.SharedFunctionalGroupsSequence[0]
        shared.PixelMeasuresSequence = _item(PixelSpacing=[round(planes[0][1].spacing, 5)] * 2, SliceThickness=8.0)
        shared.PixelValueTransformationSequence = _item(RescaleSlope=slope, RescaleIntercept=intercept,
                                                        RescaleType="US")
        frames = []
        for k, plane, _, t in order:
            group = Dataset()
            group.FrameContentSequence = _item(StackID="1", InStackPositionNumber=k + 1, TemporalPositionIndex=t + 1)
            group.PlanePositionSequence = _item(ImagePositionPatient=[round(float(v), 4) for v in plane.origin])
            group.PlaneOrientationSequence = _item(
                ImageOrientationPatient=[round(float(v), 6) for v in (*plane.row, *plane.col)])
            trigger = series.trigger_ms[min(t, len(series.trigger_ms) - 1)]
            group.CardiacSynchronizationSequence = _item(NominalCardiacTriggerDelayTime=round(float(trigger), 2))
            frames.append(group)
        ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
        block = np.stack([pixels[t] for _, _, pixels, t in order])
        ds.NumberOfFrames = len(block)
        _set_pixels(ds, block, series.storage)
        ds.save_as(path, write_like_original=False)
        paths.append(path)
    return paths


def _parallel_groups(planes: list[Plane]) -> list[list[int]]:
    """Indices of planes that share an orientation and matrix (one NIfTI grid each)."""
    groups: list[list[int]] = []
    for i, plane in enumerate(planes):
        for group in groups:
            first = planes[group[0]]
            if first.shape == plane.shape and abs(first.normal @ plane.normal) > 0.999:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def write_nifti(series: Series, stem: Path) -> list[Path]:
    """One file per grid (a stack is one 4-D file of x, y, slices, time); the affine holds the geometry."""
    import nibabel as nib

    paths = []
    groups = _parallel_groups(series.planes)
    for g, group in enumerate(groups):
        planes = [series.planes[i] for i in group]
        first = planes[0]
        order = np.argsort([first.normal @ p.centre for p in planes])
        data = np.stack([series.images[group[i]] for i in order])  # slices, frames, rows, cols
        gap = float(np.diff([first.normal @ planes[i].centre for i in order]).mean()) if len(planes) > 1 else 8.0
        lps = np.eye(4)
        lps[:3, 0], lps[:3, 1], lps[:3, 2] = first.row * first.spacing, first.col * first.spacing, first.normal * gap
        lps[:3, 3] = planes[order[0]].origin
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # NIfTI is RAS
        arr = np.transpose(data, (3, 2, 0, 1))
        if arr.shape[3] == 1:
            arr = arr[..., 0]
        img = nib.Nifti1Image(arr.astype(np.float32), affine)
        img.header.set_xyzt_units("mm", "msec")
        path = stem.with_name(stem.name + (f"_{g + 1}" if len(groups) > 1 else "") + ".nii.gz")
        nib.save(img, str(path))
        paths.append(path)
    return paths


def write_subject(family: str, out: Path, subject: int, seed: int, balanced: bool, fmt: str,
                  wrong_descriptions: float, sidecars: bool) -> list[tuple[str, str, str, int]]:
    """Write one subject of the torso, blob, contour, shell or spheroid family; returns its ``labels.csv``
    rows. Torso, contour, shell and spheroid NIfTI files get BIDS-like names, blob ones a folder per subject."""
    from deepmcat.families import blob, contour, shell, spheroid, torso
    from deepmcat.generate import phantom_uid

    rng = np.random.default_rng([seed, subject, 4049])
    module = {"torso": torso, "blob": blob, "contour": contour, "shell": shell, "spheroid": spheroid}[family]
    series = module.subject_series(seed, subject, balanced)
    study_uid = phantom_uid(seed, subject, f"{family}-study")
    descriptions = sorted({s.description for s in series})
    rows = []
    for number, s in enumerate(series, start=1):
        description = s.description
        if wrong_descriptions and rng.random() < wrong_descriptions:
            description = str(rng.choice([d for d in descriptions if d != s.description]))
        written = Series(**{**s.__dict__, "description": description})
        series_uid = phantom_uid(seed, subject, f"{family}-series={s.group or number}")
        if fmt in ("dicom", "enhanced"):
            writer = write_enhanced_dicom if fmt == "enhanced" or s.enhanced else write_dicom
            paths = writer(written, out / f"sub-{subject:04d}" / f"s{number:02d}", number, study_uid, series_uid,
                           subject, rng)
        else:
            stem = (out / f"sub-{subject:04d}_s{number:02d}" if family in ("torso", "contour", "shell", "spheroid")
                    else out / f"patient_{subject:04d}" / f"series_{number:02d}")
            stem.parent.mkdir(parents=True, exist_ok=True)
            paths = write_nifti(written, stem)
            for path in paths if sidecars else []:
                write_sidecar(path, description=description, image_type=written.image_type, number=number,
                              study_uid=study_uid, series_uid=series_uid)
        rows.extend((str(p.relative_to(out)), s.category, description, int(description != s.description))
                    for p in paths)
    return rows
