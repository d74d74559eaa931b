"""Scoring: every datastore image's cluster, category, confidence and distance into its image info."""

from __future__ import annotations

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod

from deepmcat.checkpoint import CheckpointError
from deepmcat.inference import ModelCache
from lib.clusters import image_scores, publish_names


class ClusterScoring(ScoringMethod):
    def __init__(self, models: ModelCache):
        super().__init__("Assigns every image its DeepMCAT cluster and confidence (image info 'deepmcat')")
        self.models = models

    def __call__(self, request, datastore: Datastore) -> dict:
        try:
            model = self.models.get()
        except CheckpointError as exc:
            return {"scored": 0, "reason": str(exc)}
        scores = image_scores(datastore, model, refresh=bool(request.get("refresh", False)))
        naming = publish_names(datastore, model, scores)
        return {"scored": len(scores), "named_clusters": len(naming.names), "label_conflicts": len(naming.conflicts)}
