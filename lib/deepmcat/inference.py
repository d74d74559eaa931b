"""A trained model, loaded once: canonical tensors → cluster, category name, confidence and top-k."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from deepmcat import checkpoint
from deepmcat.cache import TensorStore
from deepmcat.clustering import content_distances, embed_units, squared_distances
from deepmcat.config import PreprocessConfig
from deepmcat.data import Collection, load_units
from deepmcat.io import ReadError, Unit, scan
from deepmcat.model import DeepMCATNet
from deepmcat.modelfile import load_model
from deepmcat.features import extract_features, resolve_device

log = logging.getLogger(__name__)


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of a file, None when it is absent: it changes whenever the file is replaced (the model
    file whenever a new model is published)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def clean_name(name: object) -> str:
    """A cluster name as shown and written to CSVs: control characters removed, at most 128 characters."""
    return "".join(c for c in str(name) if c.isprintable())[:128]


@dataclass
class Prediction:
    cluster: int
    category: str
    confidence: float
    topk: list[dict]
    #: squared distance to the nearest centroid in the embedding, series structure left out (how typical of
    #: its cluster the unit's content is)
    distance: float = 0.0
    #: farther from every centroid than the model's "unknown" threshold: ``category`` is "unknown", the
    #: nearest cluster stays in ``cluster`` and ``topk``
    novel: bool = False
    #: what "unknown" is judged by: the novelty score (:mod:`deepmcat.novelty`), or ``distance`` for
    #: models published without a novelty reference
    novelty: float = 0.0


UNKNOWN = "unknown"


class Model:
    """A published DeepMCAT model (``model.pt`` in a model folder) with its human cluster names."""

    def __init__(self, model_dir: str | Path, device: str = "auto", unknown_percentile: float | None = None):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise checkpoint.CheckpointError(f"no model folder at {self.model_dir}")
        self.device = resolve_device(device)
        self._stamp = file_stamp(self.model_dir / checkpoint.MODEL)
        self.published = load_model(self.model_dir)
        self.config = self.published.config
        self.net = DeepMCATNet(self.config.preprocess.channels, self.config.model,
                               views=self.config.preprocess.views)
        missing, unexpected = self.net.load_state_dict(self.published.net, strict=False)  # no head is published
        missing = [k for k in missing if not k.startswith("head.")]
        if missing or unexpected:
            raise checkpoint.CheckpointError(f"{self.model_dir / checkpoint.MODEL} does not fit the network: "
                                             f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        self.net.to(self.device).eval()
        #: what the network's features depend on: its weights, the device type and the precision
        self.identity = _weights_digest(self.published.net) + f"|{self.device.type}|amp={self.config.train.amp}"
        self.transform = self.published.transform
        self.centroids = self.published.centroids
        self.temperature = self.published.temperature
        self.structure = self.published.structure
        self.novelty = self.published.novelty
        if self.novelty is not None and self.novelty.points.shape[1:] != self.centroids.shape[1:]:
            raise checkpoint.CheckpointError(f"{self.model_dir / checkpoint.MODEL}: its novelty reference does not "
                                             "fit its centroids")
        self.unknown_threshold = self._unknown_threshold(
            self.config.cluster.unknown_percentile if unknown_percentile is None else unknown_percentile)
        self.names = self.load_names()

    def _unknown_threshold(self, percentile: float) -> float | None:
        """The novelty score beyond which a unit is unknown: ``percentile`` of the training units' scores
        against other examinations; in models published before the novelty reference, of the training units'
        centroid distances (None: flag off, or a model published without either)."""
        if not 0 <= percentile <= 100:
            raise ValueError(f"unknown_percentile must be between 0 and 100, not {percentile}")
        if percentile == 0:
            return None
        if self.novelty is not None:
            return self.novelty.threshold(percentile)
        table = self.published.distance_percentiles
        return None if table is None else float(np.interp(percentile, np.arange(len(table)), table))

    def novelty_scores(self, embedded: np.ndarray) -> np.ndarray:
        """What "unknown" is judged by, for :meth:`embed`'s output: the novelty score, or the nearest-centroid
        distance of the content for models published without a novelty reference."""
        if self.novelty is not None:
            return self.novelty.scores(embedded)
        return content_distances(embedded, self.centroids, self.transform.matrix.shape[0])

    @property
    def info(self) -> dict:
        return {"version": self.published.version, "trained_at": self.published.trained_at,
                "trained_on": self.published.trained_on, "clusters": len(self.centroids), "units": self.published.n_units,
                "frames": self.config.preprocess.frames, "size": self.config.preprocess.size,
                "unknown_threshold": self.unknown_threshold}

    def load_names(self) -> dict[int, str]:
        """Cluster names of this model: those the server wrote for it (stamped with its ``trained_at``; names
        of an earlier model, whose cluster ids mean other things, are ignored), or a hand-written
        ``{"0": "cine_sax", ...}``."""
        path = self.model_dir / checkpoint.NAMES
        if not path.is_file():
            return {}
        data = json.loads(path.read_text())
        if isinstance(data.get("names"), dict):
            data = data["names"] if data.get("trained_at") == self.published.trained_at else {}
        return {int(k): clean_name(v) for k, v in data.items()}

    def save_names(self, names: dict[int, str]) -> bool:
        """Replace the cluster names (written atomically beside the model, stamped with it) unless the model
        file changed since this model was loaded: names computed against an older model are not written over
        a newly published one's (compare-and-swap under a lock). Returns whether they were written."""
        unknown = [k for k in names if not 0 <= int(k) < len(self.centroids)]
        if unknown:
            raise ValueError(f"clusters {unknown} do not exist (the model has {len(self.centroids)})")
        clean = {int(k): clean_name(v) for k, v in names.items()}
        data = json.dumps({"trained_at": self.published.trained_at,
                           "names": {str(k): v for k, v in sorted(clean.items())}}, indent=1).encode()
        with open(self.model_dir / ".names.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if file_stamp(self.model_dir / checkpoint.MODEL) != self._stamp:
                log.info("cluster names not saved: a newer model was published in %s", self.model_dir)
                return False
            checkpoint.atomic_write_bytes(self.model_dir / checkpoint.NAMES, data)
        self.names = clean
        return True

    def category(self, cluster: int) -> str:
        return self.names.get(int(cluster), f"cluster_{int(cluster):02d}")

    @property
    def feature_dim(self) -> int:
        return int(self.transform.matrix.shape[1])

    def features(self, tensors: np.ndarray, keys: Sequence[str | None] | None = None,
                 store: TensorStore | None = None) -> np.ndarray:
        """The network's features of ``tensors``; with a ``store`` of this model's features
        (:meth:`deepmcat.cache.TensorCache.features` of :attr:`identity`) and the units' ``keys``, those it
        holds are read back and only the others computed, then added to it."""
        if store is None or keys is None:
            return extract_features(self.net, tensors, self.device, self.config.train.amp)
        rows = store.lookup(keys)
        missing = np.flatnonzero(rows < 0)
        feats = np.empty((len(rows), self.feature_dim), np.float32)
        if len(missing) < len(rows):
            feats[rows >= 0] = store.read(rows[rows >= 0])
        if len(missing):
            computed = extract_features(self.net, tensors[missing], self.device, self.config.train.amp)
            feats[missing] = computed
            storable = [int(i) for i in missing if keys[i] is not None]
            store.append([keys[i] for i in storable], list(feats[storable]))
        return feats

    def embed(self, tensors: np.ndarray, acquisitions: Sequence[str] | None = None,
              structure: np.ndarray | None = None, features: np.ndarray | None = None) -> np.ndarray:
        """PCA-projected, L2-normalised features (what the centroids live in), each mixed with its
        acquisition's when ``acquisitions`` (one key per unit) are given, as in training, and followed by the
        units' series structure (:func:`deepmcat.structure.series_structure`) when the model uses it (the training
        mean when not given). ``features``: the network's, when already at hand (:meth:`features`)."""
        feats = self.features(tensors) if features is None else features
        coordinates = None if self.structure is None else self.structure(structure, len(feats))
        return embed_units(self.transform, feats, acquisitions, self.config.cluster.acquisition_weight, coordinates)

    def probabilities(self, d2: np.ndarray) -> np.ndarray:
        """(n, k) softmax over negative squared distances ``d2`` to the centroids, at the model's temperature
        (:func:`deepmcat.clustering.confidence_temperature`)."""
        return torch.softmax(torch.from_numpy(-d2 / self.temperature), dim=1).numpy()

    def predict(self, tensors: np.ndarray, k: int = 3, acquisitions: Sequence[str] | None = None,
                structure: np.ndarray | None = None, features: np.ndarray | None = None) -> list[Prediction]:
        if not len(tensors):
            return []
        return self.predict_embedded(self.embed(tensors, acquisitions, structure, features), k)

    def predict_embedded(self, embedded: np.ndarray, k: int = 3) -> list[Prediction]:
        """:meth:`predict` from :meth:`embed`'s output (when the embedding is needed as well)."""
        if len(embedded) == 0:
            return []
        probs = self.probabilities(squared_distances(embedded, self.centroids))
        distances = content_distances(embedded, self.centroids, self.transform.matrix.shape[0])
        scores = self.novelty_scores(embedded)
        out = []
        for row, dist, score in zip(probs, distances, scores):
            order = np.argsort(-row)[: max(1, k)]
            topk = [{"cluster": int(c), "category": self.category(c), "confidence": float(row[c])} for c in order]
            novel = self.unknown_threshold is not None and float(score) > self.unknown_threshold
            out.append(Prediction(int(order[0]), UNKNOWN if novel else self.category(order[0]), float(row[order[0]]),
                                  topk, float(dist), novel, float(score)))
        return out


def _weights_digest(weights: dict) -> str:
    """SHA-256 of published weights (names, shapes and bytes; the network's untrained head is not among
    them): ~10 ms for the default network."""
    digest = hashlib.sha256()
    for name, tensor in sorted(weights.items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def series_vote(predictions: list[Prediction]) -> Prediction:
    """A series' category: the majority over its units (ties by summed confidence); "unknown" when more than
    half of its units are, the nearest cluster kept."""
    votes = Counter(p.cluster for p in predictions)
    conf = Counter()
    for p in predictions:
        conf[p.cluster] += p.confidence
    best = max(votes, key=lambda c: (votes[c], conf[c]))
    members = [p for p in predictions if p.cluster == best]
    mean_conf = float(np.mean([p.confidence for p in members])) * votes[best] / len(predictions)
    mean_dist = float(np.mean([p.distance for p in members]))
    novel = 2 * sum(p.novel for p in predictions) > len(predictions)
    category = UNKNOWN if novel else members[0].topk[0]["category"]
    median_novelty = float(np.median([p.novelty for p in predictions]))
    return Prediction(best, category, mean_conf, members[0].topk, mean_dist, novel, median_novelty)


def describe(model: Model, units: Sequence[Unit], predictions: Sequence[Prediction]) -> dict:
    """The JSON answer for one input (a file or a series): its category by vote over its units, with each
    unit's own result when there are several (a 4-D short-axis stack, a three-plane scout)."""
    if not predictions:
        raise ValueError("no units to describe")
    series = series_vote(list(predictions))
    answer = {
        "category": series.category, "cluster": series.cluster, "confidence": round(series.confidence, 4),
        "topk": series.topk, "distance": round(series.distance, 5), "novel": series.novel,
        "novelty": round(series.novelty, 5),
        "n_units": len(predictions),
        "model": {"version": model.info["version"], "trained_at": model.info["trained_at"]},
    }
    if len(predictions) > 1:
        answer["units"] = [
            {"unit": u.unit_id, "category": p.category, "cluster": p.cluster, "confidence": round(p.confidence, 4),
             "novel": p.novel}
            for u, p in zip(units, predictions)
        ]
    return answer


def load_path(path: str | Path, cfg: PreprocessConfig) -> Collection:
    """The units of one file or folder (one datastore image, one upload) as canonical tensors.

    Raises :class:`ReadError` naming the problem when it holds no readable image.
    """
    report = scan(path)
    if not report.units:
        raise ReadError(report.skipped[0][1] if report.skipped else f"no files in {Path(path).name}")
    collection = load_units(report.units, cfg, progress=False)
    if not collection.units:
        raise ReadError(collection.failed[0][1])
    return collection


def classify_path(model: Model, path: str | Path, k: int = 3) -> dict:
    """:func:`describe` of everything in one file or folder; :class:`ReadError` when nothing is readable."""
    collection = load_path(path, model.config.preprocess)
    return describe(model, collection.units,
                    model.predict(collection.tensors, k, collection.acquisitions, collection.observed_structure))


class ModelCache:
    """The published model of a folder, loaded once and reloaded only when ``model.pt`` or the cluster names
    change on disk; while a new model is being published (or is unreadable) the previous one keeps serving."""

    def __init__(self, model_dir: str | Path, device: str = "auto", unknown_percentile: float | None = None):
        self.model_dir = Path(model_dir)
        self.device = device
        self.unknown_percentile = unknown_percentile
        self._lock = threading.Lock()
        self._model: Model | None = None
        self._stamp: tuple | None = None

    def _file_stamp(self) -> tuple | None:
        """Stamps of the model file and the names file; None while no model is published."""
        model = file_stamp(self.model_dir / checkpoint.MODEL)
        return None if model is None else (model, file_stamp(self.model_dir / checkpoint.NAMES))

    @property
    def available(self) -> bool:
        return self._file_stamp() is not None

    def get(self) -> Model:
        """The current model; raises :class:`checkpoint.CheckpointError` when none was ever published."""
        with self._lock:
            stamp = self._file_stamp()
            if stamp is None and self._model is None:
                raise checkpoint.CheckpointError(f"no DeepMCAT model is trained yet in {self.model_dir}")
            if stamp is not None and stamp != self._stamp:
                try:
                    if self._model is not None and stamp[0] == self._stamp[0]:
                        self._model.names = self._model.load_names()  # only the names changed
                    else:
                        self._model = Model(self.model_dir, self.device, self.unknown_percentile)
                    self._stamp = stamp
                except checkpoint.CheckpointError:
                    if self._model is None:
                        raise
                    log.warning("could not load the new model in %s yet; serving the previous one", self.model_dir)
            return self._model

