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
import os
from pathlib import Path
from typing import Iterator

from deepmcat.checkpoint import atomic_write_bytes


class StoreError(RuntimeError):
    """The store's file exists but does not hold a JSON object (edited by hand, or another file)."""


class JsonStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = self.path.with_name(f".{self.path.name}.lock")
        self._cache: tuple[tuple[int, int, int], dict] | None = None

    def read(self) -> dict:
        """The object (empty when the file does not exist yet). Parsed again only when the file was replaced
        since the last read (a datastore asks once per image), so treat it as read-only: change it through
        :meth:`updating`."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # every update is a new file (rename): a new inode
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        value = self._parse(self.path.read_bytes())
        self._cache = (stamp, value)
        return value

    def _parse(self, data: bytes) -> dict:
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
            try:  # afresh, never the cached object: another process may just have replaced the file
                data = self._parse(self.path.read_bytes())
            except FileNotFoundError:
                data = {}
            yield data
            atomic_write_bytes(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
