"""NIfTI / NRRD / MHA files → units, read with ITK: a 2-D or 3-D image is one unit, a 4-D image one unit per
slice position (its frames along the last axis), decoded once for all of them."""

from __future__ import annotations

import os
from collections import defaultdict
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from deepmcat import limits
from deepmcat.config import PreprocessConfig
from deepmcat.sidecars import volume_meta
from deepmcat.stacks import SAME_POSITION, same_plane
from deepmcat.units import ReadError, Unit, UnitPixels, frames_to_read

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


def is_volume_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


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


def _plane_normal(io) -> np.ndarray | None:
    """The scan plane's unit normal in patient (LPS) coordinates, as DICOM units record it (None when the
    header's directions are degenerate)."""
    normal = np.cross(*(np.asarray([io.GetDirection(axis)[i] for i in range(3)], float) for axis in (0, 1)))
    length = float(np.linalg.norm(normal))
    return normal / length if length > 1e-6 else None


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
    meta = volume_meta(path, root)
    normal = _plane_normal(io) if len(dims) >= 3 else None
    if normal is not None:
        meta["normal"] = [round(float(v), 4) for v in normal]
    if len(dims) == 4 and (meta["image_type"] or (dims[2] == 1 and normal is not None)):
        # a time series acquired as DICOM units record it, so that a stack stored a file per slice is found
        # (deepmcat.stacks). Without a sidecar's image type magnitude and phase look alike, so a one-slice
        # file records where its slice lies: files at one position are not a stack
        plane = [round(float(v), 3) for axis in (0, 1) for v in io.GetDirection(axis)]
        grid = f"{[round(io.GetSpacing(a), 4) for a in (0, 1)]}|{dims[:2]}|{dims[3]}"
        meta["shape"], meta["grid"] = f"{plane}|{grid}", grid
        if not meta["image_type"]:
            meta["position"] = round(float(np.asarray([io.GetOrigin(i) for i in range(3)]) @ normal), 2)
    series = os.path.relpath(path, root) if root is not None else Path(path).name
    if len(dims) == 4 and dims[2] > 1:
        return [Unit(f"{series}/s{z:03d}", series, [path], "volume", dict(meta, depth=dims[3]), slice_index=z)
                for z in range(dims[2])]
    # 4-D with one slice: its frames; 3-D: its slices (read_volume_unit), a static volume
    depth = dims[3] if len(dims) == 4 else dims[2] if len(dims) == 3 else 1
    return [Unit(f"{series}/vol", series, [path], "volume", dict(meta, depth=depth, static=len(dims) == 3))]


def mark_signed_pairs(units: Sequence[Unit]) -> None:
    """The pair flag of files without a sidecar's image type (:func:`deepmcat.stacks.mark_pairs` reads it from
    image types): two one-slice files of one examination with the same grid, one plane
    (:func:`deepmcat.stacks.same_plane`) and one slice position are a magnitude and its phase, both
    ``paired``, when one holds signed values and the other does not; a repeated acquisition at one position
    (both unsigned) is not. Reads the pixels of those files only."""
    from deepmcat.preprocess import is_signed, percentiles  # preprocess imports the readers

    tails = (PreprocessConfig.low_percentile, PreprocessConfig.high_percentile)  # as preprocessing judges sign

    alike: dict[tuple, list[Unit]] = defaultdict(list)
    for unit in units:
        if unit.source == "volume" and not unit.meta.get("image_type") and unit.meta.get("position") is not None:
            alike[unit.study, unit.meta["grid"]].append(unit)
    signed: dict[str, bool | None] = {}

    def holds_signed(path: str) -> bool | None:
        if path not in signed:
            try:
                values = _read_volume(path)[0]
                values = values[np.isfinite(values)]
                signed[path] = bool(values.size) and is_signed(values, *percentiles(values, tails))
            except ReadError:
                signed[path] = None
        return signed[path]

    for group in alike.values():
        for a, b in combinations(group, 2):
            if (a.files[0] == b.files[0] or abs(a.meta["position"] - b.meta["position"]) >= SAME_POSITION
                    or not same_plane(a.meta["normal"], b.meta["normal"])):
                continue
            kinds = {holds_signed(a.files[0]), holds_signed(b.files[0])}
            if kinds == {True, False}:
                a.meta["paired"] = b.meta["paired"] = 1
    release_volume()


def read_volume_unit(unit: Unit, frames: int | None) -> UnitPixels:
    arr, spacing = _read_volume(unit.files[0])  # (t, z, y, x)
    if unit.slice_index is not None:
        stack = arr[:, unit.slice_index]
    elif arr.shape[0] > 1:  # 4-D with a single slice: its frames
        stack = arr[:, 0]
    else:  # 3-D: z slices as frames
        stack = arr[0]
    picked = frames_to_read(len(stack), frames)
    return UnitPixels(np.ascontiguousarray(stack if picked is None else stack[picked]), spacing)
