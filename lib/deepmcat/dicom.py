"""DICOM files → units: grouped by SeriesInstanceUID, ImageType, orientation and matrix size, then by slice
position; frames ordered by TriggerTime / InstanceNumber. Decoding checks the budget (:mod:`deepmcat.limits`)
first and decodes only the files of the frames used.

An enhanced multi-frame image (one file holding a whole stack, its geometry and timing in per-frame
functional groups, PS3.3 C.7.6.16) is split as the same acquisition stored one file per frame would be:
a unit per orientation and slice position, frames in time order, or one volume unit when every position
holds one frame.

Headers are parsed once, up to the pixel data and only the elements used. For the common uncompressed
single-frame image the header pass also notes where its pixel values lie in the file (:class:`PixelLocation`)
and decoding reads just those bytes; every other file (compressed, multi-frame, colour, big-endian, signed
with unused bits) goes through pydicom's decoders."""

from __future__ import annotations

import gc
import struct
import zlib
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.encaps import generate_pixel_data_frame
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from deepmcat import limits
from deepmcat.cache import HeaderCache
from deepmcat.parallel import ordered_map
from deepmcat.units import ReadError, Unit, UnitPixels, frames_to_read

#: patient identifiers: kept for ``organize --show-phi``, never written out otherwise
PHI_FIELDS = ("PatientName", "PatientID", "PatientBirthDate")
#: headers are read in ~0.6 ms a file on one core of the 2-core machine; starting the fork server and its
#: workers takes ~0.5 s, which ~2,000 files repay
PARALLEL_MIN_FILES = 2000
#: the header elements grouping, metadata and the pixel location use; pydicom skips the others unparsed (as
#: tags: pydicom would look each keyword up again for every file)
HEADER_TAGS = [Tag(keyword) for keyword in (
    "ImageType", "Modality", "SeriesDescription", *PHI_FIELDS, "TriggerTime", "StudyInstanceUID",
    "SeriesInstanceUID", "SeriesNumber", "InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient",
    "SliceLocation", "NumberOfFrames", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "SamplesPerPixel",
    "PhotometricInterpretation", "Rows", "Columns", "PixelSpacing", "ImagerPixelSpacing", "BitsAllocated",
    "BitsStored", "PixelRepresentation", "RescaleIntercept", "RescaleSlope")]
#: the pixel data element's tag as it starts the element in a little-endian file
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
#: transfer syntaxes whose pixel data is the plain little-endian array
RAW_SYNTAXES = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)


class PixelLocation(NamedTuple):
    """Where a plain single-frame image's pixel values lie in its file, and how to turn them into values."""

    offset: int
    dtype: str
    rows: int
    cols: int
    slope: float | None
    intercept: float | None
    spacing: tuple[float, float]


def _plane_key(iop) -> tuple:
    """Six ImageOrientationPatient values as grouping compares them (to 0.01); () without them."""
    return tuple(np.round(np.asarray(iop, float), 2)) if iop is not None and len(iop) == 6 else ()


def _along_normal(iop, ipp) -> float:
    """Position (mm) of a plane's first pixel along its normal: what tells slice positions apart."""
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    return round(float(np.dot(normal, np.asarray(ipp, float))), 1)


def _orientation_key(ds) -> tuple:
    return _plane_key(getattr(ds, "ImageOrientationPatient", None))


def _slice_position(ds) -> float | None:
    """Position of the slice along its normal (mm), from ImagePositionPatient, else SliceLocation."""
    iop = getattr(ds, "ImageOrientationPatient", None)
    ipp = getattr(ds, "ImagePositionPatient", None)
    if iop is not None and ipp is not None and len(iop) == 6 and len(ipp) == 3:
        return _along_normal(iop, ipp)
    loc = getattr(ds, "SliceLocation", None)
    return round(float(loc), 1) if loc is not None else None


