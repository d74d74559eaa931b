"""Backbone features of canonical tensors, on the GPU when there is one: what training, inference and the
benchmarks all extract. Kept apart from the training loop, so that serving imports no training code."""

from __future__ import annotations

import numpy as np
import torch

from deepmcat.cache import RowView
from deepmcat.model import DeepMCATNet


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """``cpu``, or the CUDA device with its model name (what a model card says it was trained on)."""
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed); a no-op on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


@torch.no_grad()
def extract_features(net: DeepMCATNet, tensors: np.ndarray | RowView, device: torch.device, amp: bool = True,
                     batch_size: int = 256, indices: np.ndarray | None = None) -> np.ndarray:
    """Features of ``tensors`` (of the rows ``indices`` only, when given), a batch at a time: a collection
    read from the cache is never all in memory."""
    net.eval()
    out = []
    n = len(tensors) if indices is None else len(indices)
    for start in range(0, n, batch_size):
        batch = slice(start, start + batch_size) if indices is None else indices[start : start + batch_size]
        x = torch.from_numpy(tensors[batch]).to(device, non_blocking=True)
        with autocast(device, amp):
            out.append(net.features(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.feature_dim), np.float32)
