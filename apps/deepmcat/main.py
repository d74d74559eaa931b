"""DeepMCAT as a MONAI Label app: ``monailabel start_server --app apps/deepmcat --studies DIR``.

Model ``deepmcat`` (classification): ``POST /infer/deepmcat`` answers a series' category, ``POST
/train/deepmcat`` clusters every datastore image without labels, ``PUT /datastore/label`` with a category
names clusters, ``POST /activelearning/{least_confident,cluster_representative,label_conflict}`` picks what
to review next. Settings: ``--conf key value`` (see lib/settings.py, AppSettings).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys

import monailabel
from fastapi import HTTPException
from fastapi.middleware import Middleware
from fastapi.middleware.cors import CORSMiddleware
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from deepmcat.checkpoint import CheckpointError
from deepmcat.sources import is_url, redact_url
from lib.clusters import image_scores, label_category, publish_names
from lib.configs import DeepMCATTaskConfig
from lib.settings import MODEL
from lib.datastores import CategoryDICOMWebDatastore, CategoryLocalDatastore
from lib.guard import Guard, Policy
from lib.uploads import discard, is_upload, use_private_tempdir

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
        self._guard_server()

    def _guard_server(self) -> None:
        """In the server process (not in a task subprocess): private temporary files, :class:`Guard` in front
        of MONAI Label's routes, and CORS for the allowed origins only (MONAI Label's default answers every
        origin, with credentials). Its middleware stack is rebuilt on the next request."""
        server = sys.modules.get("monailabel.app")
        if server is None:
            return
        use_private_tempdir()
        s = self.task.settings
        policy = Policy(origins=frozenset(s.names("allowed_origins")), hosts=frozenset(s.names("allowed_hosts")),
                        max_upload_bytes=s.max_upload_mb * 2**20, check_train=s.overridden)
        stack = [m for m in server.app.user_middleware if m.cls is not CORSMiddleware]
        cors = Middleware(CORSMiddleware, allow_origins=sorted(policy.origins), allow_credentials=True,
                          allow_methods=["*"], allow_headers=["*"])
        server.app.user_middleware[:] = [Middleware(Guard, policy=policy), cors, *stack]
        server.app.middleware_stack = None

    def init_datastore(self):
        if is_url(self.studies):
            return super().init_datastore()  # → init_remote_datastore
        return CategoryLocalDatastore(self.studies, extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
                                      auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                                      read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def init_remote_datastore(self):
        """A DICOMweb PACS as datastore, listing the series of ``--conf modality`` (MR by default; MONAI
        Label's default filter lists CT only) and handing series to DeepMCAT as DICOM folders: DeepMCAT
        splits them by image type and slice position itself, so no NIfTI conversion.

        Mirrors ``MONAILabelApp._init_dicomweb_datastore`` of monailabel 0.8.5 with two arguments changed
        (the search filter, ``convert_to_nifti=False``) and our datastore class, which keeps categories in
        ``--conf labels_dir`` (one folder per PACS URL) instead of writing DICOM SEG into the PACS; it takes
        no arguments for them, and it downloads dcmqi tools this app does not need."""
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
        store = os.path.join(self.task.settings.labels_dir or os.path.join(self.app_dir, "labels"),
                             hashlib.sha256(redact_url(self.studies).encode()).hexdigest()[:16])
        log.info("DICOMweb datastore %s, series filter %s, categories kept in %s", redact_url(self.studies),
                 self.task.settings.dicomweb_filter(), store)
        return CategoryDICOMWebDatastore(client=client, search_filter=self.task.settings.dicomweb_filter(),
                                         cache_path=cache, fetch_by_frame=settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
                                         convert_to_nifti=False, store_dir=store)

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
        refused, so a client cannot make the server read its own files (``image=/etc/passwd``). Uploads are
        deleted when the request ends, answered or refused. A datastore image a clinician has named is
        answered with that name too (``label``), beside the model's own answer: the model answers by nearest
        centroid, and may disagree with the name.
        """
        named = None
        try:
            model = request.get("model")
            if model not in self._infers:
                raise HTTPException(status_code=404, detail=f"unknown model {model!r}; this server has {list(self._infers)}")
            image = request.get("image")
            if isinstance(image, str) and not is_upload(image):
                datastore = datastore or self.datastore()
                try:
                    uri = datastore.get_image_uri(image)
                except Exception as exc:  # a DICOMweb server that does not know the series
                    log.info("image %s: %s", image[:80], exc)
                    uri = ""
                if not uri:
                    raise HTTPException(status_code=404, detail=f"image {image[:80]!r} is not in the datastore")
                request = dict(request, image_id=image)
                named = label_category(datastore, image)
            result = super().infer(request, datastore)
            if named and isinstance(result.get("params"), dict):
                result["params"]["label"] = named
            return result
        finally:
            discard(request.get("image"))
            discard(request.get("label"))

    def on_save_label(self, image_id: str, label_id: str) -> dict:
        """A clinician named an image (the datastore checked the label): rename the clusters from the scores
        already known, and score the rest in the background rather than inside this request."""
        datastore = self.datastore()
        category = label_category(datastore, image_id)
        answer: dict = {"category": category}
        try:
            model = self.task.models.get()
        except CheckpointError:
            return answer  # no model yet: the label is kept and used by the first training
        missing: list[str] = []

        def score_now(other: str) -> bool:
            if other != image_id:
                missing.append(other)
            return other == image_id

        scores = image_scores(datastore, model, compute=score_now)
        naming = publish_names(datastore, model, scores)
        if missing:
            self.async_scoring("deepmcat_clusters")
        cluster = scores.get(image_id, {}).get("cluster")
        if cluster is not None:
            answer.update(cluster=cluster, cluster_name=naming.names.get(cluster),
                          conflict=naming.names.get(cluster) != category)
        answer["label_conflicts"] = len(naming.conflicts)
        return answer