def _frame_order(ds) -> tuple:
    trig = getattr(ds, "TriggerTime", None)
    inst = getattr(ds, "InstanceNumber", None)
    return (float(trig) if trig not in (None, "") else 0.0, int(inst) if inst not in (None, "") else 0)


def _functional_item(ds, frame, sequence: str):
    """A frame's item of one functional group sequence: the frame's own, else the shared one, else None."""
    shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
    for group in (frame, shared[0] if shared else None):
        items = getattr(group, sequence, None) if group is not None else None
        if items:
            return items[0]
    return None


def enhanced_units(ds) -> list[tuple[str | None, tuple, list[int]]] | None:
    """The units of an enhanced multi-frame image: (frame type, orientation key as :func:`_plane_key`,
    frame indices in time order) per frame type (flow magnitude and phase frames in one file are two
    acquisitions, as two image types of a series are), orientation and slice position, as :func:`_group`
    makes them of one file per frame; None when the file carries no per-frame geometry."""
    frames = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if not frames or len(frames) != _frame_count(ds):
        return None
    by_plane: dict[tuple, dict[float, list[tuple[float, int]]]] = defaultdict(lambda: defaultdict(list))
    for index, frame in enumerate(frames):
        plane = _functional_item(ds, frame, "PlaneOrientationSequence")
        where = _functional_item(ds, frame, "PlanePositionSequence")
        iop = getattr(plane, "ImageOrientationPatient", None) if plane else None
        ipp = getattr(where, "ImagePositionPatient", None) if where else None
        if iop is None or ipp is None or len(iop) != 6 or len(ipp) != 3:
            return None
        timing = _functional_item(ds, frame, "CardiacSynchronizationSequence")
        content = _functional_item(ds, frame, "FrameContentSequence")
        time = getattr(timing, "NominalCardiacTriggerDelayTime", None) if timing else None
        if time in (None, ""):
            time = getattr(content, "TemporalPositionIndex", None) if content else None
        kind = _functional_item(ds, frame, "MRImageFrameTypeSequence")
        frame_type = "\\".join(str(v) for v in getattr(kind, "FrameType", [])) if kind else ""
        key = (frame_type, _plane_key(iop))
        position = _along_normal(iop, ipp)
        by_plane[key][position].append((float(time) if time not in (None, "") else 0.0, index))
    units = []
    for key in sorted(by_plane):
        positions = by_plane[key]
        ordered = sorted(positions)
        frame_type, plane = key[0] or None, key[1]
        if len(ordered) > 1 and all(len(positions[p]) == 1 for p in ordered):
            units.append((frame_type, plane, [positions[p][0][1] for p in ordered]))  # one frame a position: a volume
        else:
            units.extend((frame_type, plane, [index for _, index in sorted(positions[p])]) for p in ordered)
    return units


def _dicom_meta(ds) -> dict:
    return {
        "modality": str(getattr(ds, "Modality", "")),
        "series_description": str(getattr(ds, "SeriesDescription", "")),
        "image_type": "\\".join(str(v) for v in getattr(ds, "ImageType", [])),
        "study_uid": str(getattr(ds, "StudyInstanceUID", "")),
        "series_number": str(getattr(ds, "SeriesNumber", "")),
        "spacing": str(tuple(round(v, 3) for v in _pixel_spacing(ds))),
        "phi": {k: str(getattr(ds, k, "")) for k in PHI_FIELDS},
    }


def _pixel_data_value(fp, implicit_vr: bool) -> tuple[int, int] | None:
    """(offset, length) of the pixel data's value, ``fp`` at the start of its element (where pydicom's
    ``stop_before_pixels`` leaves it), or None where the element is not plain pixel data. The element
    header is a tag and a 4-byte length, with VR and 2 reserved bytes between them in explicit VR (PS3.5
    7.1.2); an undefined length (0xFFFFFFFF) means encapsulated, compressed frames."""
    start = fp.tell()
    head = fp.read(12)
    if head[:4] != PIXEL_DATA_TAG:
        return None
    if implicit_vr:
        return start + 8, struct.unpack("<I", head[4:8])[0]
    if len(head) < 12 or head[4:6] not in (b"OB", b"OW"):
        return None
    return start + 12, struct.unpack("<I", head[8:12])[0]


