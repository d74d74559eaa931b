"""MONAI Label strategies over ``deepmcat.selection``: the next image a clinician should look at."""

from __future__ import annotations

from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from deepmcat import selection
from deepmcat.checkpoint import CheckpointError
from deepmcat.inference import ModelCache
from lib.clusters import clinician_labels, image_scores


class ClusterStrategy(Strategy):
    """Scores every datastore image under the current model (cached in image info) and applies ``select``."""

    def __init__(self, name: str, models: ModelCache):
        self.select = selection.STRATEGIES[name]
        super().__init__((self.select.__doc__ or name).strip().splitlines()[0])
        self.models = models

    def __call__(self, request, datastore: Datastore) -> dict:
        try:
            model = self.models.get()
        except CheckpointError as exc:
            raise HTTPException(status_code=503, detail=f"no DeepMCAT model is available ({exc}); "
                                                        "train one first: POST /train/deepmcat") from exc
        scores = image_scores(datastore, model)
        pick = self.select(scores, clinician_labels(datastore))
        if pick is None:
            return {}
        image_id, reason = pick
        score = scores[image_id]
        return {"id": image_id, "cluster": score["cluster"], "confidence": score["confidence"],
                "category": model.category(score["cluster"]), "reason": reason}
