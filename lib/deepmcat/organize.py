"""``deepmcat organize``: every series of an archive (folder or DICOMweb PACS) gets a category.

Streams series by series (bounded memory). Each result goes at once into ``OUT/journal.jsonl``, one JSON
line per series stamped with the model that made it, flushed and fsync'd, so an interrupted run resumes where
it stopped: a torn last line is dropped, a series categorised by another model is redone, and a lock file
keeps two runs from writing one folder. ``series.csv`` and ``embeddings.csv`` are rewritten from the journal
(atomically) at the end. When all series are done the header check (:mod:`deepmcat.headercheck`) flags the
series whose SeriesDescription disagrees with their content.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np
from tqdm import tqdm

from deepmcat.checkpoint import atomic_write_bytes
from deepmcat.cache import TensorStore
from deepmcat.data import load_units
from deepmcat.headercheck import header_check
from deepmcat.inference import Model, series_vote
from deepmcat.sources import PHI_FIELDS, SeriesRef, SourceUnavailable
from deepmcat.tables import safe_cell, write_csv

log = logging.getLogger(__name__)

SERIES_CSV = "series.csv"
EMBEDDINGS_CSV = "embeddings.csv"
JOURNAL = "journal.jsonl"
LOCK = ".organize.lock"
THUMBNAILS = "thumbnails"
COLUMNS = ["series_uid", "location", "modality", "series_description", "n_units", "cluster", "category",
           "confidence", "novel", "header_category", "header_agrees", "error", "model"]
LAYOUTS = ("none", "links", "copy")


@dataclass
class OrganizeResult:
    rows: list[dict]
    done_before: int  # series found finished in the journal of an earlier (interrupted) run
    processed: int
    seconds: float


def thumbnail_name(uid: str) -> str:
    return hashlib.sha1(uid.encode()).hexdigest()[:16] + ".png"


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip())
    return keep.strip("._")[:80] or "unnamed"


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold ``OUT/.organize.lock``; a second run on the same folder is refused while the first one runs."""
    with open(out / LOCK, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another deepmcat organize or watch is writing {out}: wait for it or use another --out") from None
        yield


def read_journal(out: Path, model_stamp: str) -> dict[str, dict]:
    """Series uid → journal entry (``row``, ``embedding``) made by the model ``model_stamp``.

    A last line cut by an interruption is dropped and removed; entries of another model are left out (their
    series are categorised again); a series journaled twice keeps its last entry.
    """
    path = out / JOURNAL
    if not path.is_file():
        return {}
    data = path.read_bytes()
    entries, good_end, stale = {}, 0, 0
    for line in data.splitlines(keepends=True):
        try:
            entry = json.loads(line)
            uid = entry["row"]["series_uid"]
        except (ValueError, KeyError, TypeError):
            break
        if not line.endswith(b"\n"):
            break
        good_end += len(line)
        if entry.get("model") == model_stamp:
            entries[uid] = entry
        else:
            stale += 1
    if good_end < len(data):
        log.warning("dropping a torn last line of %s (an interrupted run)", path)
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    if stale:
        log.info("%d series were categorised by another model: they are categorised again", stale)
    return entries


class Organizer:
    """Categorises a source's series into ``out``; ``run()`` is resumable."""

    def __init__(self, model: Model, source, out: str | os.PathLike, layout: str = "none", show_phi: bool = False,
                 progress: bool = True, store: TensorStore | None = None):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
        self.model, self.source, self.out = model, source, Path(out)
        self.layout, self.show_phi, self.progress = layout, show_phi, progress
        self.store = store  # canonical tensors of earlier runs (folder sources: their files stay where they are)
        self.columns = COLUMNS + (list(PHI_FIELDS) if show_phi else [])
        self.stamp = model.info["trained_at"]  # which model made a row: another model's rows are redone

    def run(self) -> OrganizeResult:
        tic = time.time()
        self.prepare()
        with exclusive(self.out):
            finished = self.finished()
            refs = [r for r in self.source.series() if r.uid not in finished]
            if finished:
                log.info("resuming: %d series already done, %d to go", len(finished), len(refs))
            with open(self.out / JOURNAL, "a") as journal:
                for ref in tqdm(refs, desc="organizing series", unit="series", disable=not self.progress):
                    finished[ref.uid] = self.record(journal, self.entry(ref))
            rows = self.publish(finished)
        return OrganizeResult(rows, len(finished) - len(refs), len(refs), time.time() - tic)

    def prepare(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / THUMBNAILS).mkdir(exist_ok=True)

    def finished(self) -> dict[str, dict]:
        """Series uid → journal entry of the series this model already categorised into ``out``."""
        finished = read_journal(self.out, self.stamp)
        if finished and set(next(iter(finished.values()))["row"]) != set(self.columns):
            raise ValueError(f"{self.out / JOURNAL} was written with other columns (--show-phi or the "
                             "deepmcat version differs): "
                             "use the same options to resume, or another --out")
        return finished

    def entry(self, ref: SeriesRef) -> dict:
        """The journal entry of one series: its row and mean embedding (None when it could not be read)."""
        row, embedding = self._one(ref)
        return {"model": self.stamp, "row": row,
                "embedding": None if embedding is None else [round(float(v), 5) for v in embedding]}

    @staticmethod
    def record(journal: IO[str], entry: dict) -> dict:
        """Append ``entry`` to the open journal, on disk before this returns."""
        journal.write(json.dumps(entry) + "\n")
        journal.flush()
        os.fsync(journal.fileno())
        return entry

    def publish(self, finished: dict[str, dict]) -> list[dict]:
        """Rewrite ``series.csv`` (header check over every row) and ``embeddings.csv`` from the entries."""
        rows = [{k: str(v) for k, v in e["row"].items()} for e in finished.values()]  # as series.csv holds them
        header_check(rows, [e["embedding"] for e in finished.values()])
        write_csv(rows, self.out / SERIES_CSV, self.columns)
        embeddings = "".join(",".join([safe_cell(e["row"]["series_uid"]), *(f"{v:.5f}" for v in e["embedding"])])
                             + "\n" for e in finished.values() if e["embedding"] is not None)
        atomic_write_bytes(self.out / EMBEDDINGS_CSV, embeddings.encode())
        return rows

    def _one(self, ref: SeriesRef) -> tuple[dict, np.ndarray | None]:
        row = {"series_uid": ref.uid, "location": ref.location, "modality": ref.modality,
               "series_description": ref.description, "n_units": 0, "cluster": "", "category": "",
               "confidence": "", "novel": "", "header_category": "", "header_agrees": "", "error": "",
               "model": self.stamp}
        if self.show_phi:
            row.update({k: ref.phi.get(k, "") for k in PHI_FIELDS})
        try:
            with self.source.fetch(ref) as (units, folder):
                collection = load_units(units, self.model.config.preprocess, progress=False,
                                        store=self.store if folder is None else None)
                if not collection.units:
                    row["error"] = collection.failed[0][1] if collection.failed else "no readable image"
                    return row, None
                embedded = self.model.embed(collection.tensors, collection.acquisitions,
                                            collection.observed_structure)
                preds = self.model.predict_embedded(embedded, k=1)
                vote = series_vote(preds)
                embedding = np.nan_to_num(embedded).mean(axis=0)  # an unknown count at its training mean, unpaired
                self._thumbnail(ref.uid, collection.tensors)
                self._place(ref, vote.category, [f for u in collection.units for f in u.files], folder)
        except SourceUnavailable:
            raise  # the server, not the series: try the series again later
        except Exception as exc:  # one bad series must not stop an archive's run
            message = self.source.redact(f"{type(exc).__name__}: {exc}")
            log.warning("series %s: %s", ref.uid, message)
            row["error"] = message[:300]
            return row, None
        row.update(n_units=len(preds), cluster=vote.cluster, category=vote.category,
                   confidence=f"{vote.confidence:.4f}", novel="yes" if vote.novel else "")
        return row, embedding

    def _thumbnail(self, uid: str, tensors: np.ndarray) -> None:
        """Middle frame of the middle unit, 8-bit PNG (what the report shows)."""
        from PIL import Image

        frame = tensors[len(tensors) // 2, tensors.shape[1] // 2]
        lo, hi = float(frame.min()), float(frame.max())
        img = ((frame - lo) / (hi - lo + 1e-8) * 255).astype(np.uint8)
        Image.fromarray(img).save(self.out / THUMBNAILS / thumbnail_name(uid))

    def _place(self, ref: SeriesRef, category: str, files: list[str], folder: Path | None) -> None:
        if self.layout == "none":
            return
        target = self.out / "sorted" / _safe(category) / _safe(f"{ref.description}_{ref.uid[-12:]}")
        target.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(sorted(set(files))):
            dest = target / f"{i:05d}_{Path(f).name}"
            if dest.exists() or dest.is_symlink():
                continue
            if self.layout == "links" and folder is None:
                dest.symlink_to(os.path.abspath(f))
            else:  # copies; a DICOMweb series' files exist only in its temporary folder
                shutil.copy2(f, dest)