def _read_header(path: str):
    """Header of a DICOM image file and where its pixel data's value lies ((offset, length) or None), or a
    reason string why it is not a DICOM image file."""
    try:
        limits.check_deflated(path)
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=HEADER_TAGS)
            pixel_data = _pixel_data_value(fp, ds.is_implicit_VR) if ds.is_little_endian else None
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
    return ds, pixel_data


def _plain_dtype(ds) -> str | None:
    """The numpy dtype of a file's pixel values when they lie plain in its pixel data (uncompressed
    little-endian, one sample, 8/16/32 bits, unsigned or signed with every bit used, greyscale), else None."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax not in RAW_SYNTAXES:
        return None
    try:
        bits, signed = int(ds.BitsAllocated), int(ds.PixelRepresentation)
        plain = (int(getattr(ds, "SamplesPerPixel", 1)) == 1 and bits in (8, 16, 32) and signed in (0, 1)
                 and (not signed or int(ds.BitsStored) == bits)
                 and str(getattr(ds, "PhotometricInterpretation", "")) in ("MONOCHROME1", "MONOCHROME2"))
    except (AttributeError, TypeError, ValueError):
        return None
    return f"<{'i' if signed else 'u'}{bits // 8}" if plain else None


def _pixel_format(ds) -> tuple[str, int, int, int, float | None, float | None, tuple[float, float]] | None:
    """(dtype, rows, cols, bytes, slope, intercept, spacing) of a plain single-frame image (:func:`_plain_dtype`,
    no functional groups), or None: pydicom decodes it."""
    dtype = _plain_dtype(ds)
    if dtype is None or "SharedFunctionalGroupsSequence" in ds:
        return None
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        single = int(getattr(ds, "NumberOfFrames", 1) or 1) == 1
        slope, intercept = (getattr(ds, k, None) for k in ("RescaleSlope", "RescaleIntercept"))
        slope, intercept = (None if v is None else float(v) for v in (slope, intercept))
    except (AttributeError, TypeError, ValueError):
        return None
    if not single or rows < 1 or cols < 1:
        return None
    return dtype, rows, cols, rows * cols * np.dtype(dtype).itemsize, slope, intercept, _pixel_spacing(ds)


def _pixel_location(pixel_format: tuple | None, pixel_data: tuple[int, int] | None) -> PixelLocation | None:
    """Where a plain image's pixel values lie, when its pixel data holds them all."""
    if pixel_format is None or pixel_data is None:
        return None
    dtype, rows, cols, n_bytes, slope, intercept, spacing = pixel_format
    offset, length = pixel_data
    if not n_bytes <= length < 0xFFFFFFFF:
        return None
    return PixelLocation(offset, dtype, rows, cols, slope, intercept, spacing)


def _group_key(ds) -> tuple:
    # matrix size too: files that reuse a series UID with another image size cannot be one unit
    return (str(ds.SeriesInstanceUID), str(list(getattr(ds, "ImageType", []))),
            _orientation_key(ds) + (int(ds.Rows), int(ds.Columns)))


def _frame_count(ds) -> int:
    return int(getattr(ds, "NumberOfFrames", 1) or 1)


def _tags(*keywords: str) -> tuple:
    return tuple(Tag(k) for k in keywords)


#: each value derived from a header, and the elements it is derived from
DERIVED_FROM = {
    _group_key: _tags("SeriesInstanceUID", "ImageType", "ImageOrientationPatient", "Rows", "Columns"),
    _slice_position: _tags("ImageOrientationPatient", "ImagePositionPatient", "SliceLocation"),
    _frame_order: _tags("TriggerTime", "InstanceNumber"),
    _frame_count: _tags("NumberOfFrames"),
    _pixel_format: _tags("SharedFunctionalGroupsSequence", "BitsAllocated", "PixelRepresentation", "BitsStored",
                         "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns",
                         "RescaleSlope", "RescaleIntercept", "PixelSpacing", "ImagerPixelSpacing"),
}


