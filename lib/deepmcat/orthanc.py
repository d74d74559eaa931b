"""Orthanc's own REST API, the little of it ``deepmcat watch`` needs: the change feed, a series' instances,
and series metadata to write categories back.

DICOMweb has no change feed and no place for a category; Orthanc has both (``/changes``, user-defined
metadata declared in its configuration, see ``scripts/start_orthanc.sh``). The client is also a series
source for :class:`deepmcat.organize.Organizer` (``fetch``, ``redact``). A server that does not answer
raises :class:`~deepmcat.sources.SourceUnavailable`, never a per-series error.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import requests

from deepmcat.io import Unit, scan
from deepmcat.sources import PHI_FIELDS, SeriesRef, SourceUnavailable, redact_url

#: the series metadata the watcher writes (names declared in Orthanc's "UserMetadata", numbers 4601–4604)
METADATA = {"category": "DeepMCATCategory", "confidence": "DeepMCATConfidence", "model": "DeepMCATModel",
            "error": "DeepMCATError"}


@dataclass
class OrthancSeries(SeriesRef):
    orthanc_id: str = ""  # Orthanc's resource id: the change feed's and the metadata's key
    instances: list[str] = field(default_factory=list)


class OrthancError(RuntimeError):
    """Orthanc answered, but refused what was asked (a configuration problem, not a passing one)."""


class Orthanc:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()  # credentials in the URL are sent as basic auth by requests

    def _call(self, method: str, path: str, **kwargs) -> requests.Response | None:
        """The answer; None for 404 (deleted meanwhile); SourceUnavailable when Orthanc does not answer."""
        try:
            answer = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise SourceUnavailable(f"Orthanc at {redact_url(self.url)} does not answer ({type(exc).__name__})") from None
        if answer.status_code == 404:
            return None
        if answer.status_code >= 500 and answer.status_code != 501:
            raise SourceUnavailable(f"Orthanc at {redact_url(self.url)} answered {answer.status_code} to {path}")
        if answer.status_code >= 400:
            raise OrthancError(f"Orthanc at {redact_url(self.url)} refused {method} {path}: "
                               f"{answer.status_code} {answer.text[:200]}")
        return answer

    def changes(self, since: int, limit: int) -> dict:
        """``{"Changes": [...], "Last": seq, "Done": bool}``: the changes after ``since``, oldest first."""
        return self._call("GET", "/changes", params={"since": since, "limit": limit}).json()

    def last_change(self) -> int:
        return int(self._call("GET", "/changes", params={"last": ""}).json()["Last"])

    def series(self, orthanc_id: str) -> dict | None:
        answer = self._call("GET", f"/series/{orthanc_id}")
        return None if answer is None else answer.json()

    def ref(self, orthanc_id: str, phi: bool = False) -> OrthancSeries | None:
        """What a series.csv row shows of a series before its pixels are read (None: deleted meanwhile)."""
        series = self.series(orthanc_id)
        if series is None:
            return None
        tags = series.get("MainDicomTags", {})
        patient = {}
        if phi:
            study = self._call("GET", f"/studies/{series['ParentStudy']}")
            patient = study.json().get("PatientMainDicomTags", {}) if study is not None else {}
        return OrthancSeries(tags.get("SeriesInstanceUID", ""), f"{redact_url(self.url)}/series/{orthanc_id}",
                             tags.get("SeriesDescription", ""), tags.get("Modality", ""),
                             {k: patient[k] for k in PHI_FIELDS if k in patient},
                             orthanc_id=orthanc_id, instances=list(series.get("Instances", [])))

    def redact(self, text: str) -> str:
        return text.replace(self.url, redact_url(self.url))

    @contextlib.contextmanager
    def fetch(self, ref: OrthancSeries) -> Iterator[tuple[list[Unit], Path | None]]:
        """The series' instances downloaded into a temporary folder (deleted afterwards), as units."""
        folder = Path(tempfile.mkdtemp(prefix="deepmcat-orthanc-"))
        try:
            for i, instance in enumerate(ref.instances):
                answer = self._call("GET", f"/instances/{instance}/file")
                if answer is not None:  # an instance deleted meanwhile is left out
                    (folder / f"{i:05d}.dcm").write_bytes(answer.content)
            yield scan(folder).units, folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def set_metadata(self, orthanc_id: str, values: dict[str, str]) -> None:
        """Write ``values`` (keys of :data:`METADATA`) as the series' metadata; OrthancError names a metadata
        Orthanc's configuration does not declare."""
        for key, value in values.items():
            name = METADATA[key]
            try:
                self._call("PUT", f"/series/{orthanc_id}/metadata/{name}", data=str(value).encode())
            except OrthancError as exc:
                raise OrthancError(f"{exc} — is {name} declared in Orthanc's \"UserMetadata\"? "
                                   "scripts/start_orthanc.sh declares it") from None
