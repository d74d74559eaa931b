"""The DeepMCAT training loop (DeepCluster alternation with a contrastive warm-up and term).

Each epoch: extract features of every unit → PCA (+whitening) → L2 → faiss k-means into pseudo-labels →
re-initialise the cluster head → train on pseudo-labels, sampling clusters uniformly so small categories
survive, plus a contrastive term between two augmented views of each unit that keeps the representation
from memorising arbitrary pseudo-labels on small collections. A checkpoint after every epoch lets an
interrupted run resume; the model is published (atomically) only when training ends.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import normalized_mutual_info_score
from tqdm import tqdm

from deepmcat import checkpoint
from deepmcat.cache import RowView
from deepmcat.augment import augment
from deepmcat.clustering import (confidence_temperature, embed_units, fit_clusters,
                                  squared_distances)
from deepmcat.config import DeepMCATConfig
from deepmcat.data import Collection
from deepmcat.distributed import Ranks
from deepmcat.features import autocast, device_name, extract_features, resolve_device
from deepmcat.losses import group_contrastive
from deepmcat.metrics import evaluate
from deepmcat.model import DeepMCATNet
from deepmcat.novelty import NoveltyReference, fit_reference
from deepmcat.modelfile import PublishedModel, TrainingState, load_checkpoint, save_checkpoint, save_model
from deepmcat.sampling import grouped_order, uniform_cluster_sample
from deepmcat.structure import StructureScale, fit_structure

log = logging.getLogger(__name__)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class JointOptimizer:
    """Steps the persistent backbone optimizer and the per-epoch head optimizer together."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()


@dataclass
class TrainResult:
    model_path: Path
    assignments: np.ndarray
    history: list[dict]


def fingerprint(unit_ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(unit_ids).encode()).hexdigest()[:16]


@dataclass
class TrainingData:
    """What a run trains on: canonical tensors and, per unit, integer ids derived from the headers (its
    acquisition, its examination) and from clinicians' labels (its contrastive group)."""

    #: in memory, or read from the cache batch by batch (:class:`deepmcat.cache.RowView`)
    tensors: np.ndarray | RowView
    unit_ids: list[str]
    #: the acquisition (series and image type) of each unit: one point for k-means, one cluster at the end
    acquisition_ids: np.ndarray
    #: the examination of each unit: an anchor's contrastive negatives come from its own examination
    study_ids: np.ndarray
    #: contrastive positives share an id: the units of one acquisition, or of one clinician's category
    contrast_ids: np.ndarray
    #: each unit's clinician category (None where unlabelled); None when no unit is labelled
    categories: list[str | None] | None
    #: the units and labels, so that a checkpoint of other data is not resumed
    fingerprint: str
    #: each unit's series structure (:func:`deepmcat.structure.series_structure`), for the final clustering; None
    #: when not known
    structure: np.ndarray | None = None

    @classmethod
    def build(cls, tensors: np.ndarray | RowView, unit_ids: Sequence[str], acquisitions: Sequence[str] | None,
              studies: Sequence[str] | None, categories: Sequence[str | None] | None,
              structure: np.ndarray | None = None) -> "TrainingData":
        n = len(tensors)
        if categories is not None and len(categories) != n:
            raise ValueError(f"{len(categories)} labels for {n} units")
        if structure is not None and len(structure) != n:
            raise ValueError(f"series structure of {len(structure)} units for {n} units")
        acquisitions = list(acquisitions) if acquisitions is not None else list(unit_ids)
        per_unit = list(categories) if categories is not None else [None] * n
        contrast = [f"label:{c}" if c else f"acq:{a}" for a, c in zip(acquisitions, per_unit)]
        stamp = unit_ids if categories is None else [f"{u}={c or ''}" for u, c in zip(unit_ids, categories)]
        return cls(tensors, list(unit_ids), _ids(acquisitions), _ids(studies if studies is not None else unit_ids),
                   _ids(contrast), per_unit if any(per_unit) else None, fingerprint(stamp), structure)