class DerivedValues:
    """Values derived from headers, remembered by the stored bytes of the elements they come from (and the
    transfer syntax): the files of one series repeat most of those bytes, and pydicom's conversion of the
    values costs about as much as parsing the file. A new value is computed from the header as before, so
    what is remembered is exactly what would be computed again."""

    def __init__(self) -> None:
        self._known: dict[tuple, object] = {}

    def get(self, derive, ds):
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        key = (derive, str(syntax), ds.is_little_endian, *(_stored(ds, tag) for tag in DERIVED_FROM[derive]))
        if key not in self._known:
            self._known[key] = derive(ds)
        return self._known[key]


def _stored(ds, tag) -> object:
    """An element's bytes as stored in the file, or, once pydicom has converted it, its value's text."""
    elem = ds.get_item(tag)
    if elem is None:
        return None
    return elem.value if isinstance(elem, RawDataElement) else repr(elem.value)


#: what grouping keeps of one file: (path, group key, (path, position, frame order, frame count, pixel
#: location, enhanced units), metadata); the metadata is None where an earlier file of the same batch had the
#: same key (it is the group's, and reading it costs a third of the header's time); the enhanced units are
#: :func:`enhanced_units`' (None for other files)
HeaderRecord = tuple[str, tuple, tuple[str, "float | None", tuple, int, "PixelLocation | None", "list | None"],
                     "dict | None"]
#: files whose headers one task reads (one worker round trip; metadata read once per group per batch)
HEADER_BATCH = 64


def _key_and_member(path: str, ds, pixel_data: tuple[int, int] | None, derived: DerivedValues
                    ) -> tuple[tuple, tuple] | str:
    """A file's group key and what its group keeps of it, or why its header is malformed."""
    try:
        return derived.get(_group_key, ds), (
            path, derived.get(_slice_position, ds), derived.get(_frame_order, ds), derived.get(_frame_count, ds),
            _pixel_location(derived.get(_pixel_format, ds), pixel_data), enhanced_units(ds))
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. TriggerTime "abc": this file only
        return f"malformed DICOM header ({type(exc).__name__}: {exc})"


def header_records(paths: Sequence[str]) -> list[HeaderRecord | tuple[str, str]]:
    """What grouping needs of each file's header, or (path, reason) where it is not a usable DICOM image;
    the metadata only for the first file of each group. A module-level function of small picklable
    results, so that worker processes can read headers."""
    records: list[HeaderRecord | tuple[str, str]] = []
    seen: set[tuple] = set()
    derived = DerivedValues()
    for path in paths:
        header = _read_header(path)
        parsed = header if isinstance(header, str) else _key_and_member(path, *header, derived)
        if isinstance(parsed, str):
            records.append((path, parsed))
            continue
        key, member = parsed
        ds = header[0]
        records.append((path, key, member, None if key in seen else _dicom_meta(ds)))
        seen.add(key)
    return records


def header_record(path: str) -> HeaderRecord | tuple[str, str]:
    """:func:`header_records` of one file (with its metadata)."""
    return header_records([path])[0]


