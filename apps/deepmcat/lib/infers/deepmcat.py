"""``POST /infer/deepmcat``: the category of one image (a datastore id or an uploaded file)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from deepmcat import checkpoint
from deepmcat.checkpoint import CheckpointError
from deepmcat.config import PreprocessConfig
from deepmcat.inference import ModelCache, classify_path, load_path
from deepmcat.io import ReadError
from lib.settings import AppSettings

log = logging.getLogger(__name__)


class DeepMCATInfer(InferTask):
    """Classification by nearest DeepMCAT cluster. The model is loaded once (and again only when a newly
    trained one is published); errors become HTTP 4xx/503 answers with a message, never a crash."""

    def __init__(self, settings: AppSettings, models: ModelCache):
        super().__init__(
            type=InferType.CLASSIFICATION,
            labels=[],
            dimension=3,
            description="Category of a cardiac MR series (or any image series) by unsupervised DeepMCAT clusters",
            config={"topk": settings.topk},
        )
        self.settings = settings
        self.models = models

    def is_valid(self) -> bool:
        return True  # listed before training too, so clients see the model and get a clear 503 from it

    def get_path(self, validate=True):
        path = os.path.join(self.settings.model_dir, checkpoint.MODEL)
        return path if os.path.exists(path) or not validate else None

    def info(self) -> dict[str, Any]:
        info = super().info()
        state: dict[str, Any] = {"trained": False}
        if self.models.available:
            try:
                model = self.models.get()
                names = [model.category(c) for c in range(len(model.centroids))]
                info["labels"] = sorted(set(model.names.values()))
                state = {"trained": True, **model.info, "cluster_names": names}
            except CheckpointError as exc:
                state = {"trained": False, "error": str(exc)}
        info["deepmcat"] = state
        return info

    def __call__(self, request) -> tuple[None, dict]:
        tic = time.time()
        path = request.get("image")
        if not isinstance(path, str) or not path or not os.path.exists(path):
            raise HTTPException(status_code=404, detail=f"image not found: {request.get('image_id', path)!r}")
        size = _size(path)
        if size > self.settings.max_upload_mb * 2**20:
            raise HTTPException(status_code=413, detail=f"image of {size / 2**20:.0f} MB exceeds the limit of "
                                                        f"{self.settings.max_upload_mb} MB (max_upload_mb)")
        try:
            k = int(request.get("topk", self.settings.topk))
        except (TypeError, ValueError):
            raise HTTPException(status_code=422, detail=f"topk must be an integer, got {request.get('topk')!r}")
        try:
            try:
                model = self.models.get()
            except CheckpointError as exc:
                load_path(path, PreprocessConfig(frames=self.settings.frames, size=self.settings.size))
                raise HTTPException(status_code=503, detail=f"no DeepMCAT model is available ({exc}); "
                                                            "train one first: POST /train/deepmcat") from exc
            answer = classify_path(model, path, k=min(max(1, k), len(model.centroids)))
        except (ReadError, ValueError) as exc:  # the image's fault, whatever the model's state
            raise HTTPException(status_code=422, detail=f"cannot categorise this image: {exc}") from exc
        answer["latency_ms"] = round(1000 * (time.time() - tic), 1)
        return None, answer


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
