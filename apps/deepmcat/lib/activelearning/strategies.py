"""Which image a clinician should look at next, from the images' cluster scores and the labels so far."""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter

from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from deepmcat.checkpoint import CheckpointError
from deepmcat.inference import Model, ModelCache
from deepmcat.naming import name_clusters
from lib.clusters import clinician_labels, image_scores


class _ClusterStrategy(Strategy):
    def __init__(self, description: str, models: ModelCache):
        super().__init__(description)
        self.models = models

    def _model(self) -> Model:
        try:
            return self.models.get()
        except CheckpointError as exc:
            raise HTTPException(status_code=503, detail=f"no DeepMCAT model is available ({exc}); "
                                                        "train one first: POST /train/deepmcat") from exc

    def __call__(self, request, datastore: Datastore) -> dict:
        model = self._model()
        scores = image_scores(datastore, model)
        labels = clinician_labels(datastore)
        pick = self.select(scores, labels)
        if pick is None:
            return {}
        image_id, reason = pick
        score = scores[image_id]
        return {"id": image_id, "cluster": score["cluster"], "confidence": score["confidence"],
                "category": model.category(score["cluster"]), "reason": reason}

    @abstractmethod
    def select(self, scores: dict[str, dict], labels: dict[str, str]) -> tuple[str, str] | None:
        """(image id, why) of the next image to review, or None when there is none."""


class LeastConfident(_ClusterStrategy):
    def __init__(self, models: ModelCache):
        super().__init__("Unlabelled image whose cluster assignment is least confident", models)

    def select(self, scores, labels):
        candidates = [i for i in scores if i not in labels]
        if not candidates:
            return None
        best = min(candidates, key=lambda i: (scores[i]["confidence"], i))
        return best, f"lowest confidence ({scores[best]['confidence']:.3f}) among unlabelled images"


class ClusterRepresentative(_ClusterStrategy):
    def __init__(self, models: ModelCache):
        super().__init__("Most central unlabelled image of the largest cluster that has no name yet "
                         "(then of the cluster with the fewest labels)", models)

    def select(self, scores, labels):
        sizes = Counter(s["cluster"] for s in scores.values())
        labelled = Counter(scores[i]["cluster"] for i in labels if i in scores)
        for cluster in sorted(sizes, key=lambda c: (labelled[c], -sizes[c], c)):
            members = [i for i, s in scores.items() if s["cluster"] == cluster and i not in labels]
            if members:
                best = min(members, key=lambda i: (scores[i]["distance"], i))
                state = "has no name yet" if not labelled[cluster] else f"has {labelled[cluster]} label(s)"
                return best, f"most central unlabelled image of cluster {cluster} ({sizes[cluster]} images), which {state}"
        return None


class LabelConflict(_ClusterStrategy):
    def __init__(self, models: ModelCache):
        super().__init__("Labelled image whose clinician category disagrees with its cluster's name", models)

    def select(self, scores, labels):
        naming = name_clusters({i: s["cluster"] for i, s in scores.items()}, labels)
        if not naming.conflicts:
            return None
        conflict = min(naming.conflicts, key=lambda c: (scores[c["id"]]["confidence"], c["id"]))
        return conflict["id"], (f"labelled {conflict['label']!r} but its cluster {conflict['cluster']} is named "
                                f"{conflict['cluster_name']!r}")
