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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import normalized_mutual_info_score
from tqdm import tqdm

from deepmcat import __version__, checkpoint
from deepmcat.augment import augment
from deepmcat.clustering import embed_units, fit_clusters, squared_distances
from deepmcat.config import DeepMCATConfig
from deepmcat.data import Collection
from deepmcat.distributed import Ranks
from deepmcat.metrics import evaluate
from deepmcat.model import DeepMCATNet

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed); a no-op on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


@torch.no_grad()
def extract_features(net: DeepMCATNet, tensors: np.ndarray, device: torch.device, amp: bool = True,
                     batch_size: int = 256) -> np.ndarray:
    net.eval()
    out = []
    for start in range(0, len(tensors), batch_size):
        x = torch.from_numpy(tensors[start : start + batch_size]).to(device, non_blocking=True)
        with autocast(device, amp):
            out.append(net.features(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.feature_dim), np.float32)


def group_contrastive(z1: torch.Tensor, z2: torch.Tensor, groups: torch.Tensor, temperature: float = 0.2,
                      studies: torch.Tensor | None = None) -> torch.Tensor:
    """Contrastive loss over two views of a batch where every view of the same *group* is a positive.

    Groups are acquisition groups (units of one DICOM series with one image type: the slices of a short-axis
    stack, the planes of a scout), known from the headers without any label. With every unit its own group
    this is SimCLR's NT-Xent; with series groups it is the supervised-contrastive form (Khosla et al. 2020)
    fed by DICOM structure, which makes features invariant to slice position within an acquisition.

    With ``studies``, an anchor's negatives are only the other acquisitions of its own study (examination):
    those are other categories, while another subject's acquisition may well be the same category, and
    pushing it away would teach patient identity instead of category.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    g = torch.cat([groups, groups])
    sim = z @ z.t() / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    positives = (g[:, None] == g[None, :]) & ~self_mask
    if studies is not None:  # negatives only from the anchor's own study, where it has any in this batch
        s = torch.cat([studies, studies])
        same = s[:, None] == s[None, :]
        has_negatives = (same & ~positives & ~self_mask).any(dim=1, keepdim=True)
        sim = sim.masked_fill(has_negatives & ~same & ~positives, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -(log_prob.masked_fill(~positives, 0).sum(1) / positives.sum(1)).mean()


def grouped_order(studies: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation that keeps each study's units together (shuffled inside), studies in random order.

    Batches then hold several acquisitions of the same subject, so the contrastive term must tell them apart
    by what differs between categories rather than by the subject's anatomy.
    """
    order = []
    for study in rng.permutation(np.unique(studies)):
        order.append(rng.permutation(np.flatnonzero(studies == study)))
    return np.concatenate(order)


