"""Leave-one-family-out quality (issues 15 and 20): every method on every phantom family, scored alike.

    python benchmarks/families.py [--sets spheroid shell contour torso blob] [--held-out spheroid] [--subjects 40]
                                  [--seeds 0 1 2] [--data-seed 7] [--device auto] [--keep DIR]

The defaults were chosen on the design families (classic, torso; blob since 2026-12-07, when the contour
family was written to be held out; shell since its held-out run that night; the spheroid family was written on
2026-12-08 to be held out);
``--held-out`` names the set(s) nobody tuned on, and the JSON says which is which. Every method is scored by
the same rule at the acquisition level (series × image type, each acquisition's cluster the vote of its
units), with K = the number of categories:

- ``pixels``: canonical tensors as they are → :func:`deepmcat.clustering.fit_clusters` (PCA, whitening when
  there are enough points, the final categories' cut — spectral or k-means, ``cluster.final_method`` — of the
  acquisition means: DeepMCAT's own rule);
- ``random_cnn``: an untrained DeepMCAT network's features → the same ``fit_clusters``;
- ``deepmcat``: trained with the defaults, then scored on what ``predict`` outputs (``predict_rows``).
- ``deepmcat_without_structure``: the same trained networks, their final clustering redone without the slice
  and frame counts of the series structure (:mod:`deepmcat.structure`; the scan plane stays at the model's
  weight): what the counts alone change.

A feature probe separates feature quality from k-means noise: kNN-10 accuracy of each acquisition's category
among the acquisitions of *other* examinations (acquisition = mean feature of its units, PCA + L2 normalised).
Writes ``benchmarks/results/families-<date>.json`` (and a copy into ``$OUT`` when set).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import DATA, generated, machine, save  # noqa: E402
from deepmcat.clustering import FeatureTransform, embed_units, fit_clusters, group_means, squared_distances  # noqa: E402
from deepmcat.config import ClusterConfig, DeepMCATConfig  # noqa: E402
from deepmcat.data import Collection, load_collection  # noqa: E402
from deepmcat.features import extract_features, resolve_device  # noqa: E402
from deepmcat.generate import generate  # noqa: E402
from deepmcat.inference import Model  # noqa: E402
from deepmcat.labels import read_labels, unit_truth  # noqa: E402
from deepmcat.metrics import evaluate  # noqa: E402
from deepmcat.model import DeepMCATNet  # noqa: E402
from deepmcat.predictions import predict_rows  # noqa: E402
from deepmcat.structure import fit_structure  # noqa: E402
from deepmcat.trainer import Trainer  # noqa: E402

#: what each set is: (family, format)
SETS = {"classic": ("classic", "dicom"), "torso": ("torso", "dicom"), "blob": ("blob", "dicom"),
        "contour": ("contour", "dicom"), "shell": ("shell", "dicom"),
        "classic-nifti": ("classic", "nifti"), "torso-nifti": ("torso", "nifti"), "contour-nifti": ("contour", "nifti"),
        "shell-nifti": ("shell", "nifti"), "torso-enhanced": ("torso", "enhanced"),
        "spheroid": ("spheroid", "dicom"), "spheroid-nifti": ("spheroid", "nifti")}


def dataset(name: str, subjects: int, seed: int, balanced: bool = False) -> Path:
    """A generated set of one family and format, made under benchmarks/.data once per generator version."""
    family, fmt = SETS[name]
    return generated(DATA / f"{name}-{'balanced' if balanced else 'imbalanced'}-{subjects}s-seed{seed}",
                     lambda out: generate(out, subjects, seed=seed, balanced=balanced, fmt=fmt, family=family,
                                          progress=False, workers=0), family)


class Scorer:
    """Acquisition-level truth of one collection, and the scores of per-unit clusters against it."""

    def __init__(self, collection: Collection, data: Path, labels: dict[str, str] | None = None):
        self.collection = collection
        truth = unit_truth(collection.units, read_labels(data / "labels.csv") if labels is None else labels, data)
        if truth is None:
            raise ValueError(f"{data}: the labels do not cover every unit")
        self.unit_truth = truth
        self.keys = sorted({u.acquisition for u in collection.units})
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.groups = np.array([self.index[u.acquisition] for u in collection.units])
        votes: dict[int, Counter] = defaultdict(Counter)
        for g, category in zip(self.groups, truth):
            votes[g][category] += 1
        self.truth = [votes[g].most_common(1)[0][0] for g in range(len(self.keys))]
        self.studies = [collection.units[int(np.flatnonzero(self.groups == g)[0])].study for g in range(len(self.keys))]

    def score(self, acquisition_clusters: list) -> dict:
        scores = evaluate(self.truth, acquisition_clusters)
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items()}

    def vote(self, unit_clusters: np.ndarray) -> list:
        votes: dict[int, Counter] = defaultdict(Counter)
        for g, c in zip(self.groups, unit_clusters):
            votes[g][int(c)] += 1
        return [votes[g].most_common(1)[0][0] for g in range(len(self.keys))]

    def probe(self, features: np.ndarray, cfg: DeepMCATConfig, k: int = 10) -> float:
        """kNN-k accuracy of acquisition categories, neighbours from other examinations only."""
        means = group_means(features, self.groups)
        x = FeatureTransform.fit(means, cfg.cluster.pca_dim, whiten=False)(means)
        sims = x @ x.T
        studies = np.array(self.studies)
        truth = np.array(self.truth)
        hits = []
        for i in range(len(x)):
            others = np.flatnonzero(studies != studies[i])
            if not len(others):
                continue
            nearest = others[np.argsort(-sims[i, others])[:k]]
            hits.append(Counter(truth[nearest]).most_common(1)[0][0] == truth[i])
        return round(float(np.mean(hits)), 4)


def cluster_scores(scorer: Scorer, features: np.ndarray, cfg: DeepMCATConfig, seed: int) -> dict:
    _, result = fit_clusters(features, cfg.cluster.clusters, cfg.cluster, seed=seed, groups=scorer.groups, final=True)
    return scorer.score(scorer.vote(result.assignments))


def predicted_scores(scorer: Scorer, model: Model, data: Path) -> dict:
    """A trained model scored on what ``predict`` outputs: each acquisition's cluster as ``predict_rows`` gives it."""
    rows = predict_rows(model, scorer.collection, data)
    acquisition_cluster = {r["acquisition"]: int(r["acquisition_cluster"]) for r in rows}
    return scorer.score([acquisition_cluster[k] for k in scorer.keys])


