"""What a hostile file or client must not achieve through the library: code execution through a model file,
decompression bombs, spreadsheet formulas in CSVs, credentials in outputs, a torn organize journal."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
import torch

from deepmcat import checkpoint


class RunsACommand:
    """An object whose unpickling runs a shell command (what an attacker puts in a model file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_with_valid_checksum(path: Path, state: dict) -> None:
    """The project's own file layout (magic, SHA-256 of the payload, newline, payload) around ``state``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    path.write_bytes(checkpoint.MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def test_a_model_file_that_needs_pickle_is_refused_and_runs_nothing(tmp_path):
    from deepmcat.inference import Model

    marker = tmp_path / "pwned"
    write_with_valid_checksum(tmp_path / checkpoint.MODEL, {"format": "deepmcat", "net": RunsACommand(marker)})
    with pytest.raises(checkpoint.CheckpointError, match="refused: it holds Python objects"):
        Model(tmp_path, device="cpu")
    with pytest.raises(checkpoint.CheckpointError, match="refused"):
        checkpoint.load(tmp_path / checkpoint.MODEL)
    assert not marker.exists()


def test_saved_files_load_weights_only_with_numpy_content(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    state = {"format": "deepmcat", "centroids": np.ones((2, 3), np.float32), "n": np.int64(4),
             "rng": rng.bit_generator.state, "nested": [{"a": np.zeros(2)}, (1, "x", None)]}
    checkpoint.save(state, tmp_path / "x.pt")
    loaded = checkpoint.load(tmp_path / "x.pt")
    assert np.array_equal(np.asarray(loaded["centroids"]), state["centroids"])
    assert loaded["n"] == 4 and isinstance(loaded["n"], int)
    assert loaded["rng"] == state["rng"] and loaded["nested"][1] == (1, "x", None)


def test_a_model_file_missing_weights_is_refused(tmp_path, trained_tiny_model):
    from deepmcat.inference import Model

    state = checkpoint.load(trained_tiny_model / checkpoint.MODEL)
    first = next(iter(state["net"]))
    del state["net"][first]
    checkpoint.save(state, tmp_path / checkpoint.MODEL)
    with pytest.raises(checkpoint.CheckpointError, match=f"missing \\['{first}'\\]"):
        Model(tmp_path, device="cpu")
