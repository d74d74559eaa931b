"""DeepMCAT as a MONAI Label app: ``monailabel start_server --app apps/deepmcat --studies DIR``.

Model ``deepmcat`` (classification): ``POST /infer/deepmcat`` answers a series' category, ``POST
/train/deepmcat`` clusters every datastore image without labels, ``PUT /datastore/label`` with a category
names clusters, ``POST /activelearning/{least_confident,cluster_representative,label_conflict}`` picks what
to review next. Settings: ``--conf key value`` (see lib/configs/deepmcat.py, AppSettings).
"""

from __future__ import annotations

import logging
import os
import tempfile

import monailabel
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from deepmcat.checkpoint import CheckpointError
from lib.clusters import image_scores, label_category, publish_names
from lib.configs import DeepMCATTaskConfig
from lib.configs.deepmcat import MODEL
from lib.datastores import CategoryDICOMWebDatastore, CategoryLocalDatastore

log = logging.getLogger(__name__)


def _is_upload(path: str) -> bool:
    """A file the infer endpoint wrote an uploaded image to (``tempfile.NamedTemporaryFile`` in the temp dir)."""
    return (os.path.isfile(path) and os.path.dirname(os.path.abspath(path)) == tempfile.gettempdir()
            and os.path.basename(path).startswith("tmp"))


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

    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()  # → init_remote_datastore
        return CategoryLocalDatastore(self.studies, extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
                                      auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                                      read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def init_remote_datastore(self):
        """A DICOMweb PACS as datastore, listing the series of ``--conf modality`` (MR by default; MONAI
        Label's default filter lists CT only) and handing series to DeepMCAT as DICOM folders: DeepMCAT
        splits them by image type and slice position itself, so no NIfTI conversion."""
        if settings.MONAI_LABEL_DATASTORE.lower() in ("xnat", "dsa"):
            return super().init_remote_datastore()
        session = None
        if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
            from dicomweb_client.session_utils import create_session_from_user_pass

            session = create_session_from_user_pass(settings.MONAI_LABEL_DICOMWEB_USERNAME,
                                                    settings.MONAI_LABEL_DICOMWEB_PASSWORD)
        client = DICOMwebClientX(url=self.studies, session=session, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                                 wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
                                 stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX)
        cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None
        log.info("DICOMweb datastore %s, series filter %s", self.studies, self.task.settings.dicomweb_filter())
        return CategoryDICOMWebDatastore(client=client, search_filter=self.task.settings.dicomweb_filter(), cache_path=cache,
                                 fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME, convert_to_nifti=False)

    def init_infers(self) -> dict[str, InferTask]:
        return self.task.infer()

    def init_trainers(self) -> dict[str, TrainTask]:
        return {MODEL: self.task.trainer()}

    def init_strategies(self) -> dict[str, Strategy]:
        return self.task.strategy()

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return self.task.scoring_method()

    def infer(self, request, datastore=None):
        """Unknown models and image ids are the client's mistake: 404 with a message, not a server error.

        ``image`` is a datastore id, or the temporary file MONAI Label wrote an upload to; any other path is
        refused, so a client cannot make the server read its own files (``image=/etc/passwd``).
        """
        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(status_code=404, detail=f"unknown model {model!r}; this server has {list(self._infers)}")
        image = request.get("image")
        if isinstance(image, str):
            if not _is_upload(image):
                try:
                    uri = (datastore or self.datastore()).get_image_uri(image)
                except Exception as exc:  # a DICOMweb server that does not know the series
                    log.info("image %s: %s", image, exc)
                    uri = ""
                if not uri:
                    raise HTTPException(status_code=404, detail=f"image {image!r} is not in the datastore")
            request = dict(request, image_id=image)
        return super().infer(request, datastore)

    def on_save_label(self, image_id: str, label_id: str) -> dict:
        """A clinician named an image (the datastore checked the label): rename the clusters."""
        datastore = self.datastore()
        category = label_category(datastore, image_id)
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
