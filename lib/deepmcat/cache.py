"""A disk cache of what reading costs: DICOM header records and canonical tensors, written once and reused by
train, predict, organize and the app. A rerun decodes nothing, and training reads its batches from disk, so
resident memory stays flat as the archive grows.

One folder, safe to delete at any time::

    headers.sqlite                 file path -> (size, mtime, header record as JSON)
    tensors-<settings>/rows.f32    canonical tensors, fixed-size float32 rows, appended
    tensors-<settings>/index.sqlite  unit key -> (row, crc32 of the row)
    features-<model>/...           a model's network features of the units it predicted, laid out alike

A unit's key hashes its files' paths, sizes and modification times, and a store holds one set of
preprocessing settings (and :data:`deepmcat.config.PREPROCESS_VERSION`), so a changed file or setting misses. A row
whose checksum does not match, or that lies beyond the end of its file, is decoded again, never trusted.
Rows are read with ``pread`` rather than memory-mapped: mapped pages count in the process's resident memory,
read ones stay in the kernel's page cache (benchmarks/README.md, "Archive scale").
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import zlib
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from deepmcat.config import PREPROCESS_VERSION, PreprocessConfig
from deepmcat.units import Unit

#: the environment variable that moves the default cache folder
CACHE_ENV = "DEEPMCAT_CACHE"
#: what ``--cache`` takes to switch the cache off
OFF = "off"
#: keys looked up per SQL statement (SQLite's default limit on parameters is 32,766)
LOOKUP_CHUNK = 500
#: bytes of rows read at once when their checksums are verified
VERIFY_BYTES = 64 << 20


def default_cache_dir() -> Path:
    """``$DEEPMCAT_CACHE``, else ``$XDG_CACHE_HOME/deepmcat``, else ``~/.cache/deepmcat``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepmcat"


