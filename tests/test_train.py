"""A tiny end-to-end run: train, publish, predict, resume after an interruption."""

from __future__ import annotations

import numpy as np
import pytest

from deepmcat import checkpoint
from deepmcat.config import DeepMCATConfig
from deepmcat.data import load_collection
from deepmcat.inference import Model, series_vote
from deepmcat.sampling import uniform_cluster_sample
from deepmcat.trainer import Trainer


def tiny_config() -> DeepMCATConfig:
    cfg = DeepMCATConfig()
    cfg.preprocess.frames, cfg.preprocess.size = 4, 32
    cfg.cluster.clusters, cfg.cluster.nredo = 4, 1
    cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.batch_size, cfg.train.device = 2, 1, 8, "cpu"
    return cfg


@pytest.fixture(scope="module")
def collection(tiny_phantoms):
    return load_collection(tiny_phantoms, tiny_config().preprocess, progress=False)


def test_train_publishes_a_model_that_predicts(collection, tmp_path):
    cfg = tiny_config()
    ids = [u.unit_id for u in collection.units]
    result = Trainer(cfg, tmp_path, progress=False).fit(collection.tensors, ids)
    assert (tmp_path / checkpoint.MODEL).read_bytes().startswith(checkpoint.MAGIC)
    assert len(result.history) == 3 and result.history[0]["stage"] == "warm-up"
    assert "nmi_prev" in result.history[2] and 0.0 <= result.history[2]["nmi_prev"] <= 1.0
    assert len(result.assignments) == len(ids) and set(result.assignments) <= set(range(4))

    model = Model(tmp_path, device="cpu")
    preds = model.predict(collection.tensors, k=3)
    assert len(preds) == len(ids)
    for p in preds:
        assert 0.0 <= p.confidence <= 1.0 and len(p.topk) == 3
        assert p.topk[0]["cluster"] == p.cluster
        assert p.topk[0]["confidence"] >= p.topk[1]["confidence"] >= p.topk[2]["confidence"]
        assert sum(t["confidence"] for t in p.topk) <= 1.0 + 1e-6  # three of the four clusters
    for p in model.predict(collection.tensors, k=4):  # all four: a probability distribution
        assert abs(sum(t["confidence"] for t in p.topk) - 1.0) < 1e-5
        assert sorted(t["cluster"] for t in p.topk) == [0, 1, 2, 3]
    # inference on the training tensors reproduces the published assignment exactly (same embedding and
    # assignment rule: without acquisitions every unit is its own acquisition)
    assert [p.cluster for p in preds] == list(result.assignments)
    model.save_names({0: "cine_sax"})
    renamed = Model(tmp_path, device="cpu", unknown_percentile=0).predict(collection.tensors)
    assert [p.category for p in renamed] == ["cine_sax" if p.cluster == 0 else f"cluster_{p.cluster:02d}"
                                             for p in preds]


