"""Active learning: category accuracy after a clinician names clusters with 0-5 labels per cluster.

    python -m benchmarks.active_learning --sets classic torso --subjects 16    # phantom families, a PNG curve
    python -m benchmarks.active_learning --data FOLDER                         # a folder with labels.csv

A DeepMCAT model is trained without labels; each acquisition (series + image type: what a datastore image
holds) gets its cluster by the vote of its units. A simulated clinician then labels B x K acquisitions with
their ground-truth category, picked one at a time by each strategy of ``deepmcat.selection`` (the same
functions the MONAI Label strategies call) or at random; clusters are named by the majority of their labels
and accuracy is the fraction of acquisitions (and units) whose cluster name is their true category (an
unnamed cluster counts as wrong). Finally the model is retrained with the cluster_representative labels
(``--retrain-budgets``) to measure what retraining with labels adds. Writes
``benchmarks/results/active-learning-*.json`` and, for several budgets, a PNG of the curves.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from benchmarks.common import HERE, RESULTS, machine
from benchmarks.families import dataset
from deepmcat.labels import read_labels, unit_truth
from deepmcat.config import DeepMCATConfig
from deepmcat.data import load_collection
from deepmcat.inference import Model, series_vote
from deepmcat.metrics import evaluate
from deepmcat.naming import name_clusters
from deepmcat.selection import cluster_representative, least_confident
from deepmcat.trainer import Trainer

BUDGETS = (0, 1, 2, 3, 5)


def acquisition_scores(model: Model, collection, truth: list[str]):
    """Per acquisition: its score (cluster by vote, confidence, distance) and its true category."""
    preds = model.predict(collection.tensors, k=1, acquisitions=collection.acquisitions,
                          structure=collection.structure)
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
    Trainer(cfg, out, progress=False).fit_collection(collection, resume=False, categories=labels_per_unit)
    return Model(out, device=cfg.train.device), time.time() - tic


def run_set(name: str, data, labels_path, args) -> dict:
    """Train once without labels, simulate each strategy at each budget, retrain with labels."""
    cfg = DeepMCATConfig()
    cfg.train.device, cfg.train.seed = args.device, args.seed
    collection = load_collection(data, cfg.preprocess, progress=False)
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
    retrained = {}
    for budget in args.retrain_budgets:
        labels = simulate(cluster_representative, scores, item_truth, budget * k)
        per_unit = [labels.get(u.acquisition) for u in collection.units]
        model2, retrain_s = train(cfg, collection, HERE / ".models" / f"al-{name}-labelled-{budget}", per_unit)
        scores2, _, unit_clusters2 = acquisition_scores(model2, collection, truth)
        retrained[str(budget)] = dict(
            {m: round(v, 4) for m, v in evaluate(truth, unit_clusters2).items() if m in unsupervised},
            seconds=round(retrain_s, 1), **accuracy(scores2, item_truth, labels, collection, truth, unit_clusters2))
    print(f"\n{name}: {len(truth)} units in {len(scores)} acquisitions, {k} categories, K = {k}; trained in "
          f"{train_s:.0f} s\n")
    print("| labels per cluster | cluster_representative | least_confident | random (mean ± sd) | retrained |")
    print("|---|---|---|---|---|")
    for budget, row in table.items():
        again = retrained.get(budget, {}).get("acquisition_accuracy")
        print(f"| {budget} | {row['cluster_representative']['acquisition_accuracy']:.3f} | "
              f"{row['least_confident']['acquisition_accuracy']:.3f} | {row['random']['acquisition_accuracy']:.3f}"
              f" ± {row['random']['acquisition_accuracy_sd']:.3f} | {'' if again is None else f'{again:.3f}'} |",
              flush=True)
    return {"dataset": name, "units": len(truth), "acquisitions": len(scores), "k": k,
            "train_seconds": round(train_s, 1), "unsupervised": unsupervised, "accuracy_by_budget": table,
            "retrained_with_labels": retrained, "config": cfg.to_dict()}


def plot(results: dict, path) -> None:
    """Share of unlabelled acquisitions correctly named vs labels per cluster, one panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = results["sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.6 * len(sets), 3.6), dpi=100, squeeze=False)
    for ax, (name, res) in zip(axes[0], sets.items()):
        budgets = [int(b) for b in res["accuracy_by_budget"]]
        for strategy, style in (("cluster_representative", "o-"), ("least_confident", "s-"), ("random", "^--")):
            ax.plot(budgets, [res["accuracy_by_budget"][str(b)][strategy]["acquisition_accuracy"] for b in budgets],
                    style, label=strategy.replace("_", " "))
        again = res["retrained_with_labels"]
        if again:
            xs = sorted(int(b) for b in again)
            ax.plot(xs, [again[str(b)]["acquisition_accuracy"] for b in xs], "D-", color="black",
                    label="retrained with the representative labels")
        ax.set_title(f"{name} ({res['acquisitions']} acquisitions, K = {res['k']})", fontsize=10)
        ax.set_xlabel("labels per cluster")
        ax.set_ylim(0, 1.02)
        ax.set_xticks(budgets)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("unlabelled acquisitions correctly named")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="an existing folder with labels.csv (instead of --sets)")
    p.add_argument("--labels")
    p.add_argument("--sets", nargs="+", default=["classic", "torso"], help="phantom sets (benchmarks/families.py)")
    p.add_argument("--subjects", type=int, default=16)
    p.add_argument("--data-seed", dest="data_seed", type=int, default=7)
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--random-repeats", dest="repeats", type=int, default=10)
    p.add_argument("--retrain-budgets", dest="retrain_budgets", type=int, nargs="*", default=[1, 3],
                   help="labels per cluster to retrain with (none: no retraining)")
    p.add_argument("--device", default="auto")
    p.add_argument("--tag", default="", help="added to the JSON's and PNG's name (runs of one day keep apart)")
    args = p.parse_args()

    if args.data:
        inputs = {Path(args.data).name: (Path(args.data), Path(args.labels or Path(args.data) / "labels.csv"))}
    else:
        inputs = {}
        for name in args.sets:
            data = dataset(name, args.subjects, args.data_seed)
            inputs[f"{name}-{args.subjects}s-seed{args.data_seed}"] = (data, data / "labels.csv")
    results = {"machine": machine(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "training_seed": args.seed, "random_repeats": args.repeats, "sets": {}}
    tag = f"active-learning-{'-'.join(inputs)}-{dt.date.today().isoformat()}" + (f"-{args.tag}" if args.tag else "")
    RESULTS.mkdir(exist_ok=True)
    for name, (data, labels_path) in inputs.items():
        results["sets"][name] = run_set(name, data, labels_path, args)
        (RESULTS / f"{tag}.json").write_text(json.dumps(results, indent=1))
    plot(results, RESULTS / f"{tag}.png")
    print(f"\nsaved {RESULTS / tag}.json and .png")


if __name__ == "__main__":
    main()
