"""One small JSON object kept in a file that several processes update: the MONAI Label server and its training
subprocess (labels and scores of a DICOMweb datastore), or ``deepmcat watch`` across restarts.

Every update holds an exclusive lock on a file beside it, reads the file afresh, changes the object and
replaces the file atomically (temporary file, fsync, rename): a crash leaves the old or the new object, never
half of one, and no process writes over another's update.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path
from typing import Iterator

from deepmcat.checkpoint import atomic_write_bytes


class StoreError(RuntimeError):
    """The store's file exists but does not hold a JSON object (edited by hand, or another file)."""


class JsonStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = self.path.with_name(f".{self.path.name}.lock")

    def read(self) -> dict:
        """The object (empty when the file does not exist yet)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise StoreError(f"{self.path} is not valid JSON ({exc}): restore it or move it away") from None
        if not isinstance(value, dict):
            raise StoreError(f"{self.path} holds a JSON {type(value).__name__}, not an object")
        return value

    @contextlib.contextmanager
    def updating(self) -> Iterator[dict]:
        """``with store.updating() as data: data[key] = ...``: the change is written when the block ends
        without an exception, and not at all otherwise."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            yield data
            atomic_write_bytes(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
