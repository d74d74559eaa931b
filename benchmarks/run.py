"""The quality suite: DeepMCAT against baselines on generated and real images, every method scored alike.

    python -m benchmarks.run --suite quick      # 2-core CPU: about 30 minutes (32.4 measured 2026-11-27)
    python -m benchmarks.run --suite full       # 150 generated subjects a set, 3 seeds (hours on 2 cores)
    python -m benchmarks.run --table results/quick-<date>.json   # the tables of an earlier run

Data: the classic family, balanced and imbalanced, from generator seed 7 (no default was chosen on it; the
defaults were designed on seed 0), the real cardiac MR exam at its fine (11) and coarse (7) categories, and
the real multi-modality images shipped in packages (``python -m benchmarks.data`` extracts them).

Every method is scored at the acquisition level (series × image type, what sorting an archive is judged by),
with K = the number of categories and one rule (``benchmarks/families.py``): pixels and an untrained
network's features go through DeepMCAT's own :func:`deepmcat.clustering.fit_clusters`; DeepMCAT, with and
without uniform sampling over clusters (the paper's imbalance ablation), is scored on what ``predict``
outputs. Metrics: purity, NMI, ARI, Hungarian ACC, worst per-category recall; mean ± sd over training seeds.
Speed lives elsewhere: ``reading.py`` (files → tensors), ``scale.py`` (training and k-means vs N),
``kmeans.py`` (faiss vs scikit-learn), ``latency.py`` (the server).
Writes ``benchmarks/results/<suite>-<date>.json`` after every data set and prints markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DATA, HERE, METRICS, REAL, RESULTS, machine
from benchmarks.families import Scorer, cluster_scores, dataset, predicted_scores
from deepmcat.config import DeepMCATConfig
from deepmcat.data import Collection, load_collection
from deepmcat.features import extract_features, resolve_device
from deepmcat.inference import Model
from deepmcat.labels import read_labels, unit_truth
from deepmcat.model import DeepMCATNet
from deepmcat.trainer import Trainer

CMR_COARSE = {"CMR_CINE_2CH_LV": "2CH", "CMR_CINE_2CH_RV": "2CH", "CMR_CINE_LVOT": "outflow",
              "CMR_CINE_RVOT": "outflow", "CMR_CINE_LPA": "outflow", "CMR_FLOW_AO_MAG_FFE": "flow_magnitude",
              "CMR_FLOW_AO_MAG_PCA": "flow_magnitude"}
#: generator seed of the suite's generated sets: held out from the design (seed 0)
DATA_SEED = 7
METHODS = ("pixels", "random CNN", "DeepMCAT", "DeepMCAT (no uniform sampling)")


@dataclass(frozen=True)
class Suite:
    subjects: int  # generated subjects per data set (balanced and imbalanced)
    seeds: int


SUITES = {"quick": Suite(subjects=12, seeds=2), "full": Suite(subjects=150, seeds=3)}


# ------------------------------------------------------------------------------------------- data sets


def datasets(suite: Suite) -> dict[str, tuple[Path, dict[str, str]]]:
    """Name → (folder, labels by file) of every data set the suite scores."""
    sets = {}
    for balanced in (True, False):
        data = dataset("classic", suite.subjects, DATA_SEED, balanced=balanced)
        name = f"generated {'balanced' if balanced else 'imbalanced'} ({suite.subjects} subjects, seed {DATA_SEED})"
        sets[name] = (data, read_labels(data / "labels.csv"))
    cmr = REAL / "cmr-chd1055302"
    if (cmr / "labels.csv").is_file():
        fine = read_labels(cmr / "labels.csv")
        sets["real CMR exam, fine (11)"] = (cmr, fine)
        sets["real CMR exam, coarse (7)"] = (cmr, {k: CMR_COARSE.get(v, v) for k, v in fine.items()})
    return sets


def package_images() -> tuple[Path, dict[str, str]] | str:
    """The real multi-modality images of pacs-packages.tsv that ``python -m benchmarks.data`` extracted (a
    reason string when there are too few)."""
    tsv = REAL / "pacs-packages.tsv"
    if not tsv.is_file():
        return "pacs-packages.tsv not found"
    with open(tsv, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    files = DATA / "packages" / "files"
    labels = {str(Path(r["file"])): r["category"] for r in rows if (files / r["file"]).is_file()}
    if len(labels) < 10:
        return (f"only {len(labels)} of {len(rows)} package images are in {files}: "
                "run python -m benchmarks.data first")
    return files, labels


def labelled_units(collection: Collection, labels: dict[str, str], data: Path) -> Collection:
    """The units ``labels`` covers (the package set labels some of the files it reads)."""
    keep = [i for i, u in enumerate(collection.units) if unit_truth([u], labels, data) is not None]
    return Collection([collection.units[i] for i in keep], collection.tensors[keep])


# --------------------------------------------------------------------------------------------- quality


def quality(data: Path, labels: dict[str, str], suite: Suite, device: torch.device, work: Path) -> dict:
    """Every method's scores on one data set, one run per training seed."""
    tic = time.time()
    cfg = DeepMCATConfig().override(device=str(device))
    collection = labelled_units(load_collection(data, cfg.preprocess, progress=False), labels, data)
    load_s = time.time() - tic
    scorer = Scorer(collection, data, labels)
    cfg = cfg.override(clusters=len(set(scorer.truth)))
    n_units, n_acq = len(collection.units), len(scorer.keys)
    rule = "k-means on acquisition means" if cfg.cluster.clusters <= n_acq < n_units else "k-means on units"
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    train_s: dict[str, list[float]] = {m: [] for m in METHODS[2:]}
    pixels = np.ascontiguousarray(collection.tensors[:].reshape(n_units, -1))
    for seed in range(suite.seeds):
        runs["pixels"].append(cluster_scores(scorer, pixels, cfg, seed))
        torch.manual_seed(seed)
        net = DeepMCATNet(cfg.preprocess.channels, cfg.model, views=cfg.preprocess.views).to(device)
        runs["random CNN"].append(cluster_scores(scorer, extract_features(net, collection.tensors, device), cfg, seed))
        for method, uniform in zip(METHODS[2:], (True, False)):
            model_dir = work / f"{data.name}-{cfg.cluster.clusters}-seed{seed}-{'uniform' if uniform else 'plain'}"
            tic = time.time()
            Trainer(cfg.override(seed=seed, uniform_sampling=uniform), model_dir,
                    progress=False).fit_collection(collection, resume=False)
            train_s[method].append(round(time.time() - tic, 1))
            runs[method].append(predicted_scores(scorer, Model(model_dir, device=str(device)), data))
    table = {m: {k: [round(float(np.mean([r[k] for r in rs])), 4), round(float(np.std([r[k] for r in rs])), 4)]
                 for k in METRICS} for m, rs in runs.items()}
    return {"units": n_units, "acquisitions": n_acq, "categories": cfg.cluster.clusters, "k": cfg.cluster.clusters,
            "rule": rule, "level": "acquisition", "composition": {k: scorer.truth.count(k) for k in sorted(set(scorer.truth))},
            "load_seconds": round(load_s, 1), "train_seconds": train_s, "table": table, "runs": runs}


