"""Atomic, verified checkpoints: write to a temporary file, fsync, rename; a SHA-256 in the file checks loads.

Files hold tensors, numbers, strings, lists and dicts only, and are read with ``torch.load(weights_only=True)``:
a model file is data, never code. The checksum proves the file is whole, not where it came from, so a file
that needs pickle to load (one that could run code) is refused whatever its checksum says.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

CHECKPOINT = "checkpoint.pt"  # the training state, rewritten every epoch
MODEL = "model.pt"  # the published model, written once training ends
NAMES = "cluster_names.json"
MAGIC = b"DEEPMCAT1 sha256="  # file layout: MAGIC, 64 hex digits, newline, torch.save payload


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


def to_plain(obj: Any) -> Any:
    """``obj`` with numpy arrays as tensors and numpy scalars as Python numbers: what a weights-only load
    accepts (tensors, numbers, strings, None, lists, tuples and dicts)."""
    import torch  # here, not at the top: the command line imports this module, and its reading workers
    # import the command line again; torch would cost each of them ~2 s

    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def save(state: dict, path: Path) -> None:
    """torch.save ``state`` to ``path`` atomically, its SHA-256 in the same file (numpy arrays become tensors).

    One file, written to a temporary name and renamed: a reader sees the old file or the new one, never a
    mix, whenever the writer is killed (a digest in a second file could not be replaced together with it).
    """
    import torch

    buffer = io.BytesIO()
    torch.save(to_plain(state), buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(Path(path), MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no model file at {path}")
    data = path.read_bytes()
    header = len(MAGIC) + 65
    if not data.startswith(MAGIC) or len(data) < header or data[header - 1 : header] != b"\n":
        raise CheckpointError(f"{path} is not a DeepMCAT model file")
    digest, payload = data[len(MAGIC) : header - 1].decode(errors="replace"), data[header:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{path} is corrupt: its content does not match its SHA-256 checksum")
    import torch

    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path} is refused: it holds Python objects, not only tensors, numbers, strings, "
                              "lists and dicts, and loading it could run code") from exc
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable DeepMCAT model ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != "deepmcat":
        raise CheckpointError(f"{path} is not a DeepMCAT model file")
    return state
