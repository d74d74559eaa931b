"""``POST /train/deepmcat``: DeepMCAT on every datastore image, clinicians' labels used where present.

MONAI Label runs this in a subprocess; stopping the task kills it. The trainer checkpoints each epoch and
publishes ``model.pt`` atomically only at the end, so the server keeps answering with the previous model
during training and a stopped or failed run publishes nothing. Progress goes to ``train_stats.json`` (read
by ``/info`` and ``GET /train/``) and to stdout (the task's log lines).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from deepmcat.cache import TensorCache
from deepmcat.checkpoint import atomic_write_bytes
from deepmcat.data import load_units
from deepmcat.inference import ModelCache
from deepmcat.io import scan
from deepmcat.stacks import merge_stacks
from deepmcat.trainer import Trainer
from lib.clusters import clinician_labels, collection_scores, image_path, publish_names, store_scores
from lib.settings import AppSettings

#: the tensor cache's folder inside the app's model folder
CACHE_FOLDER = "cache"

log = logging.getLogger(__name__)

STATS = "train_stats.json"


class DeepMCATTrain(TrainTask):
    def __init__(self, settings: AppSettings, models: ModelCache):
        super().__init__("Unsupervised DeepMCAT clustering of all datastore images (labels refine it)")
        self.settings = settings
        self.models = models
        self.stats_path = Path(settings.model_dir) / STATS

    def config(self) -> dict:
        return {k: getattr(self.settings, k) for k in AppSettings.TRAIN_KEYS}

    def stats(self) -> dict:
        try:
            return json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {}

    def _write_stats(self, stats: dict) -> None:
        atomic_write_bytes(self.stats_path, json.dumps(stats, indent=1).encode())

    def __call__(self, request, datastore: Datastore) -> dict:
        settings = self.settings.overridden(request)
        cfg = settings.deepmcat_config()
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        stats = {"status": "RUNNING", "started_at": started, "epoch": 0,
                 "total_epochs": cfg.train.warmup_epochs + cfg.train.epochs, "history": []}
        self._write_stats(stats)
        try:
            if settings.multi_gpu.lower() == "true" and torch.cuda.device_count() > 1:
                result = self._train_multi_gpu(settings, datastore)
            else:
                result = self._train(cfg, datastore, stats)
        except BaseException as exc:
            stats.update(status="FAILED", error=f"{type(exc).__name__}: {exc}")
            self._write_stats(stats)
            raise
        stats.update(result, status="DONE", finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        self._write_stats(stats)
        print(f"DeepMCAT training done: {json.dumps(result)}", flush=True)
        return stats

    def _image_paths(self, datastore: Datastore) -> dict[str, str]:
        paths = {}
        for image_id in datastore.list_images():
            path = image_path(datastore, image_id)
            if path is None:
                log.warning("image %s has no file; skipped", image_id)
            else:
                paths[image_id] = path
        return paths

    def _train_multi_gpu(self, settings: AppSettings, datastore: Datastore) -> dict:
        """``torchrun`` over every visible GPU on a folder linking the datastore's images, with the settings
        handed over as a config file (clinicians' labels are not used in this mode yet)."""
        tic = time.time()
        gpus = torch.cuda.device_count()
        cfg = settings.deepmcat_config().override(device="cuda")
        with tempfile.TemporaryDirectory(prefix="deepmcat-images-") as tmp:
            for image_id, path in self._image_paths(datastore).items():
                os.symlink(path, os.path.join(tmp, image_id + "".join(Path(path).suffixes)))
            config_file = Path(tmp) / ".config.json"
            config_file.write_text(json.dumps(cfg.to_dict()))
            cmd = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", str(gpus),
                   "-m", "deepmcat.cli", "train", "--distributed", "--data", tmp, "--out", settings.model_dir,
                   "--config", str(config_file), "--quiet"]
            print("DeepMCAT training on", gpus, "GPUs:", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        naming = publish_names(datastore, self.models.get())
        return {"gpus": gpus, "cluster_names": {str(k): v for k, v in naming.names.items()},
                "label_conflicts": len(naming.conflicts), "seconds": round(time.time() - tic, 1)}

    def _train(self, cfg, datastore: Datastore, stats: dict) -> dict:
        tic = time.time()
        units, image_of = [], {}
        cache = TensorCache(Path(self.settings.model_dir) / CACHE_FOLDER)  # a retraining decodes only new images
        for image_id, path in self._image_paths(datastore).items():
            for unit in scan(path, headers=cache.headers).units:
                units.append(unit)
                image_of[unit.unit_id] = image_id
        if not units:
            raise ValueError("the datastore holds no readable image to train on")
        merge_stacks(units)  # images are scanned one by one: a stack stored as a series per slice spans several
        collection = load_units(units, cfg.preprocess, progress=False, store=cache.store(cfg.preprocess))
        for path, reason in collection.failed:
            log.warning("skipped %s: %s", path, reason)
        labels = clinician_labels(datastore)
        unit_labels = [labels.get(image_of[u.unit_id]) for u in collection.units]
        print(f"DeepMCAT training on {len(collection.units)} units of {len(set(image_of.values()))} images "
              f"({sum(1 for x in unit_labels if x)} units carry a clinician label)", flush=True)

        def on_epoch(record: dict) -> None:
            stats["epoch"] = record["epoch"]
            stats["history"].append({k: v for k, v in record.items() if k != "total_epochs"})
            self._write_stats(stats)
            print(f"epoch {record['epoch']}/{record['total_epochs']}: " + json.dumps(record), flush=True)

        # tqdm bars would flood the task log (MONAI Label keeps its last 20 lines): one line per epoch instead
        trainer = Trainer(cfg, self.settings.model_dir, progress=False, on_epoch=on_epoch)
        result = trainer.fit_collection(collection, categories=unit_labels)
        model = self.models.get()
        scores = collection_scores(model, collection.units, collection.tensors, image_of)  # no second read
        store_scores(datastore, scores)
        naming = publish_names(datastore, model, scores)
        sizes = Counter(int(c) for c in result.assignments)
        return {"units": len(collection.units), "images": len(set(image_of.values())),
                "labelled_images": len(labels), "cluster_sizes": {str(k): v for k, v in sorted(sizes.items())},
                "cluster_names": {str(k): v for k, v in naming.names.items()},
                "label_conflicts": len(naming.conflicts), "seconds": round(time.time() - tic, 1)}