def read_records(files: Sequence[str], workers: int | None = 1, progress: bool = False,
                 headers: HeaderCache | None = None) -> list[HeaderRecord | tuple[str, str]]:
    """Each file's header record, in file order: from ``headers`` where it holds the unchanged file,
    otherwise read (by ``workers`` processes when there are enough files to pay for starting them) and
    added to it."""
    cached = headers.get(files) if headers else [None] * len(files)
    records: list = [_from_json(r) if r is not None else None for r in cached]  # None: to read
    missing = [i for i, r in enumerate(records) if r is None]
    batches = [missing[i : i + HEADER_BATCH] for i in range(0, len(missing), HEADER_BATCH)]
    done = ordered_map(header_records, [[files[i] for i in b] for b in batches], workers,
                       min_items=PARALLEL_MIN_FILES // HEADER_BATCH, desc="reading headers", progress=progress,
                       count=len)
    for batch, results in zip(batches, done):
        for i, record in zip(batch, results):
            records[i] = record
    if headers and missing:
        headers.put([records[i] for i in missing])
    return records


def _from_json(record: list) -> HeaderRecord | tuple[str, str] | None:
    """A cached record back as :func:`header_record` returns it (JSON turned its tuples into lists); None for
    a record cached before enhanced units were read (the file's header is read again: nothing in the old
    record says whether its frames were an enhanced image's)."""
    if len(record) == 2:
        return tuple(record)
    path, key, member, meta = record
    if len(member) < 6:
        return None
    location = PixelLocation(*member[4][:6], tuple(member[4][6])) if member[4] else None
    enhanced = [(entry[0], tuple(entry[1]), list(entry[2])) for entry in member[5]] if member[5] else None
    return (path, (key[0], key[1], tuple(key[2])),
            (member[0], member[1], tuple(member[2]), member[3], location, enhanced), meta)


def group_dicom(files: Sequence[str], workers: int | None = 1, progress: bool = False,
                headers: HeaderCache | None = None) -> tuple[list[Unit], list[tuple[str, str]]]:
    """Group DICOM files into units (see module docstring); returns (units, skipped). Headers are read by
    ``workers`` processes (None or 0: one per core) when there are enough files to pay for starting them,
    or taken from ``headers`` (:func:`read_records`).

    Only what grouping needs is kept of each header (position, frame order, number of frames), and
    the metadata once per group, so memory stays small for archives of many thousands of files.
    """
    with _collector_paused():
        return _group(files, workers, progress, headers)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while grouping makes its many small, acyclic records: the
    full passes their number triggers traverse everything a process holding torch and MONAI has loaded
    (a cached scan of the demo's 6,733 files took 0.85 s with them, 0.25-0.30 s without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _group(files: Sequence[str], workers: int | None, progress: bool, headers: HeaderCache | None
           ) -> tuple[list[Unit], list[tuple[str, str]]]:
    skipped: list[tuple[str, str]] = []
    groups: dict[tuple, list[tuple[str, float | None, tuple, int, PixelLocation | None, list | None]]] = \
        defaultdict(list)
    metas: dict[tuple, dict] = {}
    for record in read_records(files, workers, progress, headers):
        if len(record) == 2:
            skipped.append(record)
            continue
        _, key, member, meta = record
        if meta is not None:
            metas.setdefault(key, meta)
        groups[key].append(member)
    for key in groups.keys() - metas.keys():  # cached records whose group's first file is gone
        record = header_record(groups[key][0][0])
        if len(record) != 4:
            skipped.extend((m[0], record[1]) for m in groups.pop(key))
        else:
            metas[key] = record[3]

    units: list[Unit] = []
    for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        series_uid, image_type, orientation = key
        meta = _with_normal(metas[key], orientation)
        tag = f"{series_uid}/{zlib.crc32(f'{image_type}{orientation}'.encode()) % 100_000:05d}"
        for i, m in enumerate(sorted((m for m in members if m[3] > 1 or m[5]), key=lambda m: m[0])):
            if not m[5]:
                units.append(Unit(f"{tag}/mf{i}", series_uid, [m[0]], "dicom", _with_shape(meta, orientation, m[3])))
                continue
            for k, (frame_type, plane, frames) in enumerate(m[5]):
                shape = tuple(plane) + orientation[-2:]  # the frames' orientation, the file's matrix
                frame_meta = dict(metas[key], image_type=frame_type) if frame_type else metas[key]
                units.append(Unit(f"{tag}/mf{i}/u{k:03d}", series_uid, [m[0]], "dicom",
                                  _with_shape(_with_normal(frame_meta, shape), shape, len(frames)),
                                  frame_indices=frames))
        single = [m for m in members if m[3] == 1 and not m[5]]
        if not single:
            continue
        by_position: dict = defaultdict(list)
        for m in single:
            by_position[m[1]].append(m)
        positions = sorted(by_position, key=lambda p: (p is None, p if p is not None else 0.0))
        if all(len(by_position[p]) == 1 for p in positions) and len(positions) > 1:
            # one frame per position and no time: a 3-D volume, ordered along its normal
            ordered = [by_position[p][0] for p in positions]
            units.append(Unit(f"{tag}/vol", series_uid, [m[0] for m in ordered], "dicom",
                              dict(meta, depth=len(ordered), static=True), locations=[m[4] for m in ordered]))
            continue
        for k, pos in enumerate(positions):
            frames = sorted(by_position[pos], key=lambda m: m[2])
            units.append(Unit(f"{tag}/s{k:03d}", series_uid, [m[0] for m in frames], "dicom",
                              _with_shape(meta, orientation, len(frames)), locations=[m[4] for m in frames]))
    return units, skipped


