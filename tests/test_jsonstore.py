"""The JSON store under a DICOMweb datastore's categories and the watcher's state: whole objects only, no
update lost between processes, a damaged file named rather than silently emptied."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from deepmcat.jsonstore import JsonStore, StoreError


def _add_keys(path: str, prefix: str, n: int) -> None:
    store = JsonStore(path)
    for i in range(n):
        with store.updating() as data:
            data[f"{prefix}{i}"] = i


def test_updates_from_two_processes_are_all_kept(tmp_path):
    path = str(tmp_path / "labels.json")
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=_add_keys, args=(path, p, 40)) for p in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    data = JsonStore(path).read()
    assert len(data) == 80 and data["a39"] == 39 and data["b0"] == 0


def test_a_failed_update_writes_nothing(tmp_path):
    store = JsonStore(tmp_path / "s.json")
    with store.updating() as data:
        data["kept"] = 1
    with pytest.raises(RuntimeError):
        with store.updating() as data:
            data["lost"] = 2
            raise RuntimeError("interrupted")
    assert store.read() == {"kept": 1}
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["s.json"]  # no temporary left


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]"])
def test_a_damaged_file_is_named_not_overwritten(tmp_path, content):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="s.json"):
        JsonStore(path).read()
    with pytest.raises(StoreError):
        with JsonStore(path).updating() as data:
            data["x"] = 1
    assert path.read_bytes() == content


def test_a_read_is_parsed_once_and_sees_every_update_made_elsewhere(tmp_path):
    path = tmp_path / "labels.json"
    reader, writer = JsonStore(path), JsonStore(path)
    assert reader.read() == {}
    with writer.updating() as data:
        data["a"] = 1
    first = reader.read()
    assert first == {"a": 1} and reader.read() is first  # not parsed again while the file is the same
    for value in range(2, 6):  # same size every time: the replaced file is what tells
        with writer.updating() as data:
            data["a"] = value
        assert reader.read() == {"a": value}