def test_series_structure_joins_the_final_clustering_and_inference_alike(collection, tmp_path):
    """Slices per stack and frames per slice are two weighted, standardised coordinates after the embedding,
    the scan plane's axis six more, the pair flag one, the static flag one: published with the model, and
    inference given the same units reproduces the published assignment."""
    cfg = tiny_config()
    cfg.cluster.structure_weight, cfg.cluster.plane_weight, cfg.cluster.pair_weight = 0.3, 0.4, 0.6
    cfg.cluster.static_weight = 0.8
    result = Trainer(cfg, tmp_path, progress=False).fit_collection(collection)
    model = Model(tmp_path, device="cpu")
    scale = model.published.structure
    assert scale is not None and scale.weight == pytest.approx(0.3) and np.all(scale.std > 0)
    assert scale.plane_weight == pytest.approx(0.4) and scale.pair_weight == pytest.approx(0.6) and scale.dims == 10
    assert scale.static_weight == pytest.approx(0.8)
    assert model.centroids.shape[1] == model.transform.matrix.shape[0] + 10
    raw = collection.structure
    assert raw.shape == (len(collection.units), 10) and raw[:, :2].min() >= 0 and raw[:, 1].max() > 0  # log2 counts
    assert np.allclose(np.linalg.norm(raw[:, 2:8], axis=1), 1.0, atol=1e-5)  # every generated unit has its plane
    assert set(raw[:, 8].tolist()) == {0.0, 1.0}  # flow magnitude and phase are paired, the rest not
    assert set(raw[:, 9].tolist()) == {0.0, 1.0}  # LGE and scouts are static, cines are not
    preds = model.predict(collection.tensors, acquisitions=collection.acquisitions, structure=raw)
    assert [p.cluster for p in preds] == list(result.assignments)
    embedded = model.embed(collection.tensors, collection.acquisitions, raw)
    assert np.allclose(embedded[:, -10:], scale(raw, len(raw)), atol=1e-6)
    assert np.allclose(embedded[:, -8:-2], 0.4 * raw[:, 2:8], atol=1e-6)  # the plane axis, weighted as it is
    assert np.allclose(embedded[:, -2], 0.6 * raw[:, 8], atol=1e-6)
    assert np.allclose(embedded[:, -1], 0.8 * raw[:, 9], atol=1e-6)
    # "unknown" is judged on content: a series stored with an unusual number of slices is not farther
    dims = model.transform.matrix.shape[0]
    for p, row in zip(model.predict(collection.tensors, acquisitions=collection.acquisitions, structure=raw + 3),
                      embedded):
        assert p.distance == pytest.approx(float(((row[:dims] - model.centroids[:, :dims]) ** 2).sum(1).min()), rel=1e-4, abs=1e-5)
    # without the structure (a caller that does not know it) the counts are the training mean and the plane
    # is none: equally far from every plane
    assert np.allclose(model.embed(collection.tensors[:3])[:, -10:], 0.0)

    cfg.cluster.structure_weight, cfg.cluster.pair_weight, cfg.cluster.static_weight = 0.0, 0.0, 0.0
    Trainer(cfg, tmp_path / "plane", progress=False).fit_collection(collection)
    plane = Model(tmp_path / "plane", device="cpu")
    assert plane.centroids.shape[1] == plane.transform.matrix.shape[0] + 8
    assert np.allclose(plane.embed(collection.tensors, collection.acquisitions, raw)[:, -8:-6], 0.0)
    cfg.cluster.plane_weight = 0.0
    Trainer(cfg, tmp_path / "off", progress=False).fit_collection(collection)
    off = Model(tmp_path / "off", device="cpu")
    assert off.published.structure is None and off.centroids.shape[1] == off.transform.matrix.shape[0]


def test_units_farther_than_the_training_units_are_answered_unknown(collection, tmp_path):
    Trainer(tiny_config(), tmp_path, progress=False).fit(collection.tensors, [u.unit_id for u in collection.units])
    model = Model(tmp_path, device="cpu")
    reference = model.novelty
    table = reference.percentiles
    assert len(table) == 101 and np.all(np.diff(table) >= 0)
    assert len(reference.points) == len(collection.units) and reference.neighbours == 5
    assert model.unknown_threshold == pytest.approx(table[99])  # the default: the 99th percentile
    assert model.info["unknown_threshold"] == model.unknown_threshold
    assert Model(tmp_path, device="cpu", unknown_percentile=99.9).unknown_threshold == pytest.approx(
        0.1 * table[99] + 0.9 * table[100])
    preds = model.predict(collection.tensors, k=2)
    embedded = model.embed(collection.tensors)  # content and series structure
    assert embedded.shape[1] == reference.points.shape[1] == model.centroids.shape[1]
    d2 = ((embedded[:, None] - reference.points[None]) ** 2).sum(-1)
    expected = np.sort(d2, axis=1)[:, :5].mean(axis=1)  # mean squared distance to the 5 nearest training units
    for p, score in zip(preds, expected):
        assert p.novelty == pytest.approx(score, rel=1e-4, abs=1e-5)
        assert p.novel == (p.novelty > model.unknown_threshold)
        assert p.category == ("unknown" if p.novel else model.category(p.cluster))
        assert p.topk[0]["cluster"] == p.cluster and p.topk[0]["category"] == model.category(p.cluster)
    # its own training units, each its own nearest neighbour, are closer than the calibration measured
    # them without their own examination (here each unit is one)
    assert not any(p.novel for p in preds)
    half = Model(tmp_path, device="cpu", unknown_percentile=50)
    assert half.unknown_threshold == pytest.approx(table[50])
    half = half.predict(collection.tensors)
    assert [p.novel for p in half] == [p.novelty > table[50] for p in half]
    far = Model(tmp_path, device="cpu", unknown_percentile=0.5)
    assert sum(p.novel for p in far.predict(collection.tensors)) >= 8
    assert not any(p.novel for p in Model(tmp_path, device="cpu", unknown_percentile=0).predict(collection.tensors))
    with pytest.raises(ValueError, match="unknown_percentile"):
        Model(tmp_path, device="cpu", unknown_percentile=101)

    # a series is unknown when most of its units are; otherwise it keeps its cluster's name
    known = [p for p in half if not p.novel]  # about half at the 50th percentile
    known = [p for p in known if p.cluster == known[0].cluster]
    novel = [p for p in half if p.novel]
    assert series_vote(novel[:2] + known[:1]).category == "unknown" and series_vote(novel[:2] + known[:1]).novel
    mostly_known = series_vote(known[:1] * 2 + novel[:1])
    assert not mostly_known.novel and mostly_known.category == model.category(known[0].cluster)


