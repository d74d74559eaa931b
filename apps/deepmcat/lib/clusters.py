"""The datastore seen through the model: clinicians' categories, every image's cluster score, cluster names.

Shared by the label callback, scoring and the active-learning strategies so that they agree. Scores are kept
in each image's info (``info["deepmcat"]``), stamped with the model's ``trained_at``; a score made by an
older model is recomputed on first use.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Callable

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.exception import MONAILabelException

from deepmcat.inference import Model, classify_path, describe
from deepmcat.io import ReadError, Unit
from deepmcat.structure import observed_structure
from deepmcat.naming import Naming, name_clusters
from lib.datastores import SCORE_KEY, CategoryDICOMWebDatastore, label_file_category

log = logging.getLogger(__name__)

TAG = DefaultLabelTag.FINAL.value


def label_category(datastore: Datastore, image_id: str) -> str | None:
    """A clinician's category for an image: the ``category`` its final label was saved with (see
    lib/datastores.py), else that of the label's JSON file (labels placed in the folder by hand)."""
    label_id = datastore.get_label_by_image_id(image_id, TAG)
    if not label_id:
        return None
    category = (datastore.get_label_info(label_id, TAG) or {}).get("category")
    if isinstance(category, str) and category.strip():
        return category.strip()
    return label_file_category(datastore.get_label_uri(label_id, TAG))


def clinician_labels(datastore: Datastore) -> dict[str, str]:
    labels = {}
    for image_id in datastore.get_labeled_images(TAG):
        category = label_category(datastore, image_id)
        if category:
            labels[image_id] = category
    return labels


def _score(model: Model, answer: dict) -> dict:
    """What image info keeps of an answer (see :func:`deepmcat.inference.describe`)."""
    return {key: answer[key] for key in ("cluster", "category", "confidence", "distance", "n_units")} | {
        "trained_at": model.info["trained_at"]}


def store_scores(datastore: Datastore, scores: dict[str, dict]) -> None:
    if isinstance(datastore, CategoryDICOMWebDatastore):  # one write for all, not one per image
        datastore.update_image_infos({image_id: {SCORE_KEY: score} for image_id, score in scores.items()})
        return
    for image_id, score in scores.items():
        try:
            datastore.update_image_info(image_id, {SCORE_KEY: score})
        except MONAILabelException as exc:  # removed from the datastore meanwhile
            log.debug("score of %s not stored: %s", image_id, exc.msg)


def collection_scores(model: Model, units: list[Unit], tensors, image_of: dict[str, str]) -> dict[str, dict]:
    """Scores of images whose units are already loaded (after training), without reading their files again."""
    preds = model.predict(tensors, k=1, acquisitions=[u.stack for u in units], structure=observed_structure(units))
    members: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for unit, pred in zip(units, preds):
        members[image_of[unit.unit_id]][0].append(unit)
        members[image_of[unit.unit_id]][1].append(pred)
    return {image_id: _score(model, describe(model, us, ps)) for image_id, (us, ps) in members.items()}


def image_scores(datastore: Datastore, model: Model, refresh: bool = False,
                 compute: Callable[[str], bool] = lambda image_id: True) -> dict[str, dict]:
    """Every readable image's score under ``model``, computing (and storing) those missing or stale for which
    ``compute(image_id)`` is true (the others are left out)."""
    scores, new = {}, {}
    for image_id in datastore.list_images():
        score = (datastore.get_image_info(image_id) or {}).get(SCORE_KEY)
        if refresh or not score or score.get("trained_at") != model.info["trained_at"]:
            if not compute(image_id):
                continue
            try:
                score = new[image_id] = _score(model, classify_path(model, datastore.get_image_uri(image_id), k=1))
            except (ReadError, ValueError, OSError) as exc:
                log.warning("cannot score %s: %s", image_id, exc)
                continue
        scores[image_id] = score
    store_scores(datastore, new)
    return scores


def current_naming(datastore: Datastore, model: Model, scores: dict[str, dict] | None = None) -> Naming:
    scores = image_scores(datastore, model) if scores is None else scores
    return name_clusters({i: s["cluster"] for i, s in scores.items()}, clinician_labels(datastore))


def publish_names(datastore: Datastore, model: Model, scores: dict[str, dict] | None = None) -> Naming:
    """Name the model's clusters from the clinicians' labels and save the names beside the model."""
    naming = current_naming(datastore, model, scores)
    model.save_names(naming.names)
    if naming.conflicts:
        log.info("%d labelled images disagree with their cluster's name", len(naming.conflicts))
    return naming


def image_path(datastore: Datastore, image_id: str) -> str | None:
    path = datastore.get_image_uri(image_id)
    return path if path and os.path.exists(path) else None
