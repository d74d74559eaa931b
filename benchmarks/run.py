"""The benchmark suite: DeepMCAT against baselines on generated and real images, and its speed and scale.

    python -m benchmarks.run --suite quick      # 2-core CPU: about 15 minutes
    python -m benchmarks.run --suite full       # larger generated sets and 3 seeds (see benchmarks/README.md)
    python -m benchmarks.run --suite full --seeds 1   # the same with one training seed per method

Quality, on each data set with the same canonical tensors and the same K:
k-means on raw pixels and on their PCA (units, what a user could do without DeepMCAT); features of a
randomly initialised CNN and of trained DeepMCAT, both clustered the way DeepMCAT clusters (PCA-whitening,
L2, k-means on acquisitions); DeepMCAT with and without uniform sampling over clusters (the paper's
imbalance ablation); at K = C, 2C and 4C. Metrics: purity, NMI, ARI, Hungarian ACC, worst per-category
recall; mean ± sd over seeds. Speed: preprocessing, feature extraction, training, faiss vs scikit-learn
k-means, inference latency per series, and the clustering step's time and memory for 1k-100k vectors.
Writes ``benchmarks/results/<suite>-<date>.json`` and prints markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DATA, HERE, METRICS, REAL, RESULTS, generated, machine, rss_mb, score
from deepmcat.labels import read_labels, unit_truth
from deepmcat.clustering import FeatureTransform, fit_clusters, kmeans
from deepmcat.config import DeepMCATConfig
from deepmcat.data import load_collection
from deepmcat.inference import Model
from deepmcat.model import DeepMCATNet
from deepmcat.features import extract_features, resolve_device
from deepmcat.trainer import Trainer

CMR_COARSE = {"CMR_CINE_2CH_LV": "2CH", "CMR_CINE_2CH_RV": "2CH", "CMR_CINE_LVOT": "outflow",
              "CMR_CINE_RVOT": "outflow", "CMR_CINE_LPA": "outflow", "CMR_FLOW_AO_MAG_FFE": "flow_magnitude",
              "CMR_FLOW_AO_MAG_PCA": "flow_magnitude"}


@dataclass(frozen=True)
class Suite:
    subjects: int  # generated subjects per data set (balanced and imbalanced)
    seeds: int
    clustering_sizes: tuple[int, ...]


SUITES = {"quick": Suite(subjects=12, seeds=2, clustering_sizes=(1_000, 10_000, 100_000)),
          "full": Suite(subjects=150, seeds=3, clustering_sizes=(1_000, 10_000, 100_000))}


# ------------------------------------------------------------------------------------------- data sets


def labelled(data: Path) -> tuple[Path, dict[str, str]]:
    return data, read_labels(data / "labels.csv")


def datasets(suite: Suite) -> dict[str, tuple[Path, dict[str, str]]]:
    sets = {f"generated balanced ({suite.subjects} subjects)": labelled(generated(suite.subjects, True)),
            f"generated imbalanced ({suite.subjects} subjects)": labelled(generated(suite.subjects, False))}
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


# --------------------------------------------------------------------------------------------- quality


def quality(data: Path, labels: dict[str, str], suite: Suite, device: str) -> dict:
    cfg = DeepMCATConfig()
    cfg.train.device = device
    tic = time.time()
    collection = load_collection(data, cfg.preprocess, progress=False)
    load_s = time.time() - tic
    truth = unit_truth(collection.units, labels, data.resolve())
    if truth is None:  # keep the labelled units only
        keep = [i for i, u in enumerate(collection.units) if unit_truth([u], labels, data.resolve())]
        collection.units = [collection.units[i] for i in keep]
        collection.tensors = collection.tensors[keep]
        truth = unit_truth(collection.units, labels, data.resolve())
    c = len(set(truth))
    cfg.cluster.clusters = c
    groups = np.unique(collection.acquisitions, return_inverse=True)[1]
    pixels = np.ascontiguousarray(collection.tensors.reshape(len(truth), -1))
    projected = FeatureTransform.fit(pixels, cfg.cluster.pca_dim, whiten=False)(pixels)
    runs: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}

    def add(method: str, k: int, assignments) -> None:
        runs.setdefault(f"{method} | K={k // c}C", []).append({m: score(truth, assignments)[m] for m in METRICS})

    for seed in range(suite.seeds):
        for mult in (1, 2, 4):
            k = min(c * mult, len(truth) // 2)
            add("k-means on pixels", c * mult, kmeans(pixels, k, cfg.cluster, seed=seed).assignments)
            add("PCA + k-means", c * mult, kmeans(projected, k, cfg.cluster, seed=seed).assignments)
        torch.manual_seed(seed)
        net = DeepMCATNet(cfg.preprocess.channels, cfg.model)
        feats = extract_features(net.to(resolve_device(device)), collection.tensors, resolve_device(device))
        for mult in (1, 2, 4):
            add("random CNN", c * mult, fit_clusters(feats, min(c * mult, len(truth) // 2), cfg.cluster, seed,
                                                     groups)[1].assignments)
        for uniform in (True, False):
            cfg.train.seed, cfg.train.uniform_sampling = seed, uniform
            method = "DeepMCAT" + ("" if uniform else " (no uniform sampling)")
            out = HERE / ".models" / f"suite-{data.name}-{c}-{seed}-{int(uniform)}"
            tic = time.time()
            Trainer(cfg, out, progress=False).fit_collection(collection, resume=False)
            seconds[method] = seconds.get(method, 0.0) + time.time() - tic
            model = Model(out, device=device)
            feats = extract_features(model.net, collection.tensors, model.device)
            for mult in (1, 2, 4):
                add(method, c * mult, fit_clusters(feats, min(c * mult, len(truth) // 2), cfg.cluster, seed,
                                                   groups)[1].assignments)
    table = {name: {m: [float(np.mean([r[m] for r in rs])), float(np.std([r[m] for r in rs]))] for m in METRICS}
             for name, rs in runs.items()}
    return {"units": len(truth), "acquisitions": int(groups.max() + 1), "categories": c,
            "counts": {k: truth.count(k) for k in sorted(set(truth))}, "load_seconds": round(load_s, 1),
            "train_seconds_per_run": {m: round(s / suite.seeds, 1) for m, s in seconds.items()},
            "table": table, "runs": runs}


# ----------------------------------------------------------------------------------------------- speed


def clustering_probe(n: int) -> dict:
    """Time and memory of the clustering step (PCA-whitening + L2 + k-means, K = 48) on n random 128-d
    vectors: this process's resident memory before, and its peak (imports included)."""
    cfg = DeepMCATConfig().cluster
    before = rss_mb("VmRSS")
    x = np.random.default_rng(0).standard_normal((n, 128)).astype(np.float32)
    tic = time.time()
    transform = FeatureTransform.fit(x, cfg.pca_dim, whiten=True)
    kmeans(transform(x), 48, cfg, seed=0)
    return {"n": n, "seconds": round(time.time() - tic, 3), "rss_before_mb": before, "peak_rss_mb": rss_mb("VmHWM")}


