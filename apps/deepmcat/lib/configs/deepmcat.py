"""The TaskConfig that builds the app's infer, train, scoring and active-learning tasks from its settings."""

from __future__ import annotations

import os
from typing import Any

from monailabel.interfaces.config import TaskConfig

from deepmcat import checkpoint
from deepmcat.inference import ModelCache
from deepmcat.selection import STRATEGIES
from lib.activelearning import ClusterStrategy
from lib.infers import DeepMCATInfer
from lib.scoring import ClusterScoring
from lib.settings import AppSettings
from lib.trainers import DeepMCATTrain


class DeepMCATTaskConfig(TaskConfig):
    """One model, ``deepmcat``: its inference, training, scoring and active-learning strategies share one
    ModelCache, so the published model is loaded once per process and reloaded only when it changes."""

    def init(self, name: str, model_dir: str, conf: dict, planner: Any, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.settings = AppSettings.parse(conf, os.path.join(model_dir, name))
        self.path = os.path.join(self.settings.model_dir, checkpoint.MODEL)
        self.models = ModelCache(self.settings.model_dir, device=self.settings.device,
                                 unknown_percentile=self.settings.unknown_percentile)

    def infer(self):
        return {self.name: DeepMCATInfer(self.settings, self.models)}

    def trainer(self):
        return DeepMCATTrain(self.settings, self.models)

    def strategy(self):
        return {name: ClusterStrategy(name, self.models) for name in STRATEGIES}

    def scoring_method(self):
        return {"deepmcat_clusters": ClusterScoring(self.models)}