def reclustered_scores(scorer: Scorer, model: Model, features: np.ndarray, weight: float, seed: int,
                       cluster: ClusterConfig | None = None) -> dict:
    """A trained network's final clustering redone with another series-structure weight (and ``cluster``
    settings, the model's by default), assigned and scored as ``predict`` does (units mixed with their
    acquisition, each acquisition's vote): the same network, so a difference is the clustering's alone."""
    collection, cluster = scorer.collection, cluster or model.config.cluster
    stacks = np.unique(collection.acquisitions, return_inverse=True)[1]
    coordinates = fit_structure(collection.structure, stacks, weight, cluster.plane_weight,
                                cluster.structure_depth_cap, cluster.pair_weight, cluster.static_weight)[1]
    transform, result = fit_clusters(features, cluster.clusters, cluster, seed=seed, groups=stacks,
                                     structure=coordinates, final=True)
    embedded = embed_units(transform, features, collection.acquisitions, cluster.acquisition_weight, coordinates)
    return scorer.score(scorer.vote(squared_distances(embedded, result.centroids).argmin(axis=1)))


def run_set(name: str, args, device: torch.device, out: dict, save) -> None:
    """Fill ``out`` with the set's results, calling ``save`` after each step (a cut-off run keeps what it did)."""
    data = dataset(name, args.subjects, args.data_seed)
    cfg = DeepMCATConfig().override(clusters=len(set(read_labels(data / "labels.csv").values())),
                                    device=str(device))
    if args.epochs is not None:
        cfg = cfg.override(warmup_epochs=args.epochs, epochs=1)
    tic = time.time()
    collection = load_collection(data, cfg.preprocess, progress=False, workers=0)
    scorer = Scorer(collection, data)
    n_units, n_acq = len(collection.units), len(scorer.keys)
    print(f"\n{name}: {n_units} units, {n_acq} acquisitions, {len(set(scorer.studies))} examinations, "
          f"K = C = {cfg.cluster.clusters}; rule: {cfg.cluster.final_method} on acquisition means "
          f"({'by acquisition' if cfg.cluster.clusters <= n_acq < n_units else 'by unit'}); "
          f"loaded in {time.time() - tic:.0f}s", flush=True)
    out.update({"units": n_units, "acquisitions": n_acq, "categories": cfg.cluster.clusters,
                "composition": dict(Counter(scorer.truth)), "methods": {}, "probe_knn10": {}})
    pixels = collection.tensors.reshape(n_units, -1)
    out["methods"]["pixels"] = [cluster_scores(scorer, pixels, cfg, s) for s in args.seeds]
    out["probe_knn10"]["pixels"] = scorer.probe(pixels, cfg)
    runs, probes = [], []
    for seed in args.seeds:
        torch.manual_seed(seed)
        net = DeepMCATNet(cfg.preprocess.channels, cfg.model, 8, cfg.preprocess.views).to(device)
        features = extract_features(net, collection.tensors, device, cfg.train.amp)
        runs.append(cluster_scores(scorer, features, cfg, seed))
        probes.append(scorer.probe(features, cfg))
    out["methods"]["random_cnn"], out["probe_knn10"]["random_cnn"] = runs, round(float(np.mean(probes)), 4)
    save()
    runs, probes, plain = [], [], []
    out["methods"]["deepmcat"], out["train_seconds"] = runs, []
    out["methods"]["deepmcat_without_structure"] = plain
    for seed in args.seeds:
        model_dir = args.work / f"{name}-seed{seed}"
        run_cfg = cfg.override(seed=seed)
        tic = time.time()
        Trainer(run_cfg, model_dir, progress=False).fit_collection(collection, resume=False)
        out["train_seconds"].append(round(time.time() - tic, 1))
        model = Model(model_dir, device=str(device))
        runs.append(predicted_scores(scorer, model, data))
        features = extract_features(model.net, collection.tensors, device, cfg.train.amp)
        probes.append(scorer.probe(features, cfg))
        plain.append(reclustered_scores(scorer, model, features, 0.0, seed))
        print(f"  deepmcat seed {seed}: {runs[-1]['purity']:.3f} purity, {runs[-1]['nmi']:.3f} NMI, worst recall "
              f"{runs[-1]['worst_recall']:.2f} ({runs[-1]['worst_recall_category']}), {out['train_seconds'][-1]:.0f}s",
              flush=True)
        out["probe_knn10"]["deepmcat"] = round(float(np.mean(probes)), 4)
        save()


