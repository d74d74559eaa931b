"""A trained model, loaded once: canonical tensors → cluster, category name, confidence and top-k."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepmcat import checkpoint
from deepmcat.clustering import FeatureTransform, squared_distances
from deepmcat.config import DeepMCATConfig
from deepmcat.model import DeepMCATNet
from deepmcat.trainer import extract_features, resolve_device


@dataclass
class Prediction:
    cluster: int
    category: str
    confidence: float
    topk: list[dict]


class Model:
    """A published DeepMCAT model (``model.pt`` in a model folder) with its human cluster names."""

    def __init__(self, model_dir: str | Path, device: str = "auto"):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise checkpoint.CheckpointError(f"no model folder at {self.model_dir}")
        self.device = resolve_device(device)
        state = checkpoint.load(self.model_dir / checkpoint.MODEL, map_location="cpu")
        self.state = state
        self.config = DeepMCATConfig.from_dict(state["config"])
        self.net = DeepMCATNet(self.config.preprocess.frames, self.config.model)
        self.net.load_state_dict(state["net"], strict=False)
        self.net.to(self.device).eval()
        self.transform = FeatureTransform(np.asarray(state["transform"]["matrix"]),
                                          np.asarray(state["transform"]["bias"]))
        self.centroids = np.asarray(state["centroids"], np.float32)
        self.temperature = float(state["temperature"])
        self.names = self.load_names()

    @property
    def info(self) -> dict:
        return {"version": self.state["version"], "trained_at": self.state["trained_at"],
                "clusters": len(self.centroids), "units": self.state["n_units"],
                "frames": self.config.preprocess.frames, "size": self.config.preprocess.size}

    def load_names(self) -> dict[int, str]:
        path = self.model_dir / checkpoint.NAMES
        if not path.is_file():
            return {}
        return {int(k): str(v) for k, v in json.loads(path.read_text()).items()}

    def save_names(self, names: dict[int, str]) -> None:
        unknown = [k for k in names if not 0 <= int(k) < len(self.centroids)]
        if unknown:
            raise ValueError(f"clusters {unknown} do not exist (the model has {len(self.centroids)})")
        self.names = {int(k): str(v) for k, v in names.items()}
        data = json.dumps({str(k): v for k, v in sorted(self.names.items())}, indent=1).encode()
        checkpoint.atomic_write_bytes(self.model_dir / checkpoint.NAMES, data)

    def category(self, cluster: int) -> str:
        return self.names.get(int(cluster), f"cluster_{int(cluster):02d}")

    def embed(self, tensors: np.ndarray) -> np.ndarray:
        """PCA-projected, L2-normalised features (what the centroids live in)."""
        return self.transform(extract_features(self.net, tensors, self.device, self.config.train.amp))

    def probabilities(self, tensors: np.ndarray) -> np.ndarray:
        """(n, k) softmax over negative squared distances to the centroids.

        The temperature is the mean squared distance of training units to their centroid, so a unit as close
        to its centroid as a typical member, and much farther from the others, gets a confidence near 1.
        """
        d2 = squared_distances(self.embed(tensors), self.centroids)
        logits = torch.from_numpy(-d2 / self.temperature)
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, tensors: np.ndarray, k: int = 3) -> list[Prediction]:
        if len(tensors) == 0:
            return []
        probs = self.probabilities(tensors)
        out = []
        for row in probs:
            order = np.argsort(-row)[: max(1, k)]
            topk = [{"cluster": int(c), "category": self.category(c), "confidence": float(row[c])} for c in order]
            out.append(Prediction(int(order[0]), self.category(order[0]), float(row[order[0]]), topk))
        return out


def series_vote(predictions: list[Prediction]) -> Prediction:
    """A series' category: the majority over its units (ties by summed confidence)."""
    votes = Counter(p.cluster for p in predictions)
    conf = Counter()
    for p in predictions:
        conf[p.cluster] += p.confidence
    best = max(votes, key=lambda c: (votes[c], conf[c]))
    members = [p for p in predictions if p.cluster == best]
    mean_conf = float(np.mean([p.confidence for p in members])) * votes[best] / len(predictions)
    return Prediction(best, members[0].category, mean_conf, members[0].topk)
