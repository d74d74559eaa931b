"""Predictions CSVs (one row per input file) and their scores against a labels CSV."""

from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from pathlib import Path

from deepmcat.cache import TensorCache, unit_key
from deepmcat.labels import read_labels

PRED_COLUMNS = ["path", "unit", "series_uid", "acquisition", "cluster", "category", "confidence", "novel",
                "acquisition_cluster", "series_category", "topk"]
LEVELS = ("acquisition", "unit", "file")


def predict_rows(model, collection, root: Path, cache: TensorCache | None = None) -> list[dict]:
    """One row per input file and unit (a 4-D file holds several units, a cine unit several files).

    ``acquisition_cluster`` / ``series_category`` are the acquisition's vote (series and image type), what an
    archive is sorted by: flow magnitude and phase stored in one DICOM series keep their own categories.
    ``novel`` is 1 where the unit is unlike every learned category (``category`` is then "unknown"; the
    nearest cluster stays in ``cluster``). With a ``cache``, the network runs only on units it has not seen
    with this model (:meth:`deepmcat.inference.Model.features`).
    """
    from deepmcat.inference import series_vote  # torch and MONAI: not needed to score a CSV

    features = None
    if cache is not None:  # the network's features of units predicted before are read back
        keys = collection.keys or [unit_key(u) for u in collection.units]
        features = model.features(collection.tensors, keys, cache.features(model.identity, model.feature_dim))
    preds = model.predict(collection.tensors, k=3, acquisitions=collection.acquisitions,
                          structure=collection.observed_structure, features=features)
    by_acquisition = defaultdict(list)
    for unit, pred in zip(collection.units, preds):
        by_acquisition[unit.acquisition].append(pred)
    votes = {key: series_vote(p) for key, p in by_acquisition.items()}
    rows = []
    under = os.path.join(os.path.abspath(root), "")
    for unit, pred in zip(collection.units, preds):
        vote = votes[unit.acquisition]
        for f in unit.files:
            rows.append({
                # a cut where the file lies under root: os.path.relpath costs ~30 us a file (0.2 s of a
                # cached predict of the demo's 6,733 files)
                "path": f[len(under):] if f.startswith(under) else os.path.relpath(f, root),
                "unit": unit.unit_id, "series_uid": unit.series_uid,
                "acquisition": unit.acquisition, "cluster": pred.cluster, "category": pred.category,
                "confidence": f"{pred.confidence:.4f}", "novel": int(pred.novel), "acquisition_cluster": vote.cluster,
                "series_category": vote.category,
                "topk": ";".join(f"{t['category']}:{t['confidence']:.3f}" for t in pred.topk),
            })
    return sorted(rows, key=lambda r: (r["path"], r["unit"]))


def evaluate_files(pred_path: str | Path, labels_path: str | Path, level: str = "acquisition") -> dict:
    """Metrics of a predictions CSV against a labels CSV, at one level: ``acquisition`` (series × image type,
    what sorting an archive is judged by; its cluster is the acquisition's vote), ``unit`` (slice positions:
    a short-axis stack counts once per slice) or ``file``. An item's category is the majority of its files'
    labels; a file's cluster the majority of its rows'."""
    from deepmcat.metrics import composition, evaluate

    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
    labels = read_labels(labels_path)
    if not Path(pred_path).is_file():
        raise FileNotFoundError(f"predictions file not found: {pred_path}")
    with open(pred_path, newline="") as fh:
        reader = csv.DictReader(fh)
        needed = {"path", "unit", "cluster"} | ({"acquisition", "acquisition_cluster"} if level == "acquisition" else set())
        if not reader.fieldnames or not needed <= set(reader.fieldnames):
            raise ValueError(f"{pred_path}: a predictions CSV needs the columns {','.join(sorted(needed))}")
        preds = list(reader)
    truth_votes: dict[str, Counter] = defaultdict(Counter)
    cluster_votes: dict[str, Counter] = defaultdict(Counter)
    key_column = {"acquisition": "acquisition", "unit": "unit", "file": "path"}[level]
    cluster_column = "acquisition_cluster" if level == "acquisition" else "cluster"
    matched = set()
    for row in preds:
        category = labels.get(os.path.normpath(row["path"]))
        if category is None:
            continue
        matched.add(row["path"])
        truth_votes[row[key_column]][category] += 1
        cluster_votes[row[key_column]][row[cluster_column]] += 1
    if not matched:
        raise ValueError(f"no prediction path matches a path in {labels_path}")
    keys = sorted(truth_votes)
    truth = [truth_votes[k].most_common(1)[0][0] for k in keys]
    clusters = [cluster_votes[k].most_common(1)[0][0] for k in keys]
    scores = evaluate(truth, clusters)
    predicted = {os.path.normpath(r["path"]) for r in preds}
    scores.update({"level": level, "files_matched": len(matched),
                   "files_unlabelled": len({r["path"] for r in preds} - matched),
                   "labels_without_prediction": len(set(labels) - predicted),
                   "composition": composition(truth, clusters)})
    return scores


def format_scores(scores: dict) -> str:
    head = "| level | n | purity | NMI | ARI | ACC | worst recall |\n|---|---|---|---|---|---|---|\n"
    return head + (f"| {scores['level']} | {scores['n']} | {scores['purity']:.3f} | {scores['nmi']:.3f} | "
                   f"{scores['ari']:.3f} | {scores['acc']:.3f} | {scores['worst_recall']:.3f} "
                   f"({scores['worst_recall_category']}) |")
