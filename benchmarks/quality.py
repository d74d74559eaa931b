"""Clustering quality: DeepMCAT against k-means on raw pixels and on PCA of pixels, same data, same K.

    python -m benchmarks.quality --subjects 60 --imbalanced            # generated CMR (the issue's protocol)
    python -m benchmarks.quality --data ../shared/data/real/cmr-chd1055302 [--coarse '{"FINE": "COARSE"}']

Prints a markdown table and writes ``benchmarks/results/quality-<name>-<date>.json`` with the machine,
versions, settings and wall times. Generated data is cached under ``benchmarks/.data``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.common import HERE, RESULTS, generated, machine, score
from deepmcat.labels import read_labels, unit_truth
from deepmcat.clustering import FeatureTransform, kmeans
from deepmcat.config import DeepMCATConfig
from deepmcat.data import load_collection
from deepmcat.trainer import Trainer

def dataset(args) -> tuple[Path, Path, str]:
    if args.data:
        data = Path(args.data)
        return data, Path(args.labels or data / "labels.csv"), data.name
    data = generated(args.subjects, balanced=not args.imbalanced, seed=args.seed)
    return data, data / "labels.csv", data.name


def labels_for(path: Path, coarse: dict[str, str] | None) -> dict[str, str]:
    labels = read_labels(path)
    return {k: coarse.get(v, v) for k, v in labels.items()} if coarse else labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="an existing folder (default: generate CMR phantoms)")
    p.add_argument("--labels", help="labels CSV (default DATA/labels.csv)")
    p.add_argument("--coarse", help="JSON mapping fine → coarse categories")
    p.add_argument("--subjects", type=int, default=60)
    p.add_argument("--imbalanced", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="training seeds (mean and sd reported)")
    p.add_argument("--clusters", type=int, help="K (default: number of categories)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    data, labels_path, name = dataset(args)
    cfg = DeepMCATConfig()
    tic = time.time()
    collection = load_collection(data, cfg.preprocess)
    load_s = time.time() - tic
    coarse = json.loads(args.coarse) if args.coarse else None
    truth = unit_truth(collection.units, labels_for(labels_path, coarse), data.resolve())
    if truth is None:
        raise SystemExit("the labels do not cover every unit")
    k = args.clusters or len(set(truth))
    cfg.cluster.clusters = k
    cfg.train.device = args.device
    if args.epochs:
        cfg.train.epochs = args.epochs
    pixels = collection.tensors.reshape(len(collection.tensors), -1)
    rows: dict[str, list[dict]] = {"k-means on pixels": [], "PCA + k-means": [], "DeepMCAT": []}
    times: dict[str, float] = defaultdict(float)
    tic = time.time()
    projected = FeatureTransform.fit(pixels, cfg.cluster.pca_dim, whiten=False)(pixels)  # seed-independent
    pca_fit_s = time.time() - tic
    for seed in range(args.seeds):
        t0 = time.time()
        rows["k-means on pixels"].append(score(truth, kmeans(np.ascontiguousarray(pixels), k, cfg.cluster,
                                                                 seed=seed).assignments))
        t1 = time.time()
        rows["PCA + k-means"].append(score(truth, kmeans(projected, k, cfg.cluster, seed=seed).assignments))
        t2 = time.time()
        cfg.train.seed = seed
        result = Trainer(cfg, HERE / ".models" / f"{name}-seed{seed}").fit_collection(collection, resume=False)
        rows["DeepMCAT"].append(score(truth, result.assignments))
        for method, seconds in zip(rows, (t1 - t0, t2 - t1 + pca_fit_s, time.time() - t2)):
            times[method] += seconds

    summary = {}
    print(f"\n{name}: {len(truth)} units, {len(set(truth))} categories, K = {k}, {args.seeds} seed(s), "
          f"machine: {machine()['processor']} x{os.cpu_count()} {machine()['gpu'] or 'CPU only'}\n")
    print("| method | purity | NMI | ARI | ACC | worst recall | seconds |\n|---|---|---|---|---|---|---|")
    for method, runs in rows.items():
        agg = {m: (float(np.mean([r[m] for r in runs])), float(np.std([r[m] for r in runs])))
               for m in ("purity", "nmi", "ari", "acc", "worst_recall")}
        summary[method] = {"mean_sd": agg, "runs": runs, "seconds": round(times[method] / args.seeds, 1)}
        print(f"| {method} | " + " | ".join(f"{agg[m][0]:.3f} ± {agg[m][1]:.3f}" for m in agg)
              + f" | {times[method] / args.seeds:.1f} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"quality-{name}-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps({
        "dataset": name, "units": len(truth), "categories": sorted(set(truth)), "k": k, "seeds": args.seeds,
        "machine": machine(), "load_seconds": round(load_s, 1), "config": cfg.to_dict(), "results": summary,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }, indent=1))
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
