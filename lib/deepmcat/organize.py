"""``deepmcat organize``: every series of an archive (folder or DICOMweb PACS) gets a category.

Streams series by series (bounded memory) and appends each result to ``OUT/series.csv`` at once, so an
interrupted run resumes where it stopped without redoing finished series. When all series are done the
header check runs: each SeriesDescription is mapped to the cluster most of its series fall in, and series
whose own cluster differs are flagged — the headers a PACS cannot be trusted with.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deepmcat.checkpoint import atomic_write_bytes
from deepmcat.data import load_units
from deepmcat.inference import Model, series_vote
from deepmcat.sources import PHI_FIELDS, SeriesRef

log = logging.getLogger(__name__)

SERIES_CSV = "series.csv"
EMBEDDINGS_CSV = "embeddings.csv"
THUMBNAILS = "thumbnails"
COLUMNS = ["series_uid", "location", "modality", "series_description", "n_units", "cluster", "category",
           "confidence", "header_category", "header_agrees", "error"]
LAYOUTS = ("none", "links", "copy")


@dataclass
class OrganizeResult:
    rows: list[dict]
    done_before: int  # series found finished in OUT/series.csv from an earlier (interrupted) run
    processed: int
    seconds: float


def thumbnail_name(uid: str) -> str:
    return hashlib.sha1(uid.encode()).hexdigest()[:16] + ".png"


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip())
    return keep.strip("._")[:80] or "unnamed"


def read_finished(out: Path) -> list[dict]:
    """Rows already in ``series.csv``; a last line cut by an interruption is dropped (and removed)."""
    path = out / SERIES_CSV
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        path.write_bytes(data)
    return list(csv.DictReader(io.StringIO(data.decode())))


def header_check(rows: list[dict]) -> None:
    """Fill ``header_category``/``header_agrees``: a description's category is the majority cluster of the
    series carrying it; a series disagrees when its own cluster is another one."""
    clusters_of: dict[str, Counter] = defaultdict(Counter)
    name_of: dict[str, str] = {}
    for r in rows:
        if r["cluster"] != "":
            name_of[r["cluster"]] = r["category"]
            if r["series_description"].strip():
                clusters_of[r["series_description"].strip().lower()][r["cluster"]] += 1
    for r in rows:
        desc = r["series_description"].strip().lower()
        if r["cluster"] == "" or not desc:
            r["header_category"], r["header_agrees"] = "", ""
            continue
        majority = clusters_of[desc].most_common(1)[0][0]
        r["header_category"] = name_of[majority]
        r["header_agrees"] = "yes" if majority == r["cluster"] else "no"


class Organizer:
    """Categorises a source's series into ``out``; ``run()`` is resumable."""

    def __init__(self, model: Model, source, out: str | os.PathLike, layout: str = "none", show_phi: bool = False,
                 progress: bool = True):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
        self.model, self.source, self.out = model, source, Path(out)
        self.layout, self.show_phi, self.progress = layout, show_phi, progress
        self.columns = COLUMNS + (list(PHI_FIELDS) if show_phi else [])

    def run(self) -> OrganizeResult:
        tic = time.time()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / THUMBNAILS).mkdir(exist_ok=True)
        finished = read_finished(self.out)
        if finished and list(finished[0]) != self.columns:
            raise ValueError(f"{self.out / SERIES_CSV} was written with other columns (--show-phi differs): "
                             "use the same options to resume, or another --out")
        done = {r["series_uid"] for r in finished}
        refs = [r for r in self.source.series() if r.uid not in done]
        if finished:
            log.info("resuming: %d series already done, %d to go", len(done), len(refs))
        new_file = not (self.out / SERIES_CSV).is_file() or not finished
        with open(self.out / SERIES_CSV, "w" if new_file else "a", newline="") as fh, \
                open(self.out / EMBEDDINGS_CSV, "w" if new_file else "a", newline="") as emb_fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            emb_writer = csv.writer(emb_fh)
            for ref in tqdm(refs, desc="organizing series", unit="series", disable=not self.progress):
                row, embedding = self._one(ref)
                writer.writerow(row)
                fh.flush()
                if embedding is not None:
                    emb_writer.writerow([ref.uid, *(f"{v:.5f}" for v in embedding)])
                    emb_fh.flush()
        rows = read_finished(self.out)
        header_check(rows)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.out / SERIES_CSV, buffer.getvalue().encode())
        return OrganizeResult(rows, len(done), len(refs), time.time() - tic)

    def _one(self, ref: SeriesRef) -> tuple[dict, np.ndarray | None]:
        row = {"series_uid": ref.uid, "location": ref.location, "modality": ref.modality,
               "series_description": ref.description, "n_units": 0, "cluster": "", "category": "",
               "confidence": "", "header_category": "", "header_agrees": "", "error": ""}
        if self.show_phi:
            row.update({k: ref.phi.get(k, "") for k in PHI_FIELDS})
        try:
            with self.source.fetch(ref) as (units, folder):
                collection = load_units(units, self.model.config.preprocess, progress=False)
                if not collection.units:
                    row["error"] = collection.failed[0][1] if collection.failed else "no readable image"
                    return row, None
                embedded = self.model.embed(collection.tensors, collection.acquisitions)
                preds = self.model.predict_embedded(embedded, k=1)
                vote = series_vote(preds)
                embedding = embedded.mean(axis=0)
                self._thumbnail(ref.uid, collection.tensors)
                self._place(ref, vote.category, [f for u in collection.units for f in u.files], folder)
        except Exception as exc:  # one bad series must not stop an archive's run
            log.warning("series %s: %s", ref.uid, exc)
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            return row, None
        row.update(n_units=len(preds), cluster=vote.cluster, category=vote.category,
                   confidence=f"{vote.confidence:.4f}")
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