def _ids(keys: Sequence[str]) -> np.ndarray:
    return np.unique(list(keys), return_inverse=True)[1]


@dataclass
class Run:
    """The state one run carries from epoch to epoch (what a checkpoint saves)."""

    net: DeepMCATNet
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator
    gen: torch.Generator
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    pseudo_labels: np.ndarray | None = None


class Trainer:
    """Runs DeepMCAT on canonical tensors; writes ``checkpoint.pt`` every epoch and ``model.pt`` at the end."""

    def __init__(self, cfg: DeepMCATConfig, out_dir: str | Path, progress: bool = True,
                 on_epoch: Callable[[dict], None] | None = None, ranks: Ranks = Ranks()):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.ranks = ranks  # torch.distributed ranks (see deepmcat.distributed); one process by default
        self.progress = progress and ranks.is_main
        self.on_epoch = on_epoch
        self.device = resolve_device(cfg.train.device)
        self.seen_units: set[int] = set()  # units whose features this rank extracted (published)

    # ---------------------------------------------------------------------------------------------- fit

    def fit(self, tensors: np.ndarray | RowView, unit_ids: Sequence[str], truth: Sequence[str] | None = None,
            resume: bool = True, acquisitions: Sequence[str] | None = None, studies: Sequence[str] | None = None,
            categories: Sequence[str | None] | None = None, structure: np.ndarray | None = None) -> TrainResult:
        """Train on ``tensors`` (n, frames, size, size).

        ``acquisitions`` and ``studies`` (one key per unit) come from the headers and shape the contrastive
        term; ``truth`` (optional) is only monitored, never used for training. ``categories`` (optional, None
        for unlabelled units) are clinicians' labels: units carrying the same one are contrastive positives
        across studies, and every clustering starts from one centroid per labelled category (seeded k-means).
        ``structure`` (optional: :func:`deepmcat.structure.series_structure` of the units) joins the final
        clustering.
        """
        self._check(tensors)
        data = TrainingData.build(tensors, unit_ids, acquisitions, studies, categories, structure)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        run = self._start(data, resume)
        total = self.cfg.train.warmup_epochs + self.cfg.train.epochs
        epochs = tqdm(range(run.epoch, total), desc="DeepMCAT epochs", initial=run.epoch, total=total,
                      disable=not self.progress)
        for epoch in epochs:
            record = self._train_one_epoch(run, data, epoch)
            if truth is not None:
                record.update(self._monitor(run.net, data, truth, epoch))
            run.history.append(record)
            run.epoch = epoch + 1
            epochs.set_postfix({k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items()
                                if k in ("loss", "nmi_prev", "nmi")})
            if self.ranks.is_main:
                self._save_checkpoint(run, data)
                if self.on_epoch:
                    self.on_epoch(dict(record, total_epochs=total))
            self.ranks.barrier()
        return self._publish(run, data)

    def fit_collection(self, collection: Collection, truth: Sequence[str] | None = None, resume: bool = True,
                       categories: Sequence[str | None] | None = None) -> TrainResult:
        """:meth:`fit` on a loaded collection, with acquisitions and studies taken from its units' headers."""
        units = collection.units
        return self.fit(collection.tensors, [u.unit_id for u in units], truth, resume=resume,
                        acquisitions=collection.acquisitions, studies=[u.study for u in units],
                        categories=categories, structure=collection.structure)

    def _check(self, tensors: np.ndarray | RowView) -> None:
        """Refuse bad data or settings before anything is written."""
        cfg, t = self.cfg, self.cfg.train
        n = len(tensors)
        if n < 4:
            raise ValueError(f"training needs at least 4 units, got {n}")
        if cfg.cluster.clusters > n:
            raise ValueError(f"cannot make {cfg.cluster.clusters} clusters of {n} units")
        if t.negatives not in ("study", "batch"):
            raise ValueError(f"unknown negatives {t.negatives!r}: use study or batch")
        self._lr(0)  # raises on an unknown schedule
        if tensors.shape[1:] != (cfg.preprocess.channels, cfg.preprocess.size, cfg.preprocess.size):
            raise ValueError(f"tensors of shape {tensors.shape[1:]} do not match the preprocessing config")

    def _start(self, data: TrainingData, resume: bool) -> Run:
        """A fresh, seeded run, continued from the folder's checkpoint when it was made with the same data and
        settings."""
        t = self.cfg.train
        torch.manual_seed(t.seed)
        rng = np.random.default_rng(t.seed)
        gen = torch.Generator().manual_seed(t.seed)
        net = DeepMCATNet(self.cfg.preprocess.channels, self.cfg.model, self._k_train(data),
                          self.cfg.preprocess.views).to(self.device)
        body = [p for name, p in net.named_parameters() if not name.startswith("head.")]
        run = Run(net, self._optimizer(body), rng, gen)
        saved = load_checkpoint(self.out_dir, map_location=self.device) if resume else None
        if saved is None:
            return run
        if saved.fingerprint != data.fingerprint or saved.config != self.cfg.to_dict():
            log.warning("ignoring the checkpoint in %s: it was made with other data or settings", self.out_dir)
            return run
        net.load_state_dict(saved.net)
        run.optimizer.load_state_dict(saved.optimizer)
        run.epoch, run.history, run.pseudo_labels = saved.epoch, saved.history, saved.pseudo_labels
        rng.bit_generator.state = saved.numpy_rng
        gen.set_state(saved.torch_rng)
        log.info("resuming from epoch %d of %d (%s)", saved.epoch, t.warmup_epochs + t.epochs, self.out_dir)
        return run

    def _save_checkpoint(self, run: Run, data: TrainingData) -> None:
        save_checkpoint(self.out_dir, TrainingState(
            self.cfg.to_dict(), data.fingerprint, run.epoch, run.net.state_dict(), run.optimizer.state_dict(),
            run.history, run.pseudo_labels, run.rng.bit_generator.state, run.gen.get_state()))

    def _k_train(self, data: TrainingData) -> int:
        return self.cfg.cluster.n_train_clusters(len(data.tensors))

    # -------------------------------------------------------------------------------------------- epochs

    def _train_one_epoch(self, run: Run, data: TrainingData, epoch: int) -> dict:
        """A contrastive warm-up epoch, or a DeepCluster epoch: cluster the features into pseudo-labels, give
        the network a fresh head, train on the pseudo-labels with the contrastive term."""
        t = self.cfg.train
        tic = time.time()
        record: dict = {"epoch": epoch + 1, "lr": self._lr(epoch)}
        set_lr(run.optimizer, record["lr"])
        if epoch < t.warmup_epochs:
            record["stage"] = "warm-up"
            record["loss"] = self._train_pass(run, data, grouped_order(data.study_ids, run.rng), None,
                                              run.optimizer, f"warm-up {epoch + 1}")
        else:
            record["stage"] = "cluster"
            k_train = self._k_train(data)
            _, result = self._cluster(self._features(run.net, data.tensors), k_train, data, seed=t.seed + epoch)
            pseudo_labels = result.assignments
            if run.pseudo_labels is not None:
                record["nmi_prev"] = float(normalized_mutual_info_score(run.pseudo_labels, pseudo_labels))
            record["empty_clusters"] = result.empty_clusters
            run.pseudo_labels = pseudo_labels
            run.net.reset_head(k_train)
            head_optimizer = self._optimizer(run.net.head.parameters())  # full rate: the fresh head must fit now
            n = len(data.tensors)
            order = uniform_cluster_sample(pseudo_labels, n, run.rng) if t.uniform_sampling else run.rng.permutation(n)
            record["loss"] = self._train_pass(run, data, order, pseudo_labels,
                                              JointOptimizer(run.optimizer, head_optimizer), f"epoch {epoch + 1}")
        record["seconds"] = round(time.time() - tic, 2)
        return record

    def _train_pass(self, run: Run, data: TrainingData, order: np.ndarray, pseudo_labels: np.ndarray | None,
                    optimizer, desc: str) -> float:
        """One pass over ``order``: two augmented views of every batch, the contrastive term, and the
        pseudo-label cross-entropy when ``pseudo_labels`` are given. Returns the mean loss."""
        net = self._parallel(run.net)
        net.train()
        losses = []
        bar = tqdm(self._batches(order), desc=desc, leave=False, disable=not self.progress)
        for idx in bar:
            x = torch.from_numpy(data.tensors[idx]).to(self.device, non_blocking=True)
            v1, v2 = self._views(x, run.gen)
            with autocast(self.device, self.cfg.train.amp):
                (_, logits1, z1), (_, logits2, z2) = self._forward(net, v1, v2)
                loss = group_contrastive(z1, z2, torch.from_numpy(data.contrast_ids[idx]).to(self.device),
                                         studies=self._negative_studies(data, idx))
                if pseudo_labels is not None:
                    y = torch.from_numpy(pseudo_labels[idx]).to(self.device)
                    ce = F.cross_entropy(logits1.float(), y) + F.cross_entropy(logits2.float(), y)
                    loss = loss + self.cfg.train.cluster_weight * ce / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        return float(np.mean(losses)) if losses else 0.0

    # --------------------------------------------------------------------------------------------- steps

    def _batches(self, order: np.ndarray) -> list[np.ndarray]:
        """This rank's part of each global batch (``batch_size`` units per rank)."""
        bs = self.cfg.train.batch_size * self.ranks.world
        batches = [self.ranks.split(order[i : i + bs]) for i in range(0, len(order), bs)]
        return [b for b in batches if len(b) > 1]

    def _features(self, net, tensors: np.ndarray | RowView) -> np.ndarray:
        """Backbone features of every unit; with several ranks each extracts its shard and all gather."""
        shard = self.ranks.shard(len(tensors))
        self.seen_units.update(int(i) for i in shard)
        local = extract_features(net, tensors, self.device, self.cfg.train.amp,
                                 indices=shard if self.ranks.active else None)
        return self.ranks.gather_rows(local, len(tensors))

    def _forward(self, net, v1: torch.Tensor, v2: torch.Tensor):
        """Both views through the network: one pass over both under DistributedDataParallel (which expects
        one forward per backward), two passes otherwise."""
        if not self.ranks.active:
            return net(v1), net(v2)
        (_, logits, z) = net(torch.cat([v1, v2]))
        n = len(v1)
        return (None, logits[:n], z[:n]), (None, logits[n:], z[n:])

    def _views(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cfg.train.augment:
            return x, x
        views = self.cfg.preprocess.views
        return augment(x, self.cfg.augment, gen, views), augment(x, self.cfg.augment, gen, views)

    def _negative_studies(self, data: TrainingData, idx: np.ndarray) -> torch.Tensor | None:
        """The study of each unit in a batch when negatives come from the anchor's own study."""
        if self.cfg.train.negatives == "batch":
            return None
        return torch.from_numpy(data.study_ids[idx]).to(self.device)

    def _cluster(self, features: np.ndarray, k: int, data: TrainingData, seed: int,
                 structure: np.ndarray | None = None, final: bool = False):
        """PCA + clustering (k-means; ``final``: the categories' method) on rank 0, its result broadcast to the
        other ranks."""
        result = None
        if self.ranks.is_main:
            result = fit_clusters(features, k, self.cfg.cluster, seed=seed, groups=data.acquisition_ids,
                                  labels=data.categories, structure=structure, final=final)
        return self.ranks.broadcast(result)

    def _structure(self, data: TrainingData) -> tuple[StructureScale | None, np.ndarray | None]:
        """The structure coordinates' scale (fitted on the acquisitions) and each unit's scaled coordinates,
        for the final clustering only: pseudo-labels stay what the network can learn from pixels."""
        c = self.cfg.cluster
        return fit_structure(data.structure, data.acquisition_ids, c.structure_weight, c.plane_weight,
                             c.structure_depth_cap, c.pair_weight, c.static_weight)

    def _parallel(self, net: DeepMCATNet):
        """The network as DistributedDataParallel when there are several ranks (rebuilt whenever the head is
        re-initialised, which also makes every rank start from rank 0's head)."""
        if not self.ranks.active:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids, find_unused_parameters=True)

    def _lr(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (0-based): a function of the epoch alone, so a resumed run continues
        the same schedule."""
        t = self.cfg.train
        if t.lr_schedule == "constant":
            return t.lr
        if t.lr_schedule != "cosine":
            raise ValueError(f"unknown lr_schedule {t.lr_schedule!r}: use cosine or constant")
        return t.lr * 0.5 * (1 + math.cos(math.pi * epoch / (t.warmup_epochs + t.epochs)))

    def _optimizer(self, params) -> torch.optim.Optimizer:
        t = self.cfg.train
        if t.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        if t.optimizer != "sgd":
            raise ValueError(f"unknown optimizer {t.optimizer!r}: use sgd or adamw")
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)

    # ------------------------------------------------------------------------------------------ results

    def _monitor(self, net, data: TrainingData, truth: Sequence[str], epoch: int) -> dict:
        """Quality against ground truth at K categories (only watched, never used for training)."""
        features = self._features(net, data.tensors)
        _, result = self._cluster(features, self.cfg.cluster.clusters, data, seed=self.cfg.train.seed + epoch,
                                  structure=self._structure(data)[1], final=True)
        scores = evaluate(list(truth), result.assignments)
        return {k: scores[k] for k in ("purity", "nmi", "ari", "acc")}

    def _novelty(self, embedded: np.ndarray, data: TrainingData, content_dims: int) -> NoveltyReference:
        """The "unknown" reference, calibrated against other examinations (other acquisitions when the
        collection is a single examination); ``embedded``'s first ``content_dims`` columns are the content."""
        groups = data.study_ids if len(np.unique(data.study_ids)) > 1 else data.acquisition_ids
        c = self.cfg.cluster
        return fit_reference(embedded, groups, c.unknown_neighbours, c.unknown_reference, seed=self.cfg.train.seed,
                             content_dims=content_dims, structure_scale=c.unknown_structure_scale)

    def _publish(self, run: Run, data: TrainingData) -> TrainResult:
        """Final clustering into K categories and the atomic publication of ``model.pt``."""
        cfg = self.cfg
        features = self._features(run.net, data.tensors)
        scale, coordinates = self._structure(data)
        transform, result = self._cluster(features, cfg.cluster.clusters, data, seed=cfg.train.seed,
                                          structure=coordinates, final=True)
        seen = self.ranks.gather_objects(sorted(self.seen_units))
        embedded = embed_units(transform, features, data.acquisition_ids, cfg.cluster.acquisition_weight,
                               coordinates)
        d2 = squared_distances(embedded, result.centroids)
        assignments = d2.argmin(axis=1)  # what inference gives each unit
        published = PublishedModel(
            config=cfg, net={k: v.cpu() for k, v in run.net.state_dict().items() if not k.startswith("head.")},
            transform=transform, centroids=result.centroids, temperature=confidence_temperature(d2),
            trained_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), n_units=len(data.tensors),
            fingerprint=data.fingerprint, unit_ids=data.unit_ids, assignments=assignments, history=run.history,
            distributed={"world": self.ranks.world, "units_by_rank": seen}, trained_on=device_name(self.device),
            labels=dict(Counter(c for c in data.categories or [] if c)),
            structure=scale, novelty=self._novelty(embedded, data, transform.matrix.shape[0]))
        path = save_model(self.out_dir, published) if self.ranks.is_main else self.out_dir / checkpoint.MODEL
        self.ranks.barrier()
        return TrainResult(path, assignments, run.history)
