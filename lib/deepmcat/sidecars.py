"""What a folder of NIfTI / NRRD / MHA files says about examinations and acquisitions, which DICOM headers
would otherwise say. The contrastive term needs both: the slices of one acquisition are positives, the other
acquisitions of the same examination are the negatives. In order of trust:

1. a dcm2niix-style JSON sidecar beside the file (``x.nii.gz`` → ``x.json``): StudyInstanceUID,
   SeriesInstanceUID, SeriesDescription, ImageType, Modality, SeriesNumber;
2. a BIDS-like name: ``sub-<label>[_ses-<label>]_...`` is the examination;
3. one sub-folder per subject under the scanned folder: the sub-folder is the examination.

Without any of them each file is an examination of its own, as before. Without a sidecar naming the series,
each file is a series, except the planes of one localizer: NIfTI holds only parallel slices, so a series of
several planes is written a file per plane, named by dcm2niix's postfix for non-parallel slices (``_i<N>``)
or by the plane (``_cor``, ``_sag``, ``_ax`` …). Files whose names differ only by it are one acquisition, as
their DICOM series is. Other writers number the planes (``_1``, ``_2`` …), as they number much else (a stack's
slices, magnitude and phase): files whose names differ only by a number are one localizer only when their
scan planes are pairwise oblique (:func:`join_numbered_planes`).
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from deepmcat.units import Unit

#: sidecars larger than this are not dcm2niix's (a few kB): not read
MAX_SIDECAR_BYTES = 1 << 20
_BIDS = re.compile(r"^(sub-[A-Za-z0-9]+(?:_ses-[A-Za-z0-9]+)?)_")
_VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: the postfix a file of one plane of a multi-plane series carries: dcm2niix's image number for non-parallel
#: slices, or the plane's name
_PLANE_POSTFIX = re.compile(r"_(?:i\d+|cor|coronal|sag|sagittal|ax|axial|tra|transverse|transversal)$", re.IGNORECASE)
#: a numbered postfix, which says a localizer's plane only with the geometry's word for it
_NUMBER_POSTFIX = re.compile(r"_\d+$")
#: numbered files are one localizer when every two of their scan planes are at least this far apart (degrees):
#: a localizer's planes are near orthogonal, while numbered slices of a stack, or magnitude and phase, are
#: parallel
LOCALIZER_ANGLE = 30.0


def _stem(name: str) -> str:
    """The file name without its volume suffix."""
    for suffix in _VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def plane_series(path: str | os.PathLike, root: str | os.PathLike | None) -> str | None:
    """The series a file of one plane of a localizer belongs to (its path without the plane postfix, see the
    module docstring), or None when its name carries no such postfix."""
    p = Path(path)
    stem = _stem(p.name)
    series = _PLANE_POSTFIX.sub("", stem)
    if series == stem or not series:
        return None
    folder = os.path.relpath(p.parent, root) if root is not None else ""
    return os.path.normpath(os.path.join(folder, series))


def join_numbered_planes(units: Sequence[Unit]) -> int:
    """Make the volume files of one folder and examination whose names differ only by a numbered postfix
    one acquisition when their scan planes are pairwise at least :data:`LOCALIZER_ANGLE` apart (the planes of
    a localizer written a file per plane); files a sidecar or name already put in a series are left as they
    are. Returns how many localizers were joined."""
    numbered: dict[tuple, list[Unit]] = defaultdict(list)
    for unit in units:
        if unit.source != "volume" or unit.meta.get("acquisition_series") or not unit.meta.get("normal"):
            continue
        stem = _stem(Path(unit.files[0]).name)
        base = _NUMBER_POSTFIX.sub("", stem)
        if base != stem and base:
            numbered[unit.study, os.path.dirname(unit.series_uid), base].append(unit)
    joined = 0
    for (_, folder, base), members in numbered.items():
        normals = {unit.files[0]: unit.meta["normal"] for unit in members}
        if len(normals) < 2:
            continue
        n = np.asarray(list(normals.values()), float)
        cos = np.abs(n @ n.T)[np.triu_indices(len(n), 1)]
        if np.all(cos <= np.cos(np.deg2rad(LOCALIZER_ANGLE))):
            for unit in members:
                unit.meta["acquisition_series"] = os.path.normpath(os.path.join(folder, base))
            joined += 1
    return joined


def sidecar_path(path: str | os.PathLike) -> Path:
    """``x.nii.gz`` → ``x.json`` (also for .nii, .nrrd, .mha …)."""
    p = Path(path)
    stem = _stem(p.name)
    return p.with_name(stem + ".json") if stem != p.name else p.with_suffix(".json")


def read_sidecar(path: str | os.PathLike) -> dict:
    """The volume's JSON sidecar, or {} when there is none or it is not a small JSON object."""
    side = sidecar_path(path)
    try:
        if not side.is_file() or side.stat().st_size > MAX_SIDECAR_BYTES:
            return {}
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_sidecar(volume: str | os.PathLike, *, description: str, image_type: list[str], number: int,
                  study_uid: str, series_uid: str) -> None:
    """Write the dcm2niix-style sidecar of a volume file (what :func:`read_sidecar` reads back)."""
    fields = {"Modality": "MR", "SeriesDescription": description, "ImageType": list(image_type),
              "SeriesNumber": number, "StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
    sidecar_path(volume).write_text(json.dumps(fields, indent=1))


def examination(path: str | os.PathLike, root: str | os.PathLike | None) -> str:
    """The examination a volume file belongs to by its name or folder ("" when neither says)."""
    match = _BIDS.match(Path(path).name)
    if match:
        return match.group(1)
    if root is not None:
        parts = Path(os.path.relpath(path, root)).parts
        if len(parts) > 1 and parts[0] != "..":
            return parts[0]
    return ""


def volume_meta(path: str | os.PathLike, root: str | os.PathLike | None) -> dict:
    """Unit metadata of a volume file from its sidecar, name and folder (see the module docstring)."""
    side = read_sidecar(path)
    image_type = side.get("ImageType", "")
    if isinstance(image_type, list):
        image_type = "\\".join(str(v) for v in image_type)
    meta = {
        "modality": str(side.get("Modality", "")),
        "series_description": str(side.get("SeriesDescription") or side.get("ProtocolName") or Path(path).name),
        "image_type": str(image_type),
        "study_uid": str(side.get("StudyInstanceUID") or examination(path, root)),
        "series_number": str(side.get("SeriesNumber", "")),
    }
    series = side.get("SeriesInstanceUID") or plane_series(path, root)
    if series:
        meta["acquisition_series"] = str(series)
    return meta
