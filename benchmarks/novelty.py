"""Which score tells a series of a category the model never saw, and how the rule inference applies does
(issue 18, item 2).

    python -m benchmarks.novelty [--sets classic torso] [--subjects 16] [--leave-out 3] [--warmup-epochs 20]
                                 [--keep DIR]

For each phantom set and each of ``--leave-out`` categories in turn: the examinations are split 3 : 1, a
model is trained (K = C - 1) on the first part without that category, and every unit of the held-out
examinations is scored; the left-out category's units are the novel ones, the others known. The real
non-cardiac package images (``python -m benchmarks.data`` extracts them) are scored as outsiders against the
same known units. Scores (higher = more novel):

- ``centroid_d2``: squared distance of the unit's embedding (PCA, L2) to its nearest centroid;
- ``one_minus_conf``: 1 - softmax confidence of its cluster;
- ``knn_d2``: mean squared distance to its 5 nearest training embeddings;
- ``pca_norm``: |log| of the norm of its PCA (whitened) coordinates before L2 normalisation, against the
  median of the training units' (what the L2 normalisation throws away);
- ``pca_residual``: the share of its centred feature's energy outside the PCA subspace.

Reports AUROC per score (its embedding with the series-structure coordinates) and the share of known units
a training-quantile threshold (95th percentile of the training units' scores) would call unknown; then the
rules of :data:`RULES` at several percentiles, per acquisition (a series unknown when most of its units
are; one of the ``knn`` rules is what inference applies, ``Model``'s ``unknown_percentile``): the share of
known acquisitions of unseen examinations called unknown, of left-out acquisitions and package images
caught, and the series-level AUROC of each rule's score (an acquisition's median unit score).
Writes ``benchmarks/results/novelty-<sets>-<date>.json``; ``--keep DIR`` also writes each run's embeddings
(training, held-out and package units, with their examinations, acquisitions and truth) to
``DIR/<set>-<category>.npz``, so that other scores can be compared without training again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.common import machine, save
from benchmarks.families import dataset
from benchmarks.run import package_images
from deepmcat.clustering import squared_distances
from deepmcat.config import DeepMCATConfig
from deepmcat.data import Collection, load_collection
from deepmcat.features import extract_features
from deepmcat.inference import Model
from deepmcat.novelty import fit_reference
from deepmcat.labels import read_labels, unit_truth
from deepmcat.trainer import Trainer

SCORES = ("centroid_d2", "one_minus_conf", "knn_d2", "pca_norm", "pca_residual")
#: percentiles of the inference rules measured
RULE_PERCENTILES = (90.0, 95.0, 97.5, 99.0, 99.9, 100.0)
#: the rules: a score of the unit's embedding — its content only (``content``) or with the series-structure
#: coordinates (``full``) — against a threshold read off the training units: the novelty score calibrated
#: against other examinations (``knn_*_other_exams``), or the nearest-centroid distance against the training
#: units' own (``centroid_*_training``: inference's rule before the novelty reference)
RULES = ("knn_content_other_exams", "knn_full_other_exams", "centroid_content_training", "centroid_full_training")


class Rules:
    """Every rule's unit scores and thresholds under one model, calibrated on its training units."""

    def __init__(self, model: Model, train: Collection):
        self.model = model
        self.dims = model.transform.matrix.shape[0]
        embedded = self.embed(train)
        studies = np.unique([u.study for u in train.units], return_inverse=True)[1]
        c = model.config.cluster
        self.references = {part: fit_reference(self.part(embedded, part), studies, c.unknown_neighbours,
                                               c.unknown_reference, seed=model.config.train.seed,
                                               content_dims=self.dims, structure_scale=c.unknown_structure_scale)
                           for part in ("content", "full")}
        self.training = {part: squared_distances(self.part(embedded, part), self.part(model.centroids, part)).min(1)
                         for part in ("content", "full")}

    def embed(self, collection: Collection) -> np.ndarray:
        return self.model.embed(collection.tensors, collection.acquisitions, collection.structure)

    def part(self, x: np.ndarray, part: str) -> np.ndarray:
        return np.ascontiguousarray(x[:, :self.dims] if part == "content" else x)

    def scores(self, collection: Collection) -> dict[str, np.ndarray]:
        x = self.embed(collection)
        out = {}
        for part in ("content", "full"):
            out[f"knn_{part}_other_exams"] = self.references[part].scores(self.part(x, part))
            out[f"centroid_{part}_training"] = squared_distances(self.part(x, part),
                                                                 self.part(self.model.centroids, part)).min(1)
        return out

    def thresholds(self, pct: float) -> dict[str, float]:
        out = {}
        for part in ("content", "full"):
            out[f"knn_{part}_other_exams"] = self.references[part].threshold(pct)
            out[f"centroid_{part}_training"] = float(np.percentile(self.training[part], pct))
        return out