def _with_normal(meta: dict, orientation: tuple) -> dict:
    """A unit's metadata with its scan plane's normal in patient coordinates (:mod:`deepmcat.structure`),
    when ImageOrientationPatient gave one (``orientation``: its six values, then the matrix size)."""
    if len(orientation) < 8:
        return meta
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float))
    length = float(np.linalg.norm(normal))
    return dict(meta, normal=[round(float(v), 4) for v in normal / length]) if length > 1e-6 else meta


def _with_shape(meta: dict, orientation: tuple, frames: int) -> dict:
    """A unit's metadata with how it was acquired (orientation, matrix, pixel spacing, frame count): what
    :mod:`deepmcat.stacks` compares to find one stack stored as a series per slice, and its depth
    (:mod:`deepmcat.structure`); ``grid`` is the same without the orientation (:func:`deepmcat.stacks.mark_pairs`
    compares orientations with a tolerance)."""
    grid = f"{orientation[-2:]}|{meta['spacing']}|{frames}"
    return dict(meta, shape=f"{orientation}|{meta['spacing']}|{frames}", grid=grid, depth=frames)


def _rescale(ds, arr: np.ndarray, frame=None) -> np.ndarray:
    """Stored values → real values: the file's rescale, else the functional groups' (``frame``'s own, else
    the shared one)."""
    slope, intercept = getattr(ds, "RescaleSlope", None), getattr(ds, "RescaleIntercept", None)
    pvt = _functional_item(ds, frame, "PixelValueTransformationSequence") if slope is None else None
    if pvt:
        slope, intercept = getattr(pvt, "RescaleSlope", None), getattr(pvt, "RescaleIntercept", None)
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


def _dicom_frames(path: str, rescale: bool = True) -> tuple[np.ndarray, tuple[float, float]]:
    """(frames, rows, cols) float32 of one DICOM file, stored values rescaled unless ``rescale`` is false;
    colour images become luminance."""
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
    elif rescale:
        arr = _rescale(ds, arr)
    arr = arr.reshape(n_frames, rows, cols).astype(np.float32, copy=False)
    return arr, _pixel_spacing(ds)


