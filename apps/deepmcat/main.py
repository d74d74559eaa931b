"""DeepMCAT as a MONAI Label app: ``monailabel start_server --app apps/deepmcat --studies DIR``.

Model ``deepmcat`` (classification): ``POST /infer/deepmcat`` answers a series' category, ``POST
/train/deepmcat`` clusters every datastore image without labels, ``PUT /datastore/label`` with a category
names clusters, ``POST /activelearning/{least_confident,cluster_representative,label_conflict}`` picks what
to review next. Settings: ``--conf key value`` (see lib/configs/deepmcat.py, AppSettings).
"""

from __future__ import annotations

import logging
import os

import monailabel
from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from deepmcat.checkpoint import CheckpointError
from lib.clusters import image_scores, label_category, publish_names
from lib.configs import DeepMCATTaskConfig
from lib.configs.deepmcat import MODEL

log = logging.getLogger(__name__)


class DeepMCATApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict):
        self.task = DeepMCATTaskConfig()
        self.task.init(MODEL, os.path.join(app_dir, "model"), conf, None)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="DeepMCAT",
            description="Unsupervised deep clustering that sorts medical image series into categories",
            version=monailabel.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        return self.task.infer()

    def init_trainers(self) -> dict[str, TrainTask]:
        return {MODEL: self.task.trainer()}

    def init_strategies(self) -> dict[str, Strategy]:
        return self.task.strategy()

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return self.task.scoring_method()

    def infer(self, request, datastore=None):
        """Unknown models and image ids are the client's mistake: 404 with a message, not a server error."""
        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(status_code=404, detail=f"unknown model {model!r}; this server has {list(self._infers)}")
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image):
            if not (datastore or self.datastore()).get_image_uri(image):
                raise HTTPException(status_code=404, detail=f"image {image!r} is not in the datastore")
            request = dict(request, image_id=image)
        return super().infer(request, datastore)

    def on_save_label(self, image_id: str, label_id: str) -> dict:
        """A clinician named an image: check the label carries a category, then rename the clusters.

        A label without a category is removed again and refused (400), so nothing half-saved stays behind.
        """
        datastore = self.datastore()
        category = label_category(datastore, image_id)
        if category is None:
            datastore.remove_label(label_id, DefaultLabelTag.FINAL.value)
            datastore.refresh()  # drop the removed file's record now, not when the file watcher gets to it
            raise HTTPException(status_code=400, detail="a DeepMCAT label needs a category: send params "
                                                        '{"category": "..."} or a JSON file {"category": "..."}')
        answer: dict = {"category": category}
        try:
            model = self.task.models.get()
        except CheckpointError:
            return answer  # no model yet: the label is kept and used by the first training
        scores = image_scores(datastore, model)
        naming = publish_names(datastore, model, scores)
        cluster = scores.get(image_id, {}).get("cluster")
        if cluster is not None:
            answer.update(cluster=cluster, cluster_name=naming.names.get(cluster),
                          conflict=naming.names.get(cluster) != category)
        answer["label_conflicts"] = len(naming.conflicts)
        return answer
