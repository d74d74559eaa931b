"""Predictions CSVs (one row per input file) and their scores against a labels CSV."""

from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from pathlib import Path

from deepmcat.labels import read_labels

PRED_COLUMNS = ["path", "unit", "series_uid", "cluster", "category", "confidence", "series_category", "topk"]


def predict_rows(model, collection, root: Path) -> list[dict]:
    """One row per input file; a file holding several units (4-D) carries its series' majority result.

    The series vote runs per acquisition (series and image type), so flow magnitude and phase stored in one
    DICOM series keep their own categories.
    """
    from deepmcat.inference import series_vote  # torch and MONAI: not needed to score a CSV

    preds = model.predict(collection.tensors, k=3, acquisitions=collection.acquisitions)
    by_acquisition = defaultdict(list)
    for unit, pred in zip(collection.units, preds):
        by_acquisition[unit.acquisition].append(pred)
    series_result = {key: series_vote(p) for key, p in by_acquisition.items()}
    file_units = defaultdict(list)
    for unit, pred in zip(collection.units, preds):
        for f in unit.files:
            file_units[f].append((unit, pred))
    rows = []
    for f, members in sorted(file_units.items()):
        unit, pred = members[0]
        series = series_result[unit.acquisition]
        if len(members) > 1:  # several units in one file
            unit_id, pred = f"{unit.series_uid}/*", series
        else:
            unit_id = unit.unit_id
        rows.append({
            "path": os.path.relpath(f, root), "unit": unit_id, "series_uid": unit.series_uid,
            "cluster": pred.cluster, "category": pred.category, "confidence": f"{pred.confidence:.4f}",
            "series_category": series.category,
            "topk": ";".join(f"{t['category']}:{t['confidence']:.3f}" for t in pred.topk),
        })
    return rows


def evaluate_files(pred_path: str | Path, labels_path: str | Path, per_file: bool = False) -> dict:
    """Metrics of a predictions CSV against a labels CSV; per unit (the default) or per file."""
    from deepmcat.metrics import composition, evaluate

    labels = read_labels(labels_path)
    if not Path(pred_path).is_file():
        raise FileNotFoundError(f"predictions file not found: {pred_path}")
    with open(pred_path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", "unit", "cluster"} <= set(reader.fieldnames):
            raise ValueError(f"{pred_path}: a predictions CSV needs the columns path,unit,cluster")
        preds = list(reader)
    truth_votes: dict[str, Counter] = defaultdict(Counter)
    cluster_of: dict[str, str] = {}
    matched = 0
    for row in preds:
        category = labels.get(os.path.normpath(row["path"]))
        if category is None:
            continue
        matched += 1
        key = row["path"] if per_file else row["unit"]
        truth_votes[key][category] += 1
        cluster_of[key] = row["cluster"]
    if not matched:
        raise ValueError(f"no prediction path matches a path in {labels_path}")
    keys = sorted(truth_votes)
    truth = [truth_votes[k].most_common(1)[0][0] for k in keys]
    clusters = [cluster_of[k] for k in keys]
    scores = evaluate(truth, clusters)
    scores.update({"level": "file" if per_file else "unit", "files_matched": matched,
                   "files_unlabelled": len(preds) - matched, "labels_without_prediction":
                       len(set(labels) - {os.path.normpath(r["path"]) for r in preds}),
                   "composition": composition(truth, clusters)})
    return scores


def format_scores(scores: dict) -> str:
    head = "| level | n | purity | NMI | ARI | ACC | worst recall |\n|---|---|---|---|---|---|---|\n"
    return head + (f"| {scores['level']} | {scores['n']} | {scores['purity']:.3f} | {scores['nmi']:.3f} | "
                   f"{scores['ari']:.3f} | {scores['acc']:.3f} | {scores['worst_recall']:.3f} "
                   f"({scores['worst_recall_category']}) |")
