"""Atomic, verified checkpoints: write to a temporary file, fsync, rename; a SHA-256 sidecar checks loads."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"  # the training state, rewritten every epoch
MODEL = "model.pt"  # the published model, written once training ends
NAMES = "cluster_names.json"


class CheckpointError(RuntimeError):
    """A checkpoint or model file is missing, corrupt or of another format."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(state: dict, path: Path) -> None:
    """torch.save ``state`` to ``path`` atomically, with ``path.sha256`` beside it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(Path(str(path) + ".sha256"), digest.encode())
    atomic_write_bytes(Path(path), data)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no model file at {path}")
    data = path.read_bytes()
    sidecar = Path(str(path) + ".sha256")
    if sidecar.is_file() and hashlib.sha256(data).hexdigest() != sidecar.read_text().strip():
        raise CheckpointError(f"{path} is corrupt: its checksum does not match {sidecar.name}")
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable DeepMCAT model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != "deepmcat":
        raise CheckpointError(f"{path} is not a DeepMCAT model file")
    return state
