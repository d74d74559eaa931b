"""What every benchmark shares: where data, models and results live, the machine a figure was measured on,
the scores of one clustering, and generated data sets cached by their generator settings."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from deepmcat import __version__
from deepmcat.generate import generate
from deepmcat.metrics import evaluate

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE / ".data"
REAL = HERE.parents[1] / "shared" / "data" / "real"
METRICS = ("purity", "nmi", "ari", "acc", "worst_recall")


def machine() -> dict:
    return {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "torch": torch.__version__, "deepmcat": __version__,
    }


def score(truth, assignments) -> dict:
    """The headline metrics of one clustering, rounded (and the worst category's name)."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in evaluate(truth, assignments).items()}


def generated(subjects: int, balanced: bool, seed: int = 0) -> Path:
    """A generated CMR set (``deepmcat generate``), made once under benchmarks/.data."""
    data = DATA / f"cmr-{'balanced' if balanced else 'imbalanced'}-{subjects}s-seed{seed}"
    if not (data / "labels.csv").is_file():
        generate(data, subjects, seed=seed, balanced=balanced, progress=False)
    return data
