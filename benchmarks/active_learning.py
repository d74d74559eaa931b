"""Active learning: category accuracy after a clinician names clusters with 0, 1 and 3 labels per cluster.

    python -m benchmarks.active_learning --subjects 16 --imbalanced       # the demo's data

A DeepMCAT model is trained without labels; each acquisition (series + image type: what a datastore image
holds) gets its cluster by the vote of its units. A simulated clinician then labels B x K acquisitions with
their ground-truth category, picked one at a time by each strategy of ``deepmcat.selection`` (the same
functions the MONAI Label strategies call) or at random; clusters are named by the majority of their labels
and accuracy is the fraction of acquisitions (and units) whose cluster name is their true category (an
unnamed cluster counts as wrong). Finally the model is retrained with the cluster_representative labels
(B = 3) to measure what retraining with labels adds. Writes ``benchmarks/results/active-learning-*.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections import Counter, defaultdict

import numpy as np

from benchmarks.common import HERE, RESULTS, machine
from benchmarks.quality import dataset
from deepmcat.labels import read_labels, unit_truth
from deepmcat.config import DeepMCATConfig
from deepmcat.data import load_collection
from deepmcat.inference import Model, series_vote
from deepmcat.metrics import evaluate
from deepmcat.naming import name_clusters
from deepmcat.selection import cluster_representative, least_confident
from deepmcat.trainer import Trainer

BUDGETS = (0, 1, 3)


def acquisition_scores(model: Model, collection, truth: list[str]):
    """Per acquisition: its score (cluster by vote, confidence, distance) and its true category."""
    preds = model.predict(collection.tensors, k=1, acquisitions=collection.acquisitions)
    members: dict[str, list] = defaultdict(list)
    for unit, pred, category in zip(collection.units, preds, truth):
        members[unit.acquisition].append((pred, category))
    scores, item_truth = {}, {}
    for acq, rows in members.items():
        vote = series_vote([p for p, _ in rows])
        scores[acq] = {"cluster": vote.cluster, "confidence": vote.confidence, "distance": vote.distance}
        item_truth[acq] = Counter(c for _, c in rows).most_common(1)[0][0]
    return scores, item_truth, [p.cluster for p in preds]


def simulate(select, scores, item_truth, budget: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    for _ in range(budget):
        pick = select(scores, labels)
        if pick is None:
            break
        labels[pick[0]] = item_truth[pick[0]]  # the clinician names what they are shown
    return labels


def random_labels(scores, item_truth, budget: int, rng: np.random.Generator) -> dict[str, str]:
    items = sorted(scores)
    chosen = rng.choice(len(items), size=min(budget, len(items)), replace=False)
    return {items[i]: item_truth[items[i]] for i in chosen}


def accuracy(scores, item_truth, labels, collection, truth, unit_clusters) -> dict:
    """How many *unlabelled* acquisitions (and their units) get their right category from the cluster names
    the labels give: what the labels did for the rest of the archive, not the labelled items themselves."""
    names = name_clusters({i: s["cluster"] for i, s in scores.items()}, labels).names
    items = float(np.mean([names.get(s["cluster"]) == item_truth[i] for i, s in scores.items() if i not in labels]))
    units = float(np.mean([names.get(c) == t for u, c, t in zip(collection.units, unit_clusters, truth)
                           if u.acquisition not in labels]))
    return {"labels": len(labels), "named_clusters": len(names), "acquisition_accuracy": round(items, 4),
            "unit_accuracy": round(units, 4)}


def train(cfg: DeepMCATConfig, collection, out, labels_per_unit=None):
    tic = time.time()
    Trainer(cfg, out).fit_collection(collection, resume=False, categories=labels_per_unit)
    return Model(out, device=cfg.train.device), time.time() - tic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="an existing folder with labels.csv (default: generate CMR phantoms)")
    p.add_argument("--labels")
    p.add_argument("--subjects", type=int, default=16)
    p.add_argument("--imbalanced", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-repeats", dest="repeats", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-retrain", dest="retrain", action="store_false")
    args = p.parse_args()

    data, labels_path, name = dataset(args)
    cfg = DeepMCATConfig()
    cfg.train.device, cfg.train.seed = args.device, args.seed
    collection = load_collection(data, cfg.preprocess)
    truth = unit_truth(collection.units, read_labels(labels_path), data.resolve())
    if truth is None:
        raise SystemExit("the labels do not cover every unit")
    k = cfg.cluster.clusters = len(set(truth))
    model, train_s = train(cfg, collection, HERE / ".models" / f"al-{name}")
    scores, item_truth, unit_clusters = acquisition_scores(model, collection, truth)

    table: dict[str, dict] = {}
    rng = np.random.default_rng(args.seed)
    for budget in BUDGETS:
        n = budget * k
        row = {
            "cluster_representative": accuracy(scores, item_truth, simulate(cluster_representative, scores,
                                               item_truth, n), collection, truth, unit_clusters),
            "least_confident": accuracy(scores, item_truth, simulate(least_confident, scores, item_truth, n),
                                        collection, truth, unit_clusters),
        }
        runs = [accuracy(scores, item_truth, random_labels(scores, item_truth, n, rng), collection, truth,
                         unit_clusters) for _ in range(args.repeats)]
        row["random"] = {key: round(float(np.mean([r[key] for r in runs])), 4) for key in runs[0]}
        row["random"]["acquisition_accuracy_sd"] = round(float(np.std([r["acquisition_accuracy"] for r in runs])), 4)
        table[str(budget)] = row

    unsupervised = {m: round(v, 4) for m, v in evaluate(truth, unit_clusters).items()
                    if m in ("purity", "nmi", "ari", "acc", "worst_recall")}
    retrain = None
    if args.retrain:
        labels = simulate(cluster_representative, scores, item_truth, 3 * k)
        per_unit = [labels.get(u.acquisition) for u in collection.units]
        model2, retrain_s = train(cfg, collection, HERE / ".models" / f"al-{name}-labelled", per_unit)
        scores2, _, unit_clusters2 = acquisition_scores(model2, collection, truth)
        retrain = {
            "labels": len(labels), "seconds": round(retrain_s, 1),
            "without_labels": dict(unsupervised, **accuracy(scores, item_truth, labels, collection, truth,
                                                            unit_clusters)),
            "with_labels": dict({m: round(v, 4) for m, v in evaluate(truth, unit_clusters2).items()
                                 if m in unsupervised},
                                **accuracy(scores2, item_truth, labels, collection, truth, unit_clusters2)),
        }

    mach = machine()
    print(f"\n{name}: {len(truth)} units in {len(scores)} acquisitions, {k} categories, K = {k}; trained in "
          f"{train_s:.0f} s on {mach['processor']} x{mach['cpus']} {mach['gpu'] or 'CPU only'}\n")
    print("| labels per cluster | cluster_representative | least_confident | random (mean ± sd) |\n|---|---|---|---|")
    for budget, row in table.items():
        print(f"| {budget} | {row['cluster_representative']['acquisition_accuracy']:.3f} | "
              f"{row['least_confident']['acquisition_accuracy']:.3f} | {row['random']['acquisition_accuracy']:.3f}"
              f" ± {row['random']['acquisition_accuracy_sd']:.3f} |")
    if retrain:
        print(f"\nretraining with {retrain['labels']} cluster_representative labels ({retrain['seconds']:.0f} s):\n")
        print("| model | purity | NMI | ARI | worst recall | acquisition accuracy |\n|---|---|---|---|---|---|")
        for key in ("without_labels", "with_labels"):
            r = retrain[key]
            print(f"| {key.replace('_', ' ')} | {r['purity']:.3f} | {r['nmi']:.3f} | {r['ari']:.3f} | "
                  f"{r['worst_recall']:.3f} | {r['acquisition_accuracy']:.3f} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"active-learning-{name}-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps({
        "dataset": name, "units": len(truth), "acquisitions": len(scores), "k": k, "machine": mach,
        "train_seconds": round(train_s, 1), "unsupervised": unsupervised, "accuracy_by_budget": table,
        "retrain": retrain, "config": cfg.to_dict(), "random_repeats": args.repeats,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }, indent=1))
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
