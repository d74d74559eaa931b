"""Ground-truth labels CSVs (``path,category``, paths relative to the data folder) and the category of a
unit or a series: the majority of its files' labels. Used to score clusterings, never to train."""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from deepmcat.io import Unit


def read_labels(path: str | Path) -> dict[str, str]:
    """Normalised relative path → category. Raises FileNotFoundError / ValueError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or [])
        key = "path" if "path" in columns else "file"
        if not {key, "category"} <= columns:
            raise ValueError(f"{path}: a labels CSV needs the columns path,category")
        return {os.path.normpath(r[key]): r["category"] for r in reader}


def data_root(data: str | Path) -> Path:
    """The folder a labels CSV's paths are relative to: ``data`` itself, or the folder of a single file."""
    path = Path(data).resolve()
    return path if path.is_dir() else path.parent


def majority(files: Iterable[str], labels: Mapping[str, str], root: str | Path) -> str | None:
    """The most common label of ``files`` (absolute paths under ``root``), None when none is labelled."""
    votes = Counter(labels.get(os.path.normpath(os.path.relpath(f, root))) for f in files)
    votes.pop(None, None)
    return votes.most_common(1)[0][0] if votes else None


def unit_truth(units: Sequence[Unit], labels: Mapping[str, str], root: str | Path) -> list[str] | None:
    """Ground-truth category of each unit, or None if any unit is unlabelled."""
    truth = [majority(unit.files, labels, root) for unit in units]
    return None if any(t is None for t in truth) else truth


def series_truth(source, labels: Mapping[str, str]) -> dict[str, str]:
    """Series uid → category of a folder source's series (paths relative to the source folder)."""
    truth = {}
    for ref in source.series():
        category = majority([f for u in ref.units for f in u.files], labels, source.root)
        if category is not None:
            truth[ref.uid] = category
    return truth