def _connect(path: Path, schema: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=60, isolation_level=None)  # autocommit; writes in explicit transactions
    db.execute("PRAGMA journal_mode=WAL")  # readers do not wait for a writer (the server and a CLI run)
    db.execute(schema)
    return db


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, rolled back when what it runs fails."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def file_stamp(path: str) -> tuple[int, int] | None:
    """(size, modification time in ns) of a file, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class HeaderCache:
    """DICOM header records (:func:`deepmcat.dicom.header_record`) by file path, size and modification time:
    a rescan of an unchanged archive stats its files instead of parsing them."""

    def __init__(self, folder: Path):
        self.db = _connect(folder / "headers.sqlite", "CREATE TABLE IF NOT EXISTS headers "
                           "(path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER, record TEXT)")

    def get(self, paths: Sequence[str]) -> list[list | None]:
        """Each file's cached record (as JSON lists), or None where it is missing or the file changed."""
        stamps = [file_stamp(p) for p in paths]
        found: dict[str, tuple[int, int, str]] = {}
        for start in range(0, len(paths), LOOKUP_CHUNK):
            chunk = paths[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for path, size, mtime, record in self.db.execute(
                    f"SELECT path, size, mtime, record FROM headers WHERE path IN ({marks})", chunk):
                found[path] = (size, mtime, record)
        out: list[list | None] = []
        for path, stamp in zip(paths, stamps):
            hit = found.get(path)
            out.append(json.loads(hit[2]) if hit is not None and stamp is not None and hit[:2] == stamp else None)
        return out

    def put(self, records: Sequence[tuple]) -> None:
        """Store records (each starts with its file's path); files that vanished meanwhile are left out."""
        rows = []
        for record in records:
            stamp = file_stamp(record[0])
            if stamp is not None:
                rows.append((record[0], *stamp, json.dumps(record)))
        with _transaction(self.db):
            self.db.executemany("INSERT OR REPLACE INTO headers VALUES (?, ?, ?, ?)", rows)


def unit_key(unit: Unit) -> str | None:
    """What a unit's tensor depends on besides the settings: its files (path, size, mtime) and which slice of
    them it is. None when a file cannot be stat'ed (it is then decoded, and fails with its reason)."""
    h = hashlib.sha256(f"{unit.source}|{unit.slice_index}".encode())
    if unit.frame_indices is not None:  # one of the units of an enhanced multi-frame file
        h.update(f"|{unit.frame_indices}".encode())
    for path in unit.files:
        stamp = file_stamp(path)
        if stamp is None:
            return None
        h.update(f"|{path}:{stamp[0]}:{stamp[1]}".encode())
    return h.hexdigest()


class TensorStore:
    """Fixed-size float32 rows of one kind and one set of settings (canonical tensors of one preprocessing,
    or one model's features) appended to one file, found by unit key through an SQLite index that also holds
    each row's checksum."""

    def __init__(self, folder: Path, shape: tuple[int, ...], settings: str, kind: str = "tensors"):
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(self.shape)) * 4
        self.folder = folder / f"{kind}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / "settings.json"
        if not marker.is_file() or marker.read_text() != settings + "\n":  # opening a store writes nothing
            marker.write_text(settings + "\n")
        self.path = self.folder / "rows.f32"
        self.path.touch()
        self.db = _connect(self.folder / "index.sqlite",
                           "CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, row INTEGER, crc INTEGER)")
        self._fd = os.open(self.path, os.O_RDONLY)

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    # ------------------------------------------------------------------------------------------ reading

    def lookup(self, keys: Sequence[str | None]) -> np.ndarray:
        """The row of each key, -1 where it is missing, beyond the file's end, or its checksum is wrong."""
        found: dict[str, tuple[int, int]] = {}
        known = [k for k in keys if k is not None]
        for start in range(0, len(known), LOOKUP_CHUNK):
            chunk = known[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, row, crc in self.db.execute(f"SELECT key, row, crc FROM rows WHERE key IN ({marks})", chunk):
                found[key] = (row, crc)
        n_rows = os.fstat(self._fd).st_size // self.row_bytes
        rows = np.full(len(keys), -1, np.int64)
        crcs = np.zeros(len(keys), np.int64)
        for i, key in enumerate(keys):
            hit = found.get(key) if key is not None else None
            if hit is not None and 0 <= hit[0] < n_rows:
                rows[i], crcs[i] = hit
        self._verify(rows, crcs)
        return rows

    def _verify(self, rows: np.ndarray, crcs: np.ndarray) -> None:
        """Set to -1 the rows whose bytes do not match their checksum."""
        hits = np.flatnonzero(rows >= 0)
        step = max(1, VERIFY_BYTES // self.row_bytes)
        for start in range(0, len(hits), step):
            idx = hits[start : start + step]
            block = self.read(rows[idx])
            for j, i in enumerate(idx):
                if zlib.crc32(block[j]) != crcs[i]:
                    rows[i] = -1

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The tensors of ``rows``, in that order; consecutive rows are read with one call."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), *self.shape), np.float32)
        flat = memoryview(out.reshape(len(rows), -1)).cast("B")
        start = 0
        while start < len(rows):
            end = start + 1
            while end < len(rows) and rows[end] == rows[end - 1] + 1:
                end += 1
            self._read_into(flat[start * self.row_bytes : end * self.row_bytes], int(rows[start]) * self.row_bytes)
            start = end
        return out

    def _read_into(self, buffer: memoryview, offset: int) -> None:
        """Fill ``buffer`` from ``offset``: a read returns at most ~2 GB on Linux, so partial reads go on."""
        done = 0
        while done < len(buffer):
            got = os.preadv(self._fd, [buffer[done:]], offset + done)
            if got == 0:
                raise OSError(f"{self.path}: cache file shorter than its index says (byte {offset + done})")
            done += got

    # ------------------------------------------------------------------------------------------ writing

    def append(self, keys: Sequence[str], tensors: Sequence[np.ndarray]) -> np.ndarray:
        """Write tensors at the end of the file, then index them (a crash in between leaves unindexed bytes,
        never an index entry without its row); returns their rows."""
        if not keys:
            return np.zeros(0, np.int64)
        data = b"".join(np.ascontiguousarray(t, np.float32).tobytes() for t in tensors)
        if len(data) != len(keys) * self.row_bytes:
            raise ValueError(f"tensors of shape {np.shape(tensors[0])} do not fit rows of {self.shape}")
        with open(self.folder / "lock", "w") as lock, open(self.path, "r+b") as fh:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time across processes (server and CLI)
            first = os.fstat(fh.fileno()).st_size // self.row_bytes
            fh.truncate(first * self.row_bytes)  # a torn row left by a writer that crashed
            fh.seek(first * self.row_bytes)
            fh.write(data)
            fh.flush()
            rows = np.arange(first, first + len(keys))
            entries = [(key, int(row), zlib.crc32(data[j * self.row_bytes : (j + 1) * self.row_bytes]))
                       for j, (key, row) in enumerate(zip(keys, rows))]
            with _transaction(self.db):
                self.db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?)", entries)
        return rows


class RowView:
    """Rows of a store in unit order, read from disk when indexed: an array-like (n, channels, size, size)
    that training and feature extraction index batch by batch, so the collection is never all resident."""

    def __init__(self, store: TensorStore, rows: np.ndarray):
        self.store = store
        self.rows = np.asarray(rows, np.int64)
        self.shape = (len(self.rows), *store.shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx) -> np.ndarray:
        """Rows by an int, slice, index array or mask, as numpy indexes; a tuple indexes inside them too."""
        if isinstance(idx, tuple):
            head, rest = idx[0], idx[1:]
            rows = self[head]
            return rows[rest] if isinstance(head, (int, np.integer)) else rows[(slice(None), *rest)]
        if isinstance(idx, (int, np.integer)):
            return self.store.read(self.rows[[idx]])[0]
        return self.store.read(self.rows[idx])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class TensorCache:
    """The cache folder: its header records, one tensor store per set of preprocessing settings and one
    feature store per model."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create the cache folder {self.folder}: {exc.strerror}") from exc
        self.headers = HeaderCache(self.folder)
        self._stores: dict[tuple[str, str], TensorStore] = {}

    def store(self, cfg: PreprocessConfig) -> TensorStore:
        settings = json.dumps({"preprocess": asdict(cfg), "version": PREPROCESS_VERSION}, sort_keys=True)
        return self._store("tensors", (cfg.channels, cfg.size, cfg.size), settings)

    def features(self, model_identity: str, dim: int) -> TensorStore:
        """The network features of one model (:attr:`deepmcat.inference.Model.identity`: its weights, device
        and precision), so that predicting an unchanged unit again skips the network."""
        return self._store("features", (dim,), json.dumps({"model": model_identity}))

    def _store(self, kind: str, shape: tuple[int, ...], settings: str) -> TensorStore:
        if (kind, settings) not in self._stores:
            self._stores[kind, settings] = TensorStore(self.folder, shape, settings, kind)
        return self._stores[kind, settings]


def open_cache(setting: str | os.PathLike | None) -> TensorCache | None:
    """The cache a ``--cache`` value names: a folder, ``off`` (None), or None for the default folder."""
    if setting is not None and str(setting) == OFF:
        return None
    return TensorCache(setting if setting is not None else default_cache_dir())
