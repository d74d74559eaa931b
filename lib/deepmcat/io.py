"""Reading medical image files and grouping them into *units*: the things that get a category.

A unit is one acquisition: a 3-D volume, or one slice position of a 2-D+t (cine) series. DICOM files are
grouped by SeriesInstanceUID, ImageType and orientation, then by slice position; NIfTI/NRRD/MHA files are
read with ITK (a 4-D file holds one unit per slice position, its frames along the last axis).
Unreadable files are reported in :class:`ScanReport` and skipped, never raised.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pydicom
from pydicom.encaps import generate_pixel_data_frame
from pydicom.errors import InvalidDicomError

from deepmcat import limits

log = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


class ReadError(ValueError):
    """A file or unit could not be read; the message names the file and the reason."""


@dataclass
class Unit:
    """One acquisition: what gets a category. ``files`` are absolute paths of its source files."""

    unit_id: str
    series_uid: str
    files: list[str]
    source: str  # "dicom" or "volume"
    meta: dict = field(default_factory=dict)
    #: for volume files with several units (4-D), which slice position this unit is
    slice_index: int | None = None

    @property
    def acquisition(self) -> str:
        """Units of one series and image type: one acquisition, hence one category (no label needed)."""
        return f"{self.series_uid}|{self.meta.get('image_type', '')}"

    @property
    def study(self) -> str:
        """The examination (subject) the unit belongs to; its series when the format does not say."""
        return self.meta.get("study_uid") or self.series_uid


@dataclass
class ScanReport:
    """What a scan found: units, and the files it skipped with the reason for each."""

    units: list[Unit]
    skipped: list[tuple[str, str]]
    n_files: int

    def summary(self) -> str:
        n_series = len({u.series_uid for u in self.units})
        text = f"{self.n_files} files -> {n_series} series, {len(self.units)} units"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} files (not images, or unreadable)"
        return text


@dataclass
class UnitPixels:
    """Raw pixel values of one unit: ``array`` is (frames, rows, cols) float32, ``spacing`` (row, col) mm."""

    array: np.ndarray
    spacing: tuple[float, float]


def sample_frames(n_frames: int, n_out: int) -> np.ndarray:
    """Indices of ``n_out`` evenly spaced frames of ``n_frames`` (repeats when there are fewer)."""
    return np.linspace(0, n_frames - 1, n_out).round().astype(int)


def _frames_to_read(n_frames: int, frames: int | None) -> np.ndarray | None:
    """The frames worth decoding when only ``frames`` evenly spaced ones are used (None: all of them)."""
    return sample_frames(n_frames, frames) if frames and n_frames > frames else None


def is_volume_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def list_files(root: str | os.PathLike) -> list[str]:
    """All regular files under ``root`` (or ``root`` itself), sorted; hidden files are ignored."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    if root.is_file():
        return [str(root.resolve())]
    files = [
        str(p.resolve())
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(files)


# ----------------------------------------------------------------------------------------------- DICOM


def _orientation_key(ds) -> tuple:
    iop = getattr(ds, "ImageOrientationPatient", None)
    return tuple(np.round(np.asarray(iop, float), 2)) if iop is not None and len(iop) == 6 else ()


def _slice_position(ds) -> float | None:
    """Position of the slice along its normal (mm), from ImagePositionPatient, else SliceLocation."""
    iop = getattr(ds, "ImageOrientationPatient", None)
    ipp = getattr(ds, "ImagePositionPatient", None)
    if iop is not None and ipp is not None and len(iop) == 6 and len(ipp) == 3:
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        return round(float(np.dot(normal, np.asarray(ipp, float))), 1)
    loc = getattr(ds, "SliceLocation", None)
    return round(float(loc), 1) if loc is not None else None


def _frame_order(ds) -> tuple:
    trig = getattr(ds, "TriggerTime", None)
    inst = getattr(ds, "InstanceNumber", None)
    return (float(trig) if trig not in (None, "") else 0.0, int(inst) if inst not in (None, "") else 0)


def _dicom_meta(ds) -> dict:
    return {
        "modality": str(getattr(ds, "Modality", "")),
        "series_description": str(getattr(ds, "SeriesDescription", "")),
        "image_type": "\\".join(str(v) for v in getattr(ds, "ImageType", [])),
        "study_uid": str(getattr(ds, "StudyInstanceUID", "")),
        "series_number": str(getattr(ds, "SeriesNumber", "")),
        # patient identifiers: kept for `organize --show-phi`, never written out otherwise
        "phi": {k: str(getattr(ds, k, "")) for k in ("PatientName", "PatientID", "PatientBirthDate")},
    }


def _read_header(path: str):
    """Header of a DICOM image file, or a reason string why it is not one."""
    try:
        limits.check_deflated(path)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return "not a DICOM file"
    except limits.BudgetError as exc:
        return str(exc)
    except Exception as exc:  # truncated or corrupt header
        return f"corrupt DICOM header ({type(exc).__name__}: {exc})"
    if "SeriesInstanceUID" not in ds:
        return "DICOM file without SeriesInstanceUID"
    if "Rows" not in ds or "Columns" not in ds:
        return "DICOM file without image (no Rows/Columns)"
    return ds


def group_dicom(files: Sequence[str]) -> tuple[list[Unit], list[tuple[str, str]]]:
    """Group DICOM files into units (see module docstring); returns (units, skipped).

    Only what grouping needs is kept of each header (position, frame order, whether it is multi-frame), and
    the metadata once per group, so memory stays small for archives of many thousands of files.
    """
    skipped: list[tuple[str, str]] = []
    groups: dict[tuple, list[tuple[str, float | None, tuple, bool]]] = defaultdict(list)
    metas: dict[tuple, dict] = {}
    for path in files:
        ds = _read_header(path)
        if isinstance(ds, str):
            skipped.append((path, ds))
            continue
        try:
            # matrix size too: files that reuse a series UID with another image size cannot be one unit
            key = (str(ds.SeriesInstanceUID), str(list(getattr(ds, "ImageType", []))),
                   _orientation_key(ds) + (int(ds.Rows), int(ds.Columns)))
            member = (path, _slice_position(ds), _frame_order(ds), int(getattr(ds, "NumberOfFrames", 1) or 1) > 1)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. TriggerTime "abc": this file only
            skipped.append((path, f"malformed DICOM header ({type(exc).__name__}: {exc})"))
            continue
        if key not in metas:
            metas[key] = _dicom_meta(ds)
        groups[key].append(member)

    units: list[Unit] = []
    for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        series_uid, image_type, orientation = key
        meta = metas[key]
        tag = f"{series_uid}/{zlib.crc32(f'{image_type}{orientation}'.encode()) % 100_000:05d}"
        for i, path in enumerate(sorted(m[0] for m in members if m[3])):
            units.append(Unit(f"{tag}/mf{i}", series_uid, [path], "dicom", dict(meta)))
        single = [m for m in members if not m[3]]
        if not single:
            continue
        by_position: dict = defaultdict(list)
        for m in single:
            by_position[m[1]].append(m)
        positions = sorted(by_position, key=lambda p: (p is None, p if p is not None else 0.0))
        if all(len(by_position[p]) == 1 for p in positions) and len(positions) > 1:
            # one frame per position and no time: a 3-D volume, ordered along its normal
            ordered = [by_position[p][0][0] for p in positions]
            units.append(Unit(f"{tag}/vol", series_uid, ordered, "dicom", dict(meta)))
            continue
        for k, pos in enumerate(positions):
            frames = sorted(by_position[pos], key=lambda m: m[2])
            units.append(Unit(f"{tag}/s{k:03d}", series_uid, [m[0] for m in frames], "dicom", dict(meta)))
    return units, skipped


def _rescale(ds, arr: np.ndarray) -> np.ndarray:
    slope, intercept = getattr(ds, "RescaleSlope", None), getattr(ds, "RescaleIntercept", None)
    shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
    if slope is None and shared:
        pvt = getattr(shared[0], "PixelValueTransformationSequence", None)
        if pvt:
            slope, intercept = getattr(pvt[0], "RescaleSlope", None), getattr(pvt[0], "RescaleIntercept", None)
    arr = arr.astype(np.float32)
    if slope is not None:
        arr *= float(slope)
    if intercept is not None:
        arr += float(intercept)
    return arr


def _pixel_spacing(ds) -> tuple[float, float]:
    spacing = getattr(ds, "PixelSpacing", None)
    if spacing is None:
        shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
        measures = getattr(shared[0], "PixelMeasuresSequence", None) if shared else None
        spacing = getattr(measures[0], "PixelSpacing", None) if measures else None
    if spacing is None:
        spacing = getattr(ds, "ImagerPixelSpacing", None)
    try:
        values = [float(s) for s in spacing] if spacing is not None else []
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or not all(np.isfinite(v) and v > 0 for v in values):
        return (1.0, 1.0)  # missing or malformed ("NaN\\1"): square pixels
    return (values[0], values[1])


def _dicom_frames(path: str) -> tuple[np.ndarray, tuple[float, float]]:
    """(frames, rows, cols) float32 of one DICOM file; colour images become luminance."""
    try:
        limits.check_deflated(path)
        ds = pydicom.dcmread(path)
        rows, cols = int(ds.Rows), int(ds.Columns)
        n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    except limits.BudgetError as exc:
        raise ReadError(f"{path}: {exc}") from exc
    except Exception as exc:
        raise ReadError(f"{path}: cannot read DICOM ({type(exc).__name__}: {exc})") from exc
    if rows < 1 or cols < 1:
        raise ReadError(f"{path}: empty image ({rows}x{cols})")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ReadError(f"{path}: DICOM file has no pixel data")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        limits.check_bytes(rows * cols * n_frames * samples * 4, f"declared size {n_frames}x{rows}x{cols}x{samples}")
        if syntax is not None and syntax.is_compressed and "PixelData" in ds:
            limits.check_frames(generate_pixel_data_frame(ds.PixelData, n_frames), str(syntax), rows, cols, samples)
    except limits.BudgetError as exc:
        raise ReadError(f"{path}: {exc}") from exc
    except Exception as exc:  # broken encapsulation
        raise ReadError(f"{path}: cannot read compressed pixel data ({type(exc).__name__}: {exc})") from exc
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ReadError(f"{path}: cannot decode pixel data (transfer syntax {syntax or 'unknown'}: {exc})") from exc
    if samples > 1:  # RGB / secondary capture: luminance
        photometric = str(getattr(ds, "PhotometricInterpretation", ""))
        # JPEG 2000's YBR_ICT / YBR_RCT come out of the decoder as RGB already
        if photometric.startswith("YBR") and photometric not in ("YBR_ICT", "YBR_RCT"):
            from pydicom.pixel_data_handlers.util import convert_color_space

            try:
                arr = convert_color_space(arr, photometric, "RGB")
            except (NotImplementedError, ValueError) as exc:
                raise ReadError(f"{path}: cannot convert colour space {photometric} ({exc})") from exc
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    else:
        arr = _rescale(ds, arr)
    arr = arr.reshape(n_frames, rows, cols)
    return arr, _pixel_spacing(ds)


def _read_dicom_unit(unit: Unit, frames: int | None) -> UnitPixels:
    """One file per frame (or one multi-frame file): only the files of the frames used are decoded."""
    picked = _frames_to_read(len(unit.files), frames)
    files = unit.files if picked is None else [unit.files[i] for i in picked]
    arrays, spacing, total = [], None, 0
    for path in files:
        arr, sp = _dicom_frames(path)
        if arrays and arr.shape[1:] != arrays[0].shape[1:]:
            raise ReadError(f"{path}: frame size {arr.shape[1:]} differs from the rest of its unit")
        total += arr.nbytes
        try:
            limits.check_bytes(total, f"unit {unit.unit_id}")
        except limits.BudgetError as exc:
            raise ReadError(f"{path}: {exc}") from exc
        arrays.append(arr)
        spacing = spacing or sp
    return UnitPixels(np.concatenate(arrays, axis=0), spacing or (1.0, 1.0))


# ---------------------------------------------------------------------------------------------- volumes


def _read_volume(path: str) -> tuple[np.ndarray, tuple[float, float]]:
    """:func:`_read_volume_file` of the file as it is now; the last file is kept, so the slice positions of a
    4-D file (consecutive units) decode it once. Callers must not write into the array."""
    st = os.stat(path)
    return _read_volume_file(path, st.st_mtime_ns, st.st_size)


def release_volume() -> None:
    """Forget the volume :func:`_read_volume` keeps (after a batch of units)."""
    _read_volume_file.cache_clear()


@lru_cache(maxsize=1)
def _read_volume_file(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, tuple[float, float]]:
    """ITK read of NIfTI/NRRD/MHA → array (t, z, y, x) (singleton axes added) and (row, col) spacing."""
    import itk

    try:
        image = itk.imread(path)
    except Exception as exc:
        raise ReadError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    arr = itk.array_from_image(image)
    dim = image.GetImageDimension()
    spacing = tuple(float(s) for s in image.GetSpacing())
    if image.GetNumberOfComponentsPerPixel() > 1:  # vector/RGB pixels: luminance of first 3
        arr = arr[..., :3].astype(np.float32).mean(axis=-1)
    if arr.size == 0 or min(arr.shape) < 1:
        raise ReadError(f"{path}: image is empty (shape {arr.shape})")
    if dim == 2:
        arr = arr[None, None]
    elif dim == 3:
        arr = arr[None]
    elif dim != 4:
        raise ReadError(f"{path}: {dim}-D images are not supported (2-D, 3-D or 4-D expected)")
    col_sp, row_sp = spacing[0], spacing[1]
    return arr.astype(np.float32, copy=False), (row_sp, col_sp)


def volume_units(path: str, root: str | os.PathLike | None = None) -> list[Unit]:
    """Units of one volume file: one for a 2-D/3-D image, one per slice position for a 4-D image. The series
    is the file's path relative to ``root`` (the scanned folder), so ``a/image.nii.gz`` and
    ``b/image.nii.gz`` stay two series."""
    import itk

    # the ImageIO alone reads the header without instantiating a templated image type, so a 5-D file is
    # reported as such rather than failing inside ITK's wrapping
    io = itk.ImageIOFactory.CreateImageIO(path, itk.CommonEnums.IOFileMode_ReadMode)
    if io is None:
        raise ReadError(f"{Path(path).name}: not a readable image volume (no ITK reader accepts it)")
    try:
        io.SetFileName(path)
        io.ReadImageInformation()
    except Exception as exc:
        raise ReadError(f"{Path(path).name}: cannot read image header ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[-1][:200]})") from exc
    dims = [io.GetDimensions(i) for i in range(io.GetNumberOfDimensions())]
    if io.GetNumberOfDimensions() > 4:
        raise ReadError(f"{path}: {len(dims)}-D images are not supported (2-D, 3-D or 4-D expected)")
    if int(np.prod(dims)) == 0:
        raise ReadError(f"{path}: image is empty (size {dims})")
    components = io.GetNumberOfComponents()
    try:  # what ITK allocates (float64 stays float64 until converted) and the float32 copy after it
        limits.check_bytes(int(np.prod(dims)) * components * (max(io.GetComponentSize(), 4) + 4),
                           f"declared size {dims} x {components} components")
    except limits.BudgetError as exc:
        raise ReadError(f"{path}: {exc}") from exc
    meta = {"modality": "", "series_description": Path(path).name, "image_type": ""}
    series = os.path.relpath(path, root) if root is not None else Path(path).name
    if len(dims) == 4 and dims[2] > 1:
        return [
            Unit(f"{series}/s{z:03d}", series, [path], "volume", dict(meta), slice_index=z) for z in range(dims[2])
        ]
    return [Unit(f"{series}/vol", series, [path], "volume", dict(meta))]


def _read_volume_unit(unit: Unit, frames: int | None) -> UnitPixels:
    arr, spacing = _read_volume(unit.files[0])  # (t, z, y, x)
    if unit.slice_index is not None:
        stack = arr[:, unit.slice_index]
    elif arr.shape[0] > 1:  # 4-D with a single slice: its frames
        stack = arr[:, 0]
    else:  # 3-D: z slices as frames
        stack = arr[0]
    picked = _frames_to_read(len(stack), frames)
    return UnitPixels(np.ascontiguousarray(stack if picked is None else stack[picked]), spacing)


# ------------------------------------------------------------------------------------------------- API


def scan(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> ScanReport:
    """Find every unit under the given files/folders. Unreadable files are skipped with a reason."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[tuple[str, Path]] = []
    for p in paths:
        root = Path(p).resolve()
        files.extend((f, root if root.is_dir() else root.parent) for f in list_files(p))
    units: list[Unit] = []
    skipped: list[tuple[str, str]] = []
    dicom_candidates = []
    for path, root in files:
        if is_volume_file(path):
            try:
                units.extend(volume_units(path, root))
            except ReadError as exc:
                skipped.append((path, str(exc)))
        else:
            dicom_candidates.append(path)
    dicom_units, dicom_skipped = group_dicom(dicom_candidates)
    units.extend(dicom_units)
    skipped.extend(dicom_skipped)
    for path, reason in skipped:
        log.debug("skipped %s: %s", path, reason)
    return ScanReport(units, skipped, len(files))


def read_unit(unit: Unit, frames: int | None = None) -> UnitPixels:
    """Pixel values of a unit: all its frames, or only the ``frames`` evenly spaced ones used (the others are
    not decoded). Raises :class:`ReadError` naming the file when it cannot be decoded."""
    pixels = _read_dicom_unit(unit, frames) if unit.source == "dicom" else _read_volume_unit(unit, frames)
    finite = pixels.array[np.isfinite(pixels.array)]
    if not finite.size:
        raise ReadError(f"{unit.files[0]}: image holds no finite pixel values")
    if finite.min() == finite.max():
        raise ReadError(f"{unit.files[0]}: image is blank (every pixel is {finite.min():g})")
    return pixels