class Interrupt(Exception):
    pass


def test_interrupted_training_resumes_from_its_checkpoint(collection, tmp_path):
    cfg = tiny_config()
    ids = [u.unit_id for u in collection.units]

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(cfg, tmp_path, progress=False, on_epoch=stop_after_two).fit(collection.tensors, ids)
    assert not (tmp_path / checkpoint.MODEL).exists()  # nothing published by a run that did not end
    saved = checkpoint.load(tmp_path / checkpoint.CHECKPOINT)
    assert saved["epoch"] == 2

    seen = []
    result = Trainer(cfg, tmp_path, progress=False, on_epoch=seen.append).fit(collection.tensors, ids)
    assert [r["epoch"] for r in seen] == [3]  # only the missing epoch ran
    assert result.history[:2] == saved["history"]
    assert (tmp_path / checkpoint.MODEL).is_file()


def test_a_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    (tmp_path / checkpoint.MODEL).write_bytes(b"garbage")
    with pytest.raises(checkpoint.CheckpointError, match="not a DeepMCAT model file"):
        Model(tmp_path, device="cpu")
    checkpoint.save({"format": "deepmcat"}, tmp_path / "x.pt")
    (tmp_path / "x.pt").write_bytes((tmp_path / "x.pt").read_bytes()[:-3] + b"abc")
    with pytest.raises(checkpoint.CheckpointError, match="checksum"):
        checkpoint.load(tmp_path / "x.pt")


def test_uniform_sampling_draws_every_cluster_equally():
    assignments = np.array([0] * 95 + [1] * 4 + [2] * 1)
    picks = uniform_cluster_sample(assignments, 300, np.random.default_rng(0))
    counts = np.bincount(assignments[picks], minlength=3)
    assert list(counts) == [100, 100, 100]


def test_bad_parameters_are_refused(collection, tmp_path):
    cfg = tiny_config()
    cfg.cluster.clusters = 10_000
    with pytest.raises(ValueError, match="cannot make"):
        Trainer(cfg, tmp_path, progress=False).fit(collection.tensors, [u.unit_id for u in collection.units])
    for option, value in (("negatives", "everyone"), ("lr_schedule", "step")):
        cfg = tiny_config()
        setattr(cfg.train, option, value)
        with pytest.raises(ValueError, match=f"unknown {option}"):
            Trainer(cfg, tmp_path / option, progress=False).fit(collection.tensors,
                                                                [u.unit_id for u in collection.units])
        assert not (tmp_path / option / "checkpoint.pt").exists()
    cfg = tiny_config()
    cfg.train.device = "tpu"
    with pytest.raises(ValueError, match="unknown device"):
        Trainer(cfg, tmp_path)


def test_group_contrastive_rewards_aligned_groups():
    import torch

    from deepmcat.losses import group_contrastive

    torch.manual_seed(0)
    base = torch.randn(4, 16)
    groups = torch.tensor([0, 0, 1, 1])
    aligned = group_contrastive(base[[0, 0, 2, 2]], base[[0, 0, 2, 2]], groups)
    mixed = group_contrastive(base[[0, 2, 0, 2]], base[[0, 2, 0, 2]], groups)
    assert aligned < mixed
    singletons = group_contrastive(base, base + 0.01, torch.arange(4))
    assert torch.isfinite(singletons) and singletons < mixed