def unknown_by_acquisition(keys: list[str], novel: np.ndarray) -> dict[str, bool]:
    """The series vote inference applies: an acquisition is unknown when more than half its units are."""
    by_acq: dict[str, list[bool]] = {}
    for key, flag in zip(keys, novel):
        by_acq.setdefault(key, []).append(bool(flag))
    return {key: 2 * sum(flags) > len(flags) for key, flags in by_acq.items()}


def acquisition_auroc(keys: list[str], scores: np.ndarray, novel_units: np.ndarray) -> float:
    """AUROC of acquisitions' median unit score (the series' novelty in inference's answer)."""
    by_acq: dict[str, list[float]] = {}
    novel_acq = {k for k, n in zip(keys, novel_units) if n}
    for key, score in zip(keys, scores):
        by_acq.setdefault(key, []).append(float(score))
    labels = [key in novel_acq for key in by_acq]
    return round(float(roc_auc_score(labels, [np.median(v) for v in by_acq.values()])), 3)


def rule_rates(model: Model, train: Collection, test: Collection, novel_units: np.ndarray,
               outsiders: Collection | None) -> dict:
    """Each rule per acquisition at each percentile: known acquisitions called unknown, left-out
    acquisitions and package series caught; and the series-level AUROC of each rule's score."""
    rules = Rules(model, train)
    novel_acq = {k for k, n in zip(test.acquisitions, novel_units) if n}
    test_scores = rules.scores(test)
    outsider_scores = rules.scores(outsiders) if outsiders is not None else None
    rates: dict = {rule: {"auroc_left_out_series": acquisition_auroc(test.acquisitions, test_scores[rule], novel_units)}
                   for rule in RULES}
    for pct in RULE_PERCENTILES:
        cuts = rules.thresholds(pct)
        for rule in RULES:
            unknown = unknown_by_acquisition(test.acquisitions, test_scores[rule] > cuts[rule])
            known = [u for k, u in unknown.items() if k not in novel_acq]
            left_out = [u for k, u in unknown.items() if k in novel_acq]
            entry = {"false_unknown_known": round(float(np.mean(known)), 3),
                     "caught_left_out": round(float(np.mean(left_out)), 3) if left_out else None}
            if outsider_scores is not None:
                caught = unknown_by_acquisition(outsiders.acquisitions, outsider_scores[rule] > cuts[rule])
                entry["caught_packages"] = round(float(np.mean(list(caught.values()))), 3)
            rates[rule][str(pct)] = entry
    # the rule as wired: the model's own answers are the benchmark's
    preds = model.predict(test.tensors, acquisitions=test.acquisitions, structure=test.structure)
    wired = np.array([p.novelty for p in preds])
    assert any(np.allclose(wired, test_scores[r], rtol=1e-4, atol=1e-6) for r in RULES if r.startswith("knn"))
    return rates


def subset(collection: Collection, keep: np.ndarray) -> Collection:
    return Collection([collection.units[i] for i in keep], collection.tensors[keep])


