"""The disk cache: a rerun decodes nothing and gives the same tensors; a changed file, a corrupt or missing
row, or other settings are decoded again, never trusted; training from it matches training from memory."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from deepmcat import data, dicom
from deepmcat.cache import RowView, TensorCache, unit_key
from deepmcat.config import DeepMCATConfig, PreprocessConfig
from deepmcat.data import load_collection
from tests.helpers import write_dicom

CFG = PreprocessConfig(frames=4, size=16)


def _forbid_reading(monkeypatch) -> None:
    """Make any header parse or pixel decode fail the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(dicom, "_read_header", refuse)
    monkeypatch.setattr(data, "read_unit", refuse)


def test_rerun_reads_nothing_and_gives_the_decoded_tensors(cine_folder, tmp_path, monkeypatch):
    plain = load_collection(cine_folder, CFG, progress=False)
    cache = TensorCache(tmp_path / "cache")
    first = load_collection(cine_folder, CFG, progress=False, cache=cache)
    _forbid_reading(monkeypatch)
    again = load_collection(cine_folder, CFG, progress=False, cache=TensorCache(tmp_path / "cache"))
    for collection in (first, again):
        assert [u.unit_id for u in collection.units] == [u.unit_id for u in plain.units]
        assert [u.meta for u in collection.units] == [u.meta for u in plain.units]
        assert isinstance(collection.tensors, RowView)
        assert collection.keys == [unit_key(u) for u in collection.units]
        np.testing.assert_array_equal(np.asarray(collection.tensors), plain.tensors)


def test_a_changed_file_is_decoded_again(cine_folder, tmp_path):
    cache = TensorCache(tmp_path / "cache")
    before = load_collection(cine_folder, CFG, progress=False, cache=cache)
    path = cine_folder / "vol" / "v0.dcm"  # the volume's first slice becomes bright
    write_dicom(path, np.full((8, 8), 900, np.uint16), "1.3", position=(0, 0, 0.0), instance=3)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    after = load_collection(cine_folder, CFG, progress=False, cache=cache)
    plain = load_collection(cine_folder, CFG, progress=False)
    np.testing.assert_array_equal(np.asarray(after.tensors), plain.tensors)
    changed = [u.unit_id for u, a, b in zip(after.units, np.asarray(after.tensors), np.asarray(before.tensors))
               if not np.array_equal(a, b)]
    assert changed == [u.unit_id for u in after.units if str(path) in u.files]