def test_acquisition_level_clustering_keeps_rare_acquisition_types():
    from deepmcat.clustering import fit_clusters
    from deepmcat.config import ClusterConfig

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3
    feats, groups, truth = [], [], []
    for acq in range(30):  # type 0: 10 stacks of 20 slices that drift; types 1, 2: 10 single images each
        kind = 0 if acq < 10 else 1 + acq % 2
        n = 20 if kind == 0 else 1
        drift = np.linspace(-2, 2, n)[:, None] * np.eye(8)[0] if kind == 0 else 0
        feats.append(centres[kind] + drift + rng.normal(0, 0.3, (n, 8)))
        groups += [acq] * n
        truth += [kind] * n
    feats, groups, truth = np.concatenate(feats).astype(np.float32), np.array(groups), np.array(truth)
    _, result = fit_clusters(feats, 3, ClusterConfig(pca_dim=8, nredo=3), groups=groups)
    for g in np.unique(groups):  # one acquisition, one cluster
        assert len(set(result.assignments[groups == g])) == 1
    from deepmcat.metrics import evaluate

    assert evaluate(truth, result.assignments)["worst_recall"] == 1.0


def test_clinicians_labels_keep_categories_apart_that_the_features_put_together():
    """Three blobs: unlabelled, k-means finds them. Two acquisitions of one blob labelled as different
    categories then land in different clusters, and every labelled acquisition in its category's."""
    from deepmcat.clustering import fit_clusters
    from deepmcat.config import ClusterConfig

    rng = np.random.default_rng(1)
    centres = np.array([[5, 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 0]], float)
    feats = np.concatenate([c + rng.normal(0, 0.3, (15, 4)) for c in centres]).astype(np.float32)
    groups = np.arange(45)
    cfg = ClusterConfig(pca_dim=4, nredo=3, whiten=False)
    _, plain = fit_clusters(feats, 3, cfg, groups=groups)
    assert all(len(set(plain.assignments[b * 15:(b + 1) * 15])) == 1 for b in range(3))
    labels = [None] * 45
    labels[0], labels[1], labels[7] = "cine_sax", "cine_sax", "tagging_sax"
    labels[20] = "cine_4ch"
    _, seeded = fit_clusters(feats, 3, cfg, groups=groups, labels=labels)
    a = seeded.assignments
    assert a[0] == a[1] != a[7] and a[20] not in (a[0], a[7])


def test_study_negatives_ignore_other_studies_and_fall_back_to_the_batch():
    import torch

    from deepmcat.losses import group_contrastive

    torch.manual_seed(0)
    z = torch.randn(4, 16)
    groups = torch.arange(4)
    studies = torch.tensor([0, 0, 1, 1])
    # rotate study 1's embeddings: similarities inside each study stay, those across studies change
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    rotated = torch.cat([z[:2], z[2:] @ q])
    assert torch.isclose(group_contrastive(rotated, rotated, groups, studies=studies),
                         group_contrastive(z, z, groups, studies=studies), atol=1e-5)
    assert not torch.isclose(group_contrastive(rotated, rotated, groups), group_contrastive(z, z, groups),
                             atol=1e-3)
    # each unit alone in its study: every anchor falls back to the whole batch
    assert torch.isclose(group_contrastive(z, z, groups, studies=torch.arange(4)), group_contrastive(z, z, groups))


def test_units_are_assigned_with_their_acquisition():
    from deepmcat.clustering import FeatureTransform, embed_units

    transform = FeatureTransform(np.eye(2, dtype=np.float32), np.zeros(2, np.float32))
    feats = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    mixed = embed_units(transform, feats, ["a", "a", "a", "b"], 0.5)
    assert np.allclose(mixed[3], [0, 1])  # alone in its acquisition: unchanged
    assert np.allclose(mixed[0], 0.5 * np.array([1, 0]) + 0.5 * transform(feats[:3].mean(0, keepdims=True))[0])
    assert np.allclose(embed_units(transform, feats, None, 0.5), transform(feats))
    assert np.allclose(embed_units(transform, feats, ["a", "a", "a", "b"], 0.0), transform(feats))


def test_a_strided_stem_keeps_feature_map_sizes_at_a_quarter_of_the_stem_work():
    import torch

    from deepmcat.config import ModelConfig
    from deepmcat.model import DeepMCATNet

    x = torch.rand(2, 8, 64, 64)
    pooled, strided = DeepMCATNet(8, ModelConfig()), DeepMCATNet(8, ModelConfig(stem_stride=2))
    stem = {name: [] for name in ("pooled", "strided")}
    for name, net in (("pooled", pooled), ("strided", strided)):
        net.backbone.layer1.register_forward_hook(lambda m, i, o, name=name: stem[name].append(o.shape))
        assert net.features(x).shape == (2, 128)
    assert stem["pooled"] == stem["strided"] == [torch.Size([2, 16, 32, 32])]
    assert strided.backbone.conv1.stride == (2, 2) and strided.backbone.no_max_pool and not pooled.backbone.no_max_pool
    with pytest.raises(ValueError, match="stem_stride"):
        DeepMCATNet(8, ModelConfig(stem_stride=3))