class Scorer:
    """Every candidate score of units under one trained model, calibrated on its training units."""

    def __init__(self, model: Model, train: Collection):
        self.model = model
        feats = self.features(train)
        self.mean = feats.mean(axis=0)
        a = model.transform.matrix
        self.basis = np.linalg.qr(a.T)[0]  # orthonormal basis of the PCA subspace (whitening folded in a)
        self.train_embedded = model.embed(train.tensors, train.acquisitions, train.structure)
        self.norm_median = float(np.median(self.pca_norms(feats)))
        self.train_scores = self.scores(train, feats)

    def features(self, collection: Collection) -> np.ndarray:
        return extract_features(self.model.net, collection.tensors, self.model.device, False)

    def pca_norms(self, feats: np.ndarray) -> np.ndarray:
        return np.linalg.norm(feats @ self.model.transform.matrix.T + self.model.transform.bias, axis=1)

    def scores(self, collection: Collection, feats: np.ndarray | None = None) -> dict[str, np.ndarray]:
        feats = self.features(collection) if feats is None else feats
        embedded = self.model.embed(collection.tensors, collection.acquisitions, collection.structure)
        d2 = squared_distances(embedded, self.model.centroids)
        conf = self.model.probabilities(d2).max(axis=1)
        knn = np.sort(squared_distances(embedded, self.train_embedded), axis=1)[:, :5].mean(axis=1)
        centred = feats - self.mean
        inside = centred @ self.basis @ self.basis.T
        residual = np.linalg.norm(centred - inside, axis=1) / (np.linalg.norm(centred, axis=1) + 1e-8)
        return {"centroid_d2": d2.min(axis=1), "one_minus_conf": 1 - conf, "knn_d2": knn,
                "pca_norm": np.abs(np.log(self.pca_norms(feats) / self.norm_median + 1e-8)),
                "pca_residual": residual}

    def threshold(self, score: str, quantile: float = 0.95) -> float:
        return float(np.quantile(self.train_scores[score], quantile))


