"""Where series come from: a folder tree or a DICOMweb server (a PACS such as Orthanc), one series at a time.

``deepmcat organize`` walks a source series by series so that memory stays bounded whatever the archive's
size: a folder is scanned once (headers only), a DICOMweb series is fetched (WADO-RS) into a temporary folder
only while it is categorised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

from deepmcat.cache import HeaderCache
from deepmcat.dicom import PHI_FIELDS
from deepmcat.io import Unit, scan


log = logging.getLogger(__name__)


class SourceUnavailable(OSError):
    """The server holding the series did not answer (down, restarting): nothing is wrong with the series."""


def is_url(source: str | os.PathLike) -> bool:
    return str(source).startswith(("http://", "https://"))


def redact_url(url: str) -> str:
    """``url`` without the user name and password it may carry (what CSVs, reports and logs show)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit(parts._replace(netloc=netloc + (f":{parts.port}" if parts.port else "")))


@dataclass
class SeriesRef:
    """One series of a source: what the CSV and report show about it before its pixels are read."""

    uid: str
    location: str  # path relative to the source folder, or the series' DICOMweb URL
    description: str = ""
    modality: str = ""
    phi: dict = field(default_factory=dict)
    units: list[Unit] = field(default_factory=list)  # filled for folder sources by the scan


class FolderSource:
    """A folder tree of DICOM and volume files (scanned once, headers only)."""

    def __init__(self, root: str | os.PathLike, headers: HeaderCache | None = None):
        self.root = Path(root).resolve()
        report = scan(self.root, headers=headers)
        self.skipped = report.skipped
        by_series: dict[str, list[Unit]] = defaultdict(list)
        for unit in report.units:
            by_series[unit.series_uid].append(unit)
        self._refs = []
        for uid, units in by_series.items():
            files = [f for u in units for f in u.files]
            where = files[0] if units[0].source == "volume" else os.path.commonpath([os.path.dirname(f) for f in files])
            meta = units[0].meta
            self._refs.append(SeriesRef(uid, os.path.relpath(where, self.root), meta.get("series_description", ""),
                                        meta.get("modality", ""), dict(meta.get("phi", {})), units))

    def series(self) -> Iterator[SeriesRef]:
        yield from self._refs

    def __len__(self) -> int:
        return len(self._refs)

    def redact(self, text: str) -> str:
        return text

    @contextlib.contextmanager
    def fetch(self, ref: SeriesRef) -> Iterator[tuple[list[Unit], Path | None]]:
        """The series' units and the folder holding its files (None: they stay where they are)."""
        yield ref.units, None


class DicomWebSource:
    """All series a DICOMweb server lists (QIDO-RS, any modality), fetched one at a time (WADO-RS)."""

    PAGE = 500

    def __init__(self, url: str, search_filters: dict | None = None):
        from dicomweb_client.api import DICOMwebClient

        self.url = url.rstrip("/")
        self.client = DICOMwebClient(url=self.url)
        self.search_filters = dict(search_filters or {})
        self.skipped: list[tuple[str, str]] = []
        self._refs: list[SeriesRef] | None = None

    def _search(self) -> list[SeriesRef]:
        from pydicom.dataset import Dataset

        refs, offset = [], 0
        fields = ["SeriesDescription", "Modality", "StudyInstanceUID", *PHI_FIELDS]
        while True:
            page = self.client.search_for_series(search_filters=self.search_filters, fields=fields,
                                                 offset=offset, limit=self.PAGE)
            for item in page:
                ds = Dataset.from_json(item)
                study, uid = str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", ""))
                refs.append(SeriesRef(uid, f"{redact_url(self.url)}/studies/{study}/series/{uid}",
                                      str(ds.get("SeriesDescription", "")), str(ds.get("Modality", "")),
                                      {k: str(ds.get(k, "")) for k in PHI_FIELDS if k in ds}))
            if len(page) < self.PAGE:
                return refs
            offset += len(page)

    def series(self) -> Iterator[SeriesRef]:
        if self._refs is None:
            self._refs = self._search()
        yield from self._refs

    def __len__(self) -> int:
        return len(list(self.series()))

    def redact(self, text: str) -> str:
        """``text`` (an error message, say) without the credentials of the server's URL."""
        return text.replace(self.url, redact_url(self.url))

    @contextlib.contextmanager
    def fetch(self, ref: SeriesRef) -> Iterator[tuple[list[Unit], Path | None]]:
        """Download the series into a temporary folder, yield its units, then delete the folder."""
        folder = Path(tempfile.mkdtemp(prefix="deepmcat-series-"))
        try:
            download_series(self.client, ref.location.split("/studies/")[1].split("/")[0], ref.uid, folder)
            report = scan(folder)
            self.skipped.extend(report.skipped)
            yield report.units, folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def download_series(client, study_uid: str, series_uid: str, folder: Path) -> int:
    """WADO-RS retrieve of one series into ``folder`` (one file per instance); returns the file count."""
    folder.mkdir(parents=True, exist_ok=True)
    instances = client.retrieve_series(study_uid, series_uid)
    for i, ds in enumerate(instances):
        ds.save_as(str(folder / f"{i:05d}.dcm"), write_like_original=False)
    return len(instances)


def download_all(url: str, folder: Path, search_filters: dict | None = None) -> int:
    """Every series of a DICOMweb server into ``folder/<series uid>/``; returns the number of series."""
    source = DicomWebSource(url, search_filters)
    n = 0
    for ref in source.series():
        study = ref.location.split("/studies/")[1].split("/")[0]
        download_series(source.client, study, ref.uid, Path(folder) / ref.uid)
        n += 1
    return n


def local_copy(data: str, folder: Path) -> str:
    """A folder to read: ``data`` itself, or every series of the DICOMweb server ``data`` downloaded into
    ``folder``. Raises ValueError when the server lists no series."""
    if not is_url(data):
        return data
    n = download_all(data, folder)
    if not n:
        raise ValueError(f"the DICOMweb server at {redact_url(data)} lists no series")
    log.info("downloaded %d series from %s", n, redact_url(data))
    return str(folder)


def open_source(source: str | os.PathLike, headers: HeaderCache | None = None):
    """A DICOMweb source for a URL, else a folder source (whose headers ``headers`` may hold)."""
    return DicomWebSource(str(source)) if is_url(source) else FolderSource(source, headers)