def test_motion_channels_are_each_scales_temporal_spread():
    import torch

    from deepmcat.config import ModelConfig
    from deepmcat.model import DeepMCATNet

    net = DeepMCATNet(16, ModelConfig(motion=True), views=2)
    seen = []
    net.backbone.conv1.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    still = torch.rand(1, 1, 64, 64).repeat(1, 8, 1, 1)
    moving = torch.rand(1, 8, 64, 64)
    assert net.features(torch.cat([still, moving], dim=1)).shape == (1, 128)
    stem_input = seen[0]
    assert net.backbone.conv1.in_channels == 18 and stem_input.shape == (1, 18, 64, 64)
    assert torch.equal(stem_input[:, :16], torch.cat([still, moving], dim=1))
    assert torch.allclose(stem_input[0, 16], torch.zeros(64, 64), atol=1e-6)  # the still scale does not move
    assert torch.allclose(stem_input[0, 17], moving[0].std(dim=0, unbiased=False), atol=1e-6)
    assert DeepMCATNet(8, ModelConfig()).backbone.conv1.in_channels == 8  # off by default
    with pytest.raises(ValueError, match="motion"):
        DeepMCATNet(8, ModelConfig(motion=True, spatial_dims=3))


def test_a_model_published_before_the_centre_crop_existed_reads_one_scale(collection, tmp_path):
    """A model file whose config does not name ``centre_crop`` was trained on the whole field of view only:
    it loads as one scale (today's default, two, would not fit its network), and a config file does not."""
    cfg = tiny_config()
    cfg.preprocess.centre_crop = 0.0
    whole = np.ascontiguousarray(collection.tensors[:, : cfg.preprocess.frames])  # the first scale
    Trainer(cfg, tmp_path, progress=False).fit(whole, [u.unit_id for u in collection.units])
    path = tmp_path / checkpoint.MODEL
    state = checkpoint.load(path)
    del state["config"]["preprocess"]["centre_crop"]
    checkpoint.save(state, path)
    old = Model(tmp_path, device="cpu")
    assert old.config.preprocess.centre_crop == 0.0 and old.config.preprocess.channels == 4
    assert len(old.predict(whole)) == len(whole)
    assert DeepMCATConfig.from_dict(state["config"]).preprocess.centre_crop == 0.5


def test_a_model_whose_novelty_reference_does_not_fit_is_refused(collection, tmp_path):
    from deepmcat.modelfile import load_model, save_model

    Trainer(tiny_config(), tmp_path, progress=False).fit(collection.tensors, [u.unit_id for u in collection.units])
    published = load_model(tmp_path)
    published.novelty.points = published.novelty.points[:, :3].copy()
    save_model(tmp_path, published)
    with pytest.raises(checkpoint.CheckpointError, match="novelty reference does not fit"):
        Model(tmp_path, device="cpu")


def test_models_published_before_the_novelty_reference_judge_by_centroid_distance(collection, tmp_path):
    """A model file with the older table (training units' centroid distances at percentiles 0-100) and no
    novelty reference: "unknown" is a content distance to the nearest centroid beyond that table's percentile."""
    from deepmcat.modelfile import load_model, save_model

    Trainer(tiny_config(), tmp_path, progress=False).fit(collection.tensors, [u.unit_id for u in collection.units])
    published = load_model(tmp_path)
    assert published.distance_percentiles is None  # newer models publish the novelty reference instead
    embedded = Model(tmp_path, device="cpu").embed(collection.tensors)
    dims = published.transform.matrix.shape[0]
    distances = ((embedded[:, None, :dims] - published.centroids[None, :, :dims]) ** 2).sum(-1).min(1)
    published.novelty, published.distance_percentiles = None, np.percentile(distances, np.arange(101))
    save_model(tmp_path, published)
    old = Model(tmp_path, device="cpu", unknown_percentile=50)
    assert old.novelty is None and old.unknown_threshold == pytest.approx(np.percentile(distances, 50))
    preds = old.predict(collection.tensors)
    assert [p.novelty for p in preds] == pytest.approx([p.distance for p in preds])
    assert [p.novel for p in preds] == [p.distance > old.unknown_threshold for p in preds]
    assert 8 <= sum(p.novel for p in preds) <= 16