@pytest.mark.parametrize("damage", ["flip bytes", "truncate"])
def test_a_damaged_store_is_rebuilt_not_trusted(cine_folder, tmp_path, damage):
    cache = TensorCache(tmp_path / "cache")
    load_collection(cine_folder, CFG, progress=False, cache=cache)
    rows_file = cache.store(CFG).path
    size = rows_file.stat().st_size
    with open(rows_file, "r+b") as fh:
        if damage == "truncate":
            fh.truncate(size - 100)  # the last row is cut short
        else:
            fh.seek(size // 2)
            fh.write(b"\xff" * 64)  # NaNs in the middle of a row
    again = load_collection(cine_folder, CFG, progress=False, cache=TensorCache(tmp_path / "cache"))
    plain = load_collection(cine_folder, CFG, progress=False)
    np.testing.assert_array_equal(np.asarray(again.tensors), plain.tensors)
    assert rows_file.stat().st_size > size - 100  # the damaged rows were written again


def test_other_settings_use_another_store(cine_folder, tmp_path):
    cache = TensorCache(tmp_path / "cache")
    small = load_collection(cine_folder, CFG, progress=False, cache=cache)
    large = load_collection(cine_folder, PreprocessConfig(frames=4, size=24), progress=False, cache=cache)
    assert small.tensors.shape[2:] == (16, 16) and large.tensors.shape[2:] == (24, 24)
    assert cache.store(CFG).folder != cache.store(PreprocessConfig(frames=4, size=24)).folder


def test_row_view_indexes_like_an_array(cine_folder, tmp_path):
    view = load_collection(cine_folder, CFG, progress=False, cache=TensorCache(tmp_path / "cache")).tensors
    full = np.asarray(view)
    assert view.shape == full.shape and len(view) == len(full)
    mask = np.arange(len(full)) % 2 == 0
    for idx in (1, np.int64(2), slice(1, 3), np.array([3, 0, 1]), mask, (2, 1), (slice(None), 0)):
        np.testing.assert_array_equal(view[idx], full[idx])


def test_training_from_the_cache_matches_training_from_memory(tiny_phantoms, tmp_path):
    from deepmcat.trainer import Trainer

    cfg = DeepMCATConfig().override(clusters=4, frames=4, size=16, warmup_epochs=1, epochs=1, batch_size=8,
                                    device="cpu")
    plain = load_collection(tiny_phantoms, cfg.preprocess, progress=False)
    cached = load_collection(tiny_phantoms, cfg.preprocess, progress=False, cache=TensorCache(tmp_path / "c"))
    results = [Trainer(cfg, tmp_path / name, progress=False).fit_collection(collection, resume=False)
               for name, collection in (("memory", plain), ("cache", cached))]
    np.testing.assert_array_equal(results[0].assignments, results[1].assignments)
    assert results[0].history[-1]["loss"] == pytest.approx(results[1].history[-1]["loss"], rel=1e-6)


def test_cached_headers_survive_a_group_losing_its_first_file(cine_folder, tmp_path):
    cache = TensorCache(tmp_path / "cache")
    load_collection(cine_folder, CFG, progress=False, cache=cache)
    first = sorted((cine_folder / "flow").iterdir())[0]  # the file whose record holds its group's metadata
    first.unlink()
    again = load_collection(cine_folder, CFG, progress=False, cache=cache)
    plain = load_collection(cine_folder, CFG, progress=False)
    assert [(u.unit_id, u.files, u.meta) for u in again.units] == [(u.unit_id, u.files, u.meta) for u in plain.units]


def test_headers_cached_before_enhanced_images_were_read_are_read_again(cine_folder, tmp_path, monkeypatch):
    """A record cached by code that did not look for per-frame functional groups cannot say whether its file
    was an enhanced image: it is read again (and stored anew); current records are trusted."""
    cache = TensorCache(tmp_path / "cache")
    before = load_collection(cine_folder, CFG, progress=False, cache=cache)
    rows = cache.headers.db.execute("SELECT path, record FROM headers").fetchall()
    old = [(json.dumps([*r[:2], r[2][:5], *r[3:]]) if len(r) == 4 else json.dumps(r), p)
           for p, r in ((p, json.loads(text)) for p, text in rows)]
    cache.headers.db.executemany("UPDATE headers SET record = ? WHERE path = ?", old)
    cache.headers.db.commit()
    read = []
    original = dicom._read_header
    monkeypatch.setattr(dicom, "_read_header", lambda path: read.append(path) or original(path))
    again = load_collection(cine_folder, CFG, progress=False, cache=cache)
    assert len(read) == sum(len(json.loads(text)) == 4 for _, text in rows) > 0
    assert [(u.unit_id, u.files, u.meta) for u in again.units] == [(u.unit_id, u.files, u.meta) for u in before.units]
    _forbid_reading(monkeypatch)
    load_collection(cine_folder, CFG, progress=False, cache=cache)  # stored anew: trusted now


def test_partial_reads_go_on(cine_folder, tmp_path, monkeypatch):
    """A read returns at most ~2 GB on Linux (20k units in one go): the store reads on until it has it all."""
    view = load_collection(cine_folder, CFG, progress=False, cache=TensorCache(tmp_path / "cache")).tensors
    whole = np.asarray(view)
    preadv = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, buffers, offset: preadv(fd, [buffers[0][:1000]], offset))
    np.testing.assert_array_equal(np.asarray(view), whole)


def test_predict_again_runs_the_network_only_on_units_it_has_not_seen(tiny_phantoms, tmp_path, monkeypatch):
    """The features of a model's units are cached under the model's weights: a rerun gives the same rows
    without the network; a damaged feature row or another model is computed again."""
    from deepmcat import inference
    from deepmcat.inference import Model
    from deepmcat.predictions import predict_rows
    from deepmcat.trainer import Trainer

    cfg = DeepMCATConfig().override(clusters=4, frames=4, size=16, warmup_epochs=1, epochs=1, batch_size=8,
                                    device="cpu")
    collection = load_collection(tiny_phantoms, cfg.preprocess, progress=False)
    for name, seed in (("a", 0), ("b", 1)):
        Trainer(cfg.override(seed=seed), tmp_path / name, progress=False).fit_collection(collection, resume=False)
    cache = TensorCache(tmp_path / "cache")
    plain = predict_rows(Model(tmp_path / "a", device="cpu"), collection, tiny_phantoms)
    first = predict_rows(Model(tmp_path / "a", device="cpu"), collection, tiny_phantoms, cache)
    runs = []
    real = inference.extract_features
    monkeypatch.setattr(inference, "extract_features", lambda net, tensors, *a: runs.append(len(tensors))
                        or real(net, tensors, *a))
    again = predict_rows(Model(tmp_path / "a", device="cpu"), collection, tiny_phantoms, cache)
    assert plain == first == again and runs == []

    model = Model(tmp_path / "a", device="cpu")
    store = cache.features(model.identity, model.feature_dim)
    with open(store.path, "r+b") as fh:  # one row's bytes damaged: that unit alone is computed again
        fh.seek(3 * store.row_bytes)
        fh.write(b"\xff" * 8)
    assert predict_rows(model, collection, tiny_phantoms, cache) == plain
    assert runs == [1]
    other = Model(tmp_path / "b", device="cpu")
    assert other.identity != model.identity
    predict_rows(other, collection, tiny_phantoms, cache)
    assert runs == [1, len(collection.units)]