def uniform_cluster_sample(assignments: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices drawn so that every non-empty cluster is equally represented (DeepCluster's sampler)."""
    clusters = [np.flatnonzero(assignments == c) for c in np.unique(assignments)]
    per = int(np.ceil(n / len(clusters)))
    picks = [rng.choice(m, per, replace=len(m) < per) for m in clusters]
    return rng.permutation(np.concatenate(picks))[:n]


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
        self.groups: np.ndarray | None = None  # acquisition id of each unit, set by fit()
        self.labels: list[str | None] | None = None  # clinicians' category of each unit, set by fit()
        self.study_ids: np.ndarray | None = None  # examination of each unit, set by fit()

    # -------------------------------------------------------------------------------------------- steps

    def _batches(self, order: np.ndarray) -> list[np.ndarray]:
        """This rank's part of each global batch (``batch_size`` units per rank)."""
        bs = self.cfg.train.batch_size * self.ranks.world
        batches = [self.ranks.split(order[i : i + bs]) for i in range(0, len(order), bs)]
        return [b for b in batches if len(b) > 1]

    def _features(self, net, tensors: np.ndarray) -> np.ndarray:
        """Backbone features of every unit; with several ranks each extracts its shard and all gather."""
        shard = self.ranks.shard(len(tensors))
        self.seen_units.update(int(i) for i in shard)
        local = extract_features(net, tensors[shard], self.device, self.cfg.train.amp)
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
        return augment(x, generator=gen), augment(x, generator=gen)

    def _train_pass(self, net, optimizer, tensors, order, labels, groups, gen, desc) -> float:
        net.train()
        losses = []
        bar = tqdm(self._batches(order), desc=desc, leave=False, disable=not self.progress)
        for idx in bar:
            x = torch.from_numpy(tensors[idx]).to(self.device, non_blocking=True)
            v1, v2 = self._views(x, gen)
            with autocast(self.device, self.cfg.train.amp):
                (_, logits1, z1), (_, logits2, z2) = self._forward(net, v1, v2)
                loss = group_contrastive(z1, z2, torch.from_numpy(groups[idx]).to(self.device),
                                         studies=self._negative_studies(idx))
                if labels is not None:
                    y = torch.from_numpy(labels[idx]).to(self.device)
                    ce = F.cross_entropy(logits1.float(), y) + F.cross_entropy(logits2.float(), y)
                    loss = loss + self.cfg.train.cluster_weight * ce / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        return float(np.mean(losses)) if losses else 0.0

    def _negative_studies(self, idx: np.ndarray) -> torch.Tensor | None:
        """The study of each unit in a batch when negatives come from the anchor's own study."""
        if self.cfg.train.negatives == "batch":
            return None
        return torch.from_numpy(self.study_ids[idx]).to(self.device)

    def _cluster(self, features: np.ndarray, k: int, seed: int):
        """PCA + k-means on rank 0, its result broadcast to the other ranks."""
        result = None
        if self.ranks.is_main:
            result = fit_clusters(features, k, self.cfg.cluster, seed=seed, groups=self.groups, labels=self.labels)
        return self.ranks.broadcast(result)

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

    # ---------------------------------------------------------------------------------------------- fit

    def fit(self, tensors: np.ndarray, unit_ids: Sequence[str], truth: Sequence[str] | None = None,
            resume: bool = True, groups: Sequence[str] | None = None, studies: Sequence[str] | None = None,
            labels: Sequence[str | None] | None = None) -> TrainResult:
        """Train on ``tensors`` (n, frames, size, size).

        ``groups`` (acquisition of each unit) and ``studies`` (its examination) come from the headers and
        shape the contrastive term; ``truth`` (optional) is only monitored, never used for training.
        ``labels`` (optional, None for unlabelled units) are clinicians' categories: the contrastive term
        treats all units carrying the same label as positives of each other, across studies, and every
        clustering starts from one centroid per labelled category (seeded k-means).
        """
        cfg, t = self.cfg, self.cfg.train
        n = len(tensors)
        if n < 4:
            raise ValueError(f"training needs at least 4 units, got {n}")
        if cfg.cluster.clusters > n:
            raise ValueError(f"cannot make {cfg.cluster.clusters} clusters of {n} units")
        if t.negatives not in ("study", "batch"):
            raise ValueError(f"unknown negatives {t.negatives!r}: use study or batch")
        self._lr(0)  # refuses an unknown schedule before anything is written
        if tensors.shape[1:] != (cfg.preprocess.frames, cfg.preprocess.size, cfg.preprocess.size):
            raise ValueError(f"tensors of shape {tensors.shape[1:]} do not match the preprocessing config")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.seen_units: set[int] = set()
        acquisitions = list(groups) if groups is not None else list(unit_ids)
        self.groups = np.unique(acquisitions, return_inverse=True)[1]
        if labels is not None and len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} units")
        self.labels = list(labels) if labels is not None and any(labels) else None
        contrast = [f"label:{lab}" if lab else f"acq:{acq}" for acq, lab in zip(acquisitions, labels or [None] * n)]
        group_ids = np.unique(contrast, return_inverse=True)[1]
        study_ids = np.unique(list(studies) if studies is not None else list(unit_ids), return_inverse=True)[1]
        self.study_ids = study_ids
        torch.manual_seed(t.seed)
        rng = np.random.default_rng(t.seed)
        gen = torch.Generator().manual_seed(t.seed)
        k_train = cfg.cluster.n_train_clusters(n)
        net = DeepMCATNet(cfg.preprocess.frames, cfg.model, k_train).to(self.device)
        body = [p for name, p in net.named_parameters() if not name.startswith("head.")]
        optimizer = self._optimizer(body)
        total = t.warmup_epochs + t.epochs
        history: list[dict] = []
        prev: np.ndarray | None = None
        start_epoch = 0
        fp = fingerprint(unit_ids if labels is None else [f"{u}={lab or ''}" for u, lab in zip(unit_ids, labels)])

        ckpt_path = self.out_dir / checkpoint.CHECKPOINT
        if resume and ckpt_path.exists():
            state = checkpoint.load(ckpt_path, map_location=self.device)
            if state.get("fingerprint") == fp and state.get("config") == cfg.to_dict():
                net.load_state_dict(state["net"])
                optimizer.load_state_dict(state["optimizer"])
                history, start_epoch = state["history"], state["epoch"]
                prev = None if state["assignments"] is None else np.asarray(state["assignments"])
                rng.bit_generator.state = state["numpy_rng"]
                gen.set_state(state["torch_rng"])
                log.info("resuming from epoch %d of %d (%s)", start_epoch, total, ckpt_path)
            else:
                log.warning("ignoring %s: it was made with other data or settings", ckpt_path)

        epochs = tqdm(range(start_epoch, total), desc="DeepMCAT epochs", initial=start_epoch, total=total,
                      disable=not self.progress)
        for epoch in epochs:
            tic = time.time()
            record: dict = {"epoch": epoch + 1, "lr": self._lr(epoch)}
            set_lr(optimizer, record["lr"])
            if epoch < t.warmup_epochs:
                record["stage"] = "warm-up"
                record["loss"] = self._train_pass(self._parallel(net), optimizer, tensors,
                                                  grouped_order(study_ids, rng), None, group_ids, gen,
                                                  f"warm-up {epoch + 1}")
            else:
                record["stage"] = "cluster"
                feats = self._features(net, tensors)
                _, result = self._cluster(feats, k_train, seed=t.seed + epoch)
                labels = result.assignments
                if prev is not None:
                    record["nmi_prev"] = float(normalized_mutual_info_score(prev, labels))
                record["empty_clusters"] = result.empty_clusters
                prev = labels
                net.reset_head(k_train)
                head_opt = self._optimizer(net.head.parameters())  # full rate: the fresh head must fit this epoch
                order = uniform_cluster_sample(labels, n, rng) if t.uniform_sampling else rng.permutation(n)

                record["loss"] = self._train_pass(self._parallel(net), JointOptimizer(optimizer, head_opt), tensors,
                                                  order, labels, group_ids, gen, f"epoch {epoch + 1}")
            if truth is not None:
                record.update(self._monitor(net, tensors, truth, epoch))
            record["seconds"] = round(time.time() - tic, 2)
            history.append(record)
            epochs.set_postfix({k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items()
                                if k in ("loss", "nmi_prev", "nmi")})
            if self.ranks.is_main:
                checkpoint.save({
                    "format": "deepmcat", "kind": "checkpoint", "version": __version__, "config": cfg.to_dict(),
                    "fingerprint": fp, "epoch": epoch + 1, "net": net.state_dict(),
                    "optimizer": optimizer.state_dict(), "history": history, "assignments": prev,
                    "numpy_rng": rng.bit_generator.state, "torch_rng": gen.get_state(),
                }, ckpt_path)
                if self.on_epoch:
                    self.on_epoch(dict(record, total_epochs=total))
            self.ranks.barrier()
        return self._publish(net, tensors, unit_ids, history, fp)

    def fit_collection(self, collection: Collection, truth: Sequence[str] | None = None, resume: bool = True,
                       labels: Sequence[str | None] | None = None) -> TrainResult:
        """:meth:`fit` on a loaded collection, with acquisitions and studies taken from its units' headers."""
        units = collection.units
        return self.fit(collection.tensors, [u.unit_id for u in units], truth, resume=resume,
                        groups=collection.acquisitions, studies=[u.study for u in units], labels=labels)

    def _monitor(self, net, tensors, truth, epoch) -> dict:
        feats = self._features(net, tensors)
        _, result = self._cluster(feats, self.cfg.cluster.clusters, seed=epoch)
        scores = evaluate(list(truth), result.assignments)
        return {k: scores[k] for k in ("purity", "nmi", "ari", "acc")}

    def _publish(self, net, tensors, unit_ids, history, fp) -> TrainResult:
        """Final clustering into K categories and the atomic publication of ``model.pt``."""
        cfg = self.cfg
        feats = self._features(net, tensors)
        transform, result = self._cluster(feats, cfg.cluster.clusters, seed=cfg.train.seed)
        seen = self.ranks.gather_objects(sorted(self.seen_units))
        embedded = embed_units(transform, feats, self.groups, cfg.cluster.acquisition_weight)
        d2 = squared_distances(embedded, result.centroids)
        result.assignments = d2.argmin(axis=1)  # what inference gives each unit
        temperature = float(np.mean(d2.min(axis=1))) + 1e-6
        state = {
            "format": "deepmcat", "kind": "model", "version": __version__, "config": cfg.to_dict(),
            "net": {k: v.cpu() for k, v in net.state_dict().items() if not k.startswith("head.")},
            "transform": transform.state(), "centroids": result.centroids, "temperature": temperature,
            "history": history, "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "n_units": len(tensors), "fingerprint": fp, "unit_ids": list(unit_ids),
            "assignments": result.assignments,
            # which units each rank extracted features of (one list per rank)
            "distributed": {"world": self.ranks.world, "units_by_rank": seen},
        }
        path = self.out_dir / checkpoint.MODEL
        if self.ranks.is_main:
            checkpoint.save(state, path)
        self.ranks.barrier()
        return TrainResult(path, result.assignments, history)
