"""The two files a model folder holds, each written and read in one place: ``checkpoint.pt`` (the training
state, rewritten every epoch so that a run resumes) and ``model.pt`` (the published model inference
loads). Both go through :mod:`deepmcat.checkpoint` (atomic, checksummed, weights-only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepmcat import __version__, checkpoint
from deepmcat.checkpoint import CheckpointError
from deepmcat.clustering import FeatureTransform
from deepmcat.config import DeepMCATConfig
from deepmcat.novelty import NoveltyReference
from deepmcat.structure import StructureScale


@dataclass
class TrainingState:
    """Where a run stands after ``epoch`` epochs: enough to continue it exactly."""

    config: dict
    #: which units (and labels) the run trains on: a checkpoint of other data is not resumed
    fingerprint: str
    epoch: int
    net: dict
    optimizer: dict
    history: list[dict]
    pseudo_labels: np.ndarray | None
    numpy_rng: dict
    torch_rng: object


def save_checkpoint(folder: Path, state: TrainingState) -> None:
    checkpoint.save({
        "format": "deepmcat", "kind": "checkpoint", "version": __version__, "config": state.config,
        "fingerprint": state.fingerprint, "epoch": state.epoch, "net": state.net, "optimizer": state.optimizer,
        "history": state.history, "assignments": state.pseudo_labels, "numpy_rng": state.numpy_rng,
        "torch_rng": state.torch_rng,
    }, Path(folder) / checkpoint.CHECKPOINT)


def load_checkpoint(folder: Path, map_location="cpu") -> TrainingState | None:
    """The folder's training state, or None when there is none."""
    path = Path(folder) / checkpoint.CHECKPOINT
    if not path.exists():
        return None
    s = checkpoint.load(path, map_location=map_location)
    labels = None if s["assignments"] is None else np.asarray(s["assignments"])
    return TrainingState(s["config"], s["fingerprint"], s["epoch"], s["net"], s["optimizer"], s["history"], labels,
                         s["numpy_rng"], s["torch_rng"])


@dataclass
class PublishedModel:
    """What inference needs of a trained model, and what it was trained on."""

    config: DeepMCATConfig
    #: backbone and projector weights (the per-epoch pseudo-label head is not published)
    net: dict
    transform: FeatureTransform
    centroids: np.ndarray
    #: softmax temperature of the confidences (see :func:`deepmcat.clustering.confidence_temperature`)
    temperature: float
    trained_at: str
    n_units: int
    fingerprint: str
    unit_ids: list[str]
    assignments: np.ndarray
    history: list[dict] = field(default_factory=list)
    #: which units each rank extracted features of (one list per rank)
    distributed: dict = field(default_factory=dict)
    #: the device that trained it ("cpu", or "cuda:0 (NVIDIA H200)")
    trained_on: str = ""
    #: clinicians' categories it was trained with: units per category
    labels: dict = field(default_factory=dict)
    #: the training units' squared distances to their centroid at percentiles 0, 1, ..., 100: what the
    #: "unknown" threshold of models published before :attr:`novelty` is read from (None in newer models and
    #: in models published before either existed)
    distance_percentiles: np.ndarray | None = None
    #: training units' embeddings and calibrated scores that "unknown" is judged by; None in models
    #: published before it existed (they judge by :attr:`distance_percentiles`)
    novelty: NoveltyReference | None = None
    #: how series-structure coordinates join the embedding (:mod:`deepmcat.structure`); None in models
    #: published without them
    structure: StructureScale | None = None
    version: str = __version__


def save_model(folder: Path, model: PublishedModel) -> Path:
    path = Path(folder) / checkpoint.MODEL
    checkpoint.save({
        "format": "deepmcat", "kind": "model", "version": model.version, "config": model.config.to_dict(),
        "net": model.net, "transform": model.transform.state(), "centroids": model.centroids,
        "temperature": model.temperature, "history": model.history, "trained_at": model.trained_at,
        "n_units": model.n_units, "fingerprint": model.fingerprint, "unit_ids": model.unit_ids,
        "assignments": model.assignments, "distributed": model.distributed, "trained_on": model.trained_on,
        "labels": model.labels, "distance_percentiles": model.distance_percentiles,
        "structure": model.structure.state() if model.structure else None,
        "novelty": model.novelty.state() if model.novelty else None,
    }, path)
    return path


def load_model(folder: Path) -> PublishedModel:
    path = Path(folder) / checkpoint.MODEL
    s = checkpoint.load(path, map_location="cpu")
    try:
        return PublishedModel(
            config=DeepMCATConfig.from_saved(s["config"]), net=s["net"],
            transform=FeatureTransform.from_state(s["transform"]),
            centroids=np.asarray(s["centroids"], np.float32), temperature=float(s["temperature"]),
            trained_at=s["trained_at"], n_units=int(s["n_units"]), fingerprint=s["fingerprint"],
            unit_ids=list(s["unit_ids"]), assignments=np.asarray(s["assignments"]), history=s["history"],
            distributed=s.get("distributed", {}), trained_on=s.get("trained_on", ""), labels=s.get("labels", {}),
            distance_percentiles=_optional_array(s.get("distance_percentiles")),
            structure=StructureScale.from_state(s.get("structure")),
            novelty=NoveltyReference.from_state(s.get("novelty")), version=s["version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a complete DeepMCAT model ({type(exc).__name__}: {exc})") from exc


def _optional_array(value) -> np.ndarray | None:
    return None if value is None else np.asarray(value, np.float64)