def _enhanced_unit(unit: Unit, frames: int | None) -> UnitPixels:
    """The frames of one enhanced multi-frame file that make ``unit``: read by their byte offsets where the
    file stores them plain (a stack's file is read once per slice position, so decoding it whole for each
    would cost the number of positions over), else decoded."""
    path = unit.files[0]
    picked = frames_to_read(len(unit.frame_indices), frames)
    chosen = np.asarray(unit.frame_indices)[picked if picked is not None else slice(None)]
    header = _read_header(path)
    if isinstance(header, str):
        raise ReadError(f"{path}: {header}")
    ds, value = header
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None) or []
    if chosen.max() >= max(len(per_frame), _frame_count(ds)):
        raise ReadError(f"{path}: holds {_frame_count(ds)} frames, not the {chosen.max() + 1} its header listed")
    spacing = _pixel_spacing(ds)
    raw = _plain_frames(path, ds, value, chosen, spacing)
    if raw is None:
        arr, spacing = _dicom_frames(path, rescale=False)
        if chosen.max() >= len(arr):
            raise ReadError(f"{path}: holds {len(arr)} frames, not the {chosen.max() + 1} its header listed")
        raw = arr[chosen]
    frames_of = [per_frame[i] if i < len(per_frame) else None for i in chosen]
    return UnitPixels(np.stack([_rescale(ds, r, f) for r, f in zip(raw, frames_of)]), spacing)


def _plain_frames(path: str, ds, value: tuple[int, int] | None, chosen: np.ndarray, spacing: tuple[float, float]
                  ) -> np.ndarray | None:
    """Stored values of frames ``chosen`` of a multi-frame file (header ``ds``, pixel data at ``value``)
    whose pixel data holds them plain (:func:`_plain_dtype`), each read as :func:`_located_frame` reads a
    single-frame image; None for any other file (it is decoded)."""
    dtype = _plain_dtype(ds)
    try:
        rows, cols, n_frames = int(ds.Rows), int(ds.Columns), _frame_count(ds)
    except (AttributeError, TypeError, ValueError):
        return None
    if dtype is None or value is None or rows < 1 or cols < 1:
        return None
    offset, length = value
    frame_bytes = rows * cols * np.dtype(dtype).itemsize
    if length < n_frames * frame_bytes or chosen.max() >= n_frames:
        return None
    try:
        limits.check_bytes(len(chosen) * rows * cols * 4, f"{len(chosen)} frames of {rows}x{cols}")
    except limits.BudgetError as exc:
        raise ReadError(f"{path}: {exc}") from exc
    return np.concatenate([_located_frame(path, PixelLocation(offset + int(i) * frame_bytes, dtype, rows, cols, None,
                                                              None, spacing))[0] for i in chosen])


def _located_frame(path: str, where: PixelLocation) -> tuple[np.ndarray, tuple[float, float]]:
    """(1, rows, cols) float32 of a plain image whose pixel data the header pass located: just those bytes
    are read, then rescaled as :func:`_rescale` does."""
    count = where.rows * where.cols
    try:
        limits.check_bytes(count * 4, f"declared size {where.rows}x{where.cols}")
        arr = np.fromfile(path, dtype=where.dtype, count=count, offset=where.offset)
    except limits.BudgetError as exc:
        raise ReadError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise ReadError(f"{path}: cannot read DICOM pixel data ({exc})") from exc
    if arr.size != count:
        raise ReadError(f"{path}: pixel data truncated ({arr.size} of {count} values)")
    arr = arr.reshape(1, where.rows, where.cols).astype(np.float32)
    if where.slope is not None:
        arr *= where.slope
    if where.intercept is not None:
        arr += where.intercept
    return arr, where.spacing


def read_dicom_unit(unit: Unit, frames: int | None) -> UnitPixels:
    """One file per frame (or one multi-frame file): only the files of the frames used are decoded, those
    the header pass located (:class:`PixelLocation`) by reading just their pixel bytes."""
    if unit.frame_indices is not None:
        return _enhanced_unit(unit, frames)
    picked = frames_to_read(len(unit.files), frames)
    indices = range(len(unit.files)) if picked is None else picked
    arrays, spacing, total = [], None, 0
    for i in indices:
        path, where = unit.files[i], unit.locations[i] if unit.locations else None
        arr, sp = _located_frame(path, where) if where is not None else _dicom_frames(path)
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