def speed(suite: Suite, data: Path, device: str) -> dict:
    from sklearn.cluster import KMeans

    cfg = DeepMCATConfig()
    dev = resolve_device(device)
    tic = time.time()
    collection = load_collection(data, cfg.preprocess, progress=False)
    preprocess_s = time.time() - tic
    net = DeepMCATNet(cfg.preprocess.channels, cfg.model).to(dev)
    extract_features(net, collection.tensors[:64], dev)  # warm-up
    tic = time.time()
    feats = extract_features(net, collection.tensors, dev)
    extract_s = time.time() - tic
    x = FeatureTransform.fit(feats, cfg.cluster.pca_dim, True)(feats)
    big = np.ascontiguousarray(np.tile(x, (max(1, 10_000 // len(x)), 1)) +
                               np.random.default_rng(0).normal(0, 0.01, (max(1, 10_000 // len(x)) * len(x), x.shape[1])),
                               dtype=np.float32)
    k = 48
    tic = time.time()
    kmeans(big, k, cfg.cluster, seed=0)
    faiss_s = time.time() - tic
    tic = time.time()
    KMeans(k, n_init=cfg.cluster.nredo, max_iter=cfg.cluster.niter, random_state=0).fit(big)
    sklearn_s = time.time() - tic
    probes = []
    for n in suite.clustering_sizes:
        out = subprocess.run([sys.executable, "-m", "benchmarks.run", "--probe", str(n)], capture_output=True,
                             text=True, check=True, cwd=HERE.parent)
        probes.append(json.loads(out.stdout.strip().splitlines()[-1]))  # each N in its own process
    return {"units": len(collection.units), "preprocess_units_per_s": round(len(collection.units) / preprocess_s, 1),
            "feature_extraction_units_per_s": round(len(collection.units) / extract_s, 1),
            "kmeans_points": len(big), "kmeans_k": k, "faiss_seconds": round(faiss_s, 3),
            "sklearn_seconds": round(sklearn_s, 3), "sklearn_over_faiss": round(sklearn_s / faiss_s, 1),
            "clustering_step": probes}


def latency(model_dir: Path, data: Path, device: str) -> dict:
    from deepmcat.inference import classify_path

    model = Model(model_dir, device=device)
    series = sorted(p for p in data.rglob("*") if p.is_dir() and any(p.glob("*.dcm")))[:20]
    classify_path(model, series[0])  # warm-up
    ms = []
    for s in series:
        tic = time.perf_counter()
        classify_path(model, s)
        ms.append(1000 * (time.perf_counter() - tic))
    return {"series": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1)}


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
        train = ", ".join(f"{k} {v} s" for k, v in q.get("train_seconds_per_run", {}).items())
        lines += [f"### {name}: {q['units']} units, {q['acquisitions']} acquisitions, {q['categories']} categories "
                  f"(training per run: {train})", "",
                  "| method | K | purity | NMI | ARI | ACC | worst recall |", "|---|---|---|---|---|---|---|"]
        for key, row in q["table"].items():
            method, k = key.split(" | K=")
            lines.append(f"| {method} | {k} | " + " | ".join(fmt(row[mm], seeds) for mm in METRICS) + " |")
        lines.append("")
    if "speed" not in results:
        return "\n".join(lines + ["(stopped before the speed measurements)"])
    s = results["speed"]
    lines += ["### speed", "",
              f"- preprocessing: {s['preprocess_units_per_s']} units/s; feature extraction: "
              f"{s['feature_extraction_units_per_s']} units/s",
              f"- k-means of {s['kmeans_points']} points, K = {s['kmeans_k']}: faiss {s['faiss_seconds']} s, "
              f"scikit-learn {s['sklearn_seconds']} s ({s['sklearn_over_faiss']} x)",
              f"- inference per series (read + preprocess + predict): p50 {s['inference_latency']['p50_ms']} ms, "
              f"p95 {s['inference_latency']['p95_ms']} ms",
              "- clustering step (PCA-whitening + k-means K = 48, 128-d), each N in its own process: " + ", ".join(
                  f"N = {p['n']}: {p['seconds']} s, RSS {p.get('rss_before_mb', '?')} -> peak {p['peak_rss_mb']} MB"
                  for p in s["clustering_step"])]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=sorted(SUITES), default="quick")
    p.add_argument("--device", default="auto")
    p.add_argument("--seeds", type=int, help="training seeds per method (default: the suite's)")
    p.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    p.add_argument("--table", metavar="JSON", help="print the tables of an earlier run's results file and exit")
    args = p.parse_args()
    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())))
        return
    if args.probe:
        print(json.dumps(clustering_probe(args.probe)))
        return
    suite = SUITES[args.suite]
    if args.seeds:
        suite = replace(suite, seeds=args.seeds)
    started = time.time()
    results: dict = {"suite": args.suite, "settings": suite.__dict__, "machine": machine(), "quality": {}}
    sets = datasets(suite)
    packages = package_images()
    if isinstance(packages, str):
        results["quality"]["real package images (modality_bodypart)"] = {"skipped": packages}
    else:
        sets["real package images (modality_bodypart)"] = packages
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{args.suite}-{dt.date.today().isoformat()}.json"

    def save(complete: bool) -> None:
        """Written after every data set, so a stopped run keeps what it measured."""
        results["wall_seconds"] = round(time.time() - started, 1)
        results["complete"] = complete
        results["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        out.write_text(json.dumps(results, indent=1))

    for name, (data, labels) in sets.items():
        tic = time.time()
        try:
            results["quality"][name] = quality(data, labels, suite, args.device)
        except Exception as exc:  # one data set's failure is reported, the suite goes on
            results["quality"][name] = {"skipped": f"{type(exc).__name__}: {exc}"}
        results["quality"][name]["seconds"] = round(time.time() - tic, 1)
        print(f"{name}: done in {time.time() - tic:.0f} s", flush=True)
        save(complete=False)
    imbalanced = next(d for n, (d, _) in sets.items() if "imbalanced" in n)
    results["speed"] = speed(suite, imbalanced, args.device)
    model_dir = sorted((HERE / ".models").glob(f"suite-{imbalanced.name}-*-0-1"))[0]
    results["speed"]["inference_latency"] = latency(model_dir, imbalanced, args.device)
    save(complete=True)
    print(markdown(results))
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