# ------------------------------------------------------------------------------------------------ main


def fmt(cell: list[float], seeds: int) -> str:
    return f"{cell[0]:.3f} ± {cell[1]:.3f}" if seeds > 1 else f"{cell[0]:.3f}"


def markdown(results: dict) -> str:
    """The suite's tables (what README and benchmarks/README.md show) from its JSON."""
    m, seeds = results["machine"], results["settings"]["seeds"]
    lines = [f"## {results['suite']} suite — {m['processor']} x{m['cpus']}, {m['gpu'] or 'no GPU'}, "
             f"{results['wall_seconds'] / 60:.1f} min, {seeds} seed(s)", ""]
    for name, q in results["quality"].items():
        if "skipped" in q:
            lines += [f"### {name}: skipped ({q['skipped']})", ""]
            continue
        train = ", ".join(f"{k} {np.mean(v):.1f} s" for k, v in q["train_seconds"].items())
        lines += [f"### {name}: {q['units']} units, {q['acquisitions']} acquisitions, {q['categories']} categories; "
                  f"K = {q['k']}, {q['rule']}, scored per acquisition (training per run: {train})", "",
                  "| method | purity | NMI | ARI | ACC | worst recall |", "|---|---|---|---|---|---|"]
        for method, row in q["table"].items():
            lines.append(f"| {method} | " + " | ".join(fmt(row[k], seeds) for k in METRICS) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=sorted(SUITES), default="quick")
    p.add_argument("--device", default="auto")
    p.add_argument("--seeds", type=int, help="training seeds per method (default: the suite's)")
    p.add_argument("--table", metavar="JSON", help="print the tables of an earlier run's results file and exit")
    args = p.parse_args()
    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())))
        return
    suite = SUITES[args.suite]
    if args.seeds:
        suite = replace(suite, seeds=args.seeds)
    device = resolve_device(args.device)
    started = time.time()
    results: dict = {"suite": args.suite, "settings": suite.__dict__ | {"data_seed": DATA_SEED},
                     "machine": machine(), "quality": {}}
    sets = datasets(suite)
    packages = package_images()
    if isinstance(packages, str):
        results["quality"]["real package images (modality_bodypart)"] = {"skipped": packages}
    else:
        sets["real package images (modality_bodypart)"] = packages
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{args.suite}-{dt.date.today().isoformat()}.json"
    work = HERE / ".models" / f"suite-{args.suite}"

    def save(complete: bool) -> None:
        """Written after every data set, so a stopped run keeps what it measured."""
        results["wall_seconds"] = round(time.time() - started, 1)
        results["complete"] = complete
        results["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        out.write_text(json.dumps(results, indent=1))

    for name, (data, labels) in sets.items():
        tic = time.time()
        try:
            results["quality"][name] = quality(data, labels, suite, device, work)
        except Exception as exc:  # one data set's failure is reported, the suite goes on
            results["quality"][name] = {"skipped": f"{type(exc).__name__}: {exc}"}
        results["quality"][name]["seconds"] = round(time.time() - tic, 1)
        print(f"{name}: done in {time.time() - tic:.0f} s", flush=True)
        save(complete=False)
    shutil.rmtree(work, ignore_errors=True)
    save(complete=True)
    print(markdown(results))
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