def keep_embeddings(path: Path, model: Model, train: Collection, test: Collection, novel: np.ndarray,
                    outsiders: Collection | None) -> None:
    """One run's embeddings as inference makes them, with what each unit belongs to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"dims": model.transform.matrix.shape[0], "novel": novel, "centroids": model.centroids}
    for part, collection in (("train", train), ("test", test), ("packages", outsiders)):
        if collection is None:
            continue
        arrays[part] = model.embed(collection.tensors, collection.acquisitions, collection.structure)
        arrays[f"{part}_studies"] = np.asarray([u.study for u in collection.units])
        arrays[f"{part}_acquisitions"] = np.asarray(collection.acquisitions)
    np.savez_compressed(path, **arrays)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="+", default=["classic", "torso"])
    p.add_argument("--subjects", type=int, default=16)
    p.add_argument("--data-seed", type=int, default=7)
    p.add_argument("--leave-out", type=int, default=3)
    p.add_argument("--warmup-epochs", type=int, default=20)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--tag", default="", help="added to the JSON's name (runs of one day keep apart)")
    p.add_argument("--keep", type=Path, metavar="DIR", help="write each run's embeddings to DIR/<set>-<category>.npz")
    args = p.parse_args()

    packages = package_images()
    results = {"machine": machine(), "date": dt.date.today().isoformat(), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "runs": [],
               "packages": packages if isinstance(packages, str) else f"{len(packages[1])} images"}
    for name in args.sets:
        data = dataset(name, args.subjects, args.data_seed)
        cfg = DeepMCATConfig().override(warmup_epochs=args.warmup_epochs, epochs=args.epochs, device=args.device)
        collection = load_collection(data, cfg.preprocess, progress=False)
        truth = np.asarray(unit_truth(collection.units, read_labels(data / "labels.csv"), data.resolve()))
        studies = sorted({u.study for u in collection.units})
        held_out = set(studies[::4])
        test_mask = np.asarray([u.study in held_out for u in collection.units])
        counts = Counter(truth[test_mask])
        candidates = sorted(c for c in counts if counts[c] >= 2)
        left_out = [candidates[i] for i in np.linspace(0, len(candidates) - 1, args.leave_out).round().astype(int)]
        for category in left_out:
            train_idx = np.flatnonzero(~test_mask & (truth != category))
            test_idx = np.flatnonzero(test_mask)
            run_cfg = cfg.override(clusters=len(set(truth[train_idx])))
            with tempfile.TemporaryDirectory() as out:
                Trainer(run_cfg, out, progress=False).fit_collection(subset(collection, train_idx))
                scorer = Scorer(Model(out, device=args.device), subset(collection, train_idx))
                test = scorer.scores(subset(collection, test_idx))
                outsiders, extra = None, None
                if not isinstance(packages, str):
                    extra = load_collection(packages[0], cfg.preprocess, progress=False)
                    outsiders = scorer.scores(extra) if extra.units else None
                novel = truth[test_idx] == category
                rule = rule_rates(Model(out, device=args.device), subset(collection, train_idx),
                                  subset(collection, test_idx), novel, extra if outsiders is not None else None)
                if args.keep:
                    keep_embeddings(args.keep / f"{name}-{category}.npz", Model(out, device=args.device),
                                    subset(collection, train_idx), subset(collection, test_idx), novel,
                                    extra if outsiders is not None else None)
            run = {"set": name, "left_out": category, "train_units": len(train_idx), "known_test_units":
                   int((~novel).sum()), "novel_test_units": int(novel.sum()), "scores": {}, "rule": rule}
            for score in SCORES:
                known, new = test[score][~novel], test[score][novel]
                cut = scorer.threshold(score)
                entry = {"auroc_left_out": round(float(roc_auc_score(np.r_[np.zeros(len(known)), np.ones(len(new))],
                                                                      np.r_[known, new])), 3),
                         "false_unknown_known": round(float((known > cut).mean()), 3),
                         "flagged_left_out": round(float((new > cut).mean()), 3)}
                if outsiders is not None:
                    out_s = outsiders[score]
                    entry["auroc_packages"] = round(float(roc_auc_score(
                        np.r_[np.zeros(len(known)), np.ones(len(out_s))], np.r_[known, out_s])), 3)
                    entry["flagged_packages"] = round(float((out_s > cut).mean()), 3)
                run["scores"][score] = entry
            results["runs"].append(run)
            print(name, category, {s: (v["auroc_left_out"], v.get("auroc_packages"), v["false_unknown_known"])
                                   for s, v in run["scores"].items()}, flush=True)
    summary = {}
    for score in SCORES:
        values = [r["scores"][score] for r in results["runs"]]
        summary[score] = {k: round(float(np.mean([v[k] for v in values if k in v])), 3)
                          for k in ("auroc_left_out", "auroc_packages", "false_unknown_known", "flagged_left_out")
                          if any(k in v for v in values)}
    results["summary"] = summary
    results["rule_summary"] = {
        rule: {"auroc_left_out_series": round(float(np.mean([r["rule"][rule]["auroc_left_out_series"]
                                                              for r in results["runs"]])), 3)} | {
            pct: {k: round(float(np.mean([r["rule"][rule][pct][k] for r in results["runs"]
                                          if r["rule"][rule][pct].get(k) is not None])), 3)
                  for k in ("false_unknown_known", "caught_left_out", "caught_packages")
                  if any(r["rule"][rule][pct].get(k) is not None for r in results["runs"])}
            for pct in map(str, RULE_PERCENTILES)}
        for rule in RULES}
    print(results["rule_summary"])
    print(summary)
    print("saved", save(f"novelty-{'-'.join(args.sets)}-{dt.date.today().isoformat()}" + (f"-{args.tag}" if args.tag else ""), results))


if __name__ == "__main__":
    main()
