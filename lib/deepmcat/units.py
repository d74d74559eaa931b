"""Units, the things that get a category, and their raw pixels: what the readers produce.

A unit is one acquisition: a 3-D volume, or one slice position of a 2-D+t (cine) series. Only ``frames``
evenly spaced frames of a unit are used, so readers decode just those (:func:`frames_to_read`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
    #: for DICOM, where each file's pixel values lie when the header pass found them plain
    #: (:class:`deepmcat.dicom.PixelLocation`, or None per file); decoding then reads just those bytes
    locations: list | None = None
    #: for an enhanced multi-frame DICOM file holding several units, the indices of this unit's frames
    #: (:func:`deepmcat.dicom.enhanced_units`), in time order
    frame_indices: list[int] | None = None

    @property
    def acquisition(self) -> str:
        """Units of one series and image type: one acquisition, hence one category (no label needed). A
        volume file's sidecar may name the DICOM series it came from (flow magnitude and phase files)."""
        return f"{self.meta.get('acquisition_series') or self.series_uid}|{self.meta.get('image_type', '')}"

    @property
    def stack(self) -> str:
        """The acquisition as training groups units: a stack stored as one series per slice is one
        (:mod:`deepmcat.stacks`); otherwise the series and image type."""
        return self.meta.get("stack") or self.acquisition

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


def frames_to_read(n_frames: int, frames: int | None) -> np.ndarray | None:
    """The frames worth decoding when only ``frames`` evenly spaced ones are used (None: all of them)."""
    return sample_frames(n_frames, frames) if frames and n_frames > frames else None
