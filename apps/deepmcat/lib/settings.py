"""The app's settings (``--conf key value``, and what a train request may override): one frozen dataclass,
parsed and bounded in one place. A leaf module: the config, infer, train and strategy modules all read it."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from deepmcat.config import ClusterConfig, DeepMCATConfig, PreprocessConfig, TrainConfig

MODEL = "deepmcat"


@dataclass(frozen=True)
class AppSettings:
    """Everything an admin can set with ``--conf`` (and a train request can override, see TRAIN_KEYS)."""

    # the library's defaults, so that the app and ``deepmcat train`` cannot drift apart
    clusters: int = ClusterConfig.clusters
    epochs: int = TrainConfig.epochs
    warmup_epochs: int = TrainConfig.warmup_epochs
    frames: int = PreprocessConfig.frames
    size: int = PreprocessConfig.size
    #: the second input scale, the central square of this fraction of the field of view (0: one scale);
    #: ``deepmcat.config.PreprocessConfig.centre_crop``
    centre_crop: float = PreprocessConfig.centre_crop
    batch_size: int = TrainConfig.batch_size
    device: str = TrainConfig.device
    seed: int = TrainConfig.seed
    #: how many alternatives an answer lists
    topk: int = 3
    #: a series whose novelty score (distance to its nearest training units) exceeds this percentile of the
    #: training units' scores against other examinations is answered "unknown" (0: never)
    unknown_percentile: float = 99.0
    #: uploads larger than this are refused (413) before they are read
    max_upload_mb: int = 1024
    #: where model.pt, its checkpoint, train_stats.json and cluster_names.json live
    model_dir: str = ""
    #: train with torchrun on every visible GPU when there are several ("true"/"false")
    multi_gpu: str = "false"
    #: DICOMweb studies: the Modality of the series the datastore lists ("all" lists every series);
    #: MONAI Label's own default would list CT only
    modality: str = "MR"
    #: DICOMweb studies: the folder keeping clinicians' categories and image scores (the PACS stays
    #: read-only); default ``labels/`` in the app folder, one sub-folder per PACS URL
    labels_dir: str = ""
    #: host names (comma-separated) clients may address the server by, besides loopback and the address it
    #: listens on: a name behind a reverse proxy. Requests naming other hosts are refused (DNS rebinding)
    allowed_hosts: str = ""
    #: web origins (comma-separated, e.g. https://viewer.example) whose pages may call the server; none by
    #: default (3D Slicer and scripts send no Origin). MONAI Label's own CORS setting would allow every one
    allowed_origins: str = ""

    TRAIN_KEYS = ("clusters", "epochs", "warmup_epochs", "frames", "size", "centre_crop", "batch_size", "device",
                  "seed", "multi_gpu")

    @classmethod
    def parse(cls, conf: Mapping[str, Any], default_model_dir: str) -> "AppSettings":
        """Typed settings from string ``conf`` values; a bad value raises ValueError naming the key."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {"model_dir": default_model_dir}
        for key, raw in conf.items():
            if key not in known:
                continue  # MONAI Label passes its own keys (models, preload, ...) through conf as well
            values[key] = cls._convert(key, raw, known[key].type)
        settings = cls(**values)
        settings.validate()
        return settings

    @staticmethod
    def _convert(key: str, raw: Any, kind: Any) -> Any:
        if kind in ("int", int):
            try:
                return int(raw)
            except (TypeError, ValueError):
                raise ValueError(f"setting {key!r} must be an integer, got {raw!r}") from None
        if kind in ("float", float):
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = float("nan")
            if value != value:
                raise ValueError(f"setting {key!r} must be a number, got {raw!r}")
            return value
        return str(raw)

    #: inclusive bounds of the integer settings: a train request cannot ask for a 2048-pixel input or 1e5 epochs
    BOUNDS = {"clusters": (2, 1000), "epochs": (1, 1000), "warmup_epochs": (0, 1000), "frames": (1, 64),
              "size": (16, 256), "batch_size": (2, 1024), "seed": (0, 2**31 - 1), "topk": (1, 100),
              "max_upload_mb": (1, 16384), "unknown_percentile": (0, 100)}

    def validate(self) -> None:
        for key, (low, high) in self.BOUNDS.items():
            if not low <= getattr(self, key) <= high:
                raise ValueError(f"setting {key!r} must be between {low} and {high}, got {getattr(self, key)}")
        if not 0 <= self.centre_crop < 1:
            raise ValueError(f"setting 'centre_crop' must be in [0, 1) (0: one scale), got {self.centre_crop}")
        if self.multi_gpu.lower() not in ("true", "false"):
            raise ValueError(f"setting 'multi_gpu' must be true or false, got {self.multi_gpu!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"setting 'device' must be auto, cpu or cuda, got {self.device!r}")

    def overridden(self, request: Mapping[str, Any]) -> "AppSettings":
        """These settings with a train request's values for TRAIN_KEYS."""
        known = {f.name: f for f in fields(self)}
        changes = {k: self._convert(k, request[k], known[k].type) for k in self.TRAIN_KEYS if k in request}
        settings = replace(self, **changes)
        settings.validate()
        return settings

    def names(self, key: str) -> list[str]:
        """A comma-separated setting as a list (lower case, no trailing slash)."""
        return [h.strip().lower().rstrip("/") for h in getattr(self, key).split(",") if h.strip()]

    def dicomweb_filter(self) -> dict:
        return {} if self.modality.lower() in ("all", "*", "") else {"Modality": self.modality}

    def deepmcat_config(self) -> DeepMCATConfig:
        return DeepMCATConfig().override(**{k: getattr(self, k) for k in self.TRAIN_KEYS if k != "multi_gpu"})