def summary(runs: list[dict]) -> dict:
    return {m: round(float(np.mean([r[m] for r in runs])), 4) for m in ("purity", "nmi", "ari", "worst_recall")} | {
        "worst_recall_min": round(min(r["worst_recall"] for r in runs), 4)}


def table(results: dict) -> str:
    lines = ["| set | held out | method | purity | NMI | ARI | worst recall (mean / min) | kNN-10 probe |",
             "|---|---|---|---|---|---|---|---|"]
    for name, res in results["sets"].items():
        for method, runs in res["methods"].items():
            s = summary(runs)
            lines.append(f"| {name} | {'yes' if name in results['held_out'] else 'no'} | {method} | {s['purity']:.3f} | "
                         f"{s['nmi']:.3f} | {s['ari']:.3f} | {s['worst_recall']:.2f} / {s['worst_recall_min']:.2f} | "
                         f"{res['probe_knn10'].get(method.removesuffix('_without_structure'), float('nan')):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["spheroid", "shell", "contour", "torso", "blob"],
                        choices=sorted(SETS))
    parser.add_argument("--held-out", nargs="*", default=["spheroid", "spheroid-nifti", "contour", "contour-nifti"],
                        dest="held_out", help="the sets no default was chosen on (contour since 2026-12-07, spheroid "
                                              "since 2026-12-08; shell became a design family after its run)")
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-seed", type=int, default=7, dest="data_seed",
                        help="generator seed of every set (7: a seed no default was chosen on)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, help="warm-up epochs instead of the default, and one clustering epoch "
                                                   "(quick checks of this script only; marked in the JSON)")
    parser.add_argument("--tag", default="", help="added to the JSON's name (runs of one day keep apart)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the trained networks in DIR/<set>-seed<N> (for benchmarks/structure.py)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    args.work = args.keep or Path(os.environ.get("TMPDIR", "/tmp")) / f"deepmcat-families-{os.getpid()}"
    results = {"date": dt.date.today().isoformat(), "machine": machine(), "subjects": args.subjects,
               "data_seed": args.data_seed, "training_seeds": args.seeds, "held_out": args.held_out,
               "designed_on": "classic and torso; blob since 2026-12-07, shell since 2026-12-08 (benchmarks/README.md)",
               "sets": {}}
    if args.epochs is not None:
        results["epochs_override"] = {"warmup_epochs": args.epochs, "epochs": 1}
    tag = (f"families-{'-'.join(args.sets)}-{args.subjects}s-{device.type}-{results['date']}"
           + ("-quick" if args.epochs is not None else "") + (f"-{args.tag}" if args.tag else ""))
    for name in args.sets:
        results["sets"][name] = {}
        run_set(name, args, device, results["sets"][name], lambda: save(tag, results))
    if args.keep is None:
        shutil.rmtree(args.work, ignore_errors=True)
    print("\n" + table(results))
    print(f"written to {save(tag, results)}")


if __name__ == "__main__":
    main()
