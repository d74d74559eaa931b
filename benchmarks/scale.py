"""Archive scale (issue 19): time of each training stage, k-means time and peak resident memory as the number
of units N grows, with the canonical tensors read from the disk cache (:mod:`deepmcat.cache`).

    python benchmarks/scale.py [--sizes 1000 10000 100000] [--full 20000] [--timed-units 10000]

Decoding 100k units would take hours here, so the store is filled straight with canonical tensors: those of
a generated classic set (16 subjects), each copy shifted by a few pixels so that no two rows are equal. Each
N runs in its own process (so that its peak RSS is its own):

- feature extraction over all N units, and the clustering step (PCA + faiss k-means on acquisition means,
  3 units an acquisition as in a short stack), both timed in full;
- a warm-up (contrastive) pass and a clustering-epoch pass over ``--timed-units`` units of the epoch's order
  (all N when N is smaller): an epoch's time is N divided by that rate, plus, for a clustering epoch, the
  feature extraction and clustering of all N.

``--full N`` also trains a whole run (1 warm-up + 1 clustering epoch) on N units from the cache and, for
contrast, from memory, and reads N rows once through ``np.memmap`` and once through ``pread`` (what the cache
does): peak RSS of each. Writes ``results/scale-<date>.json`` and a PNG beside it, with a projection to 1M
units on one GPU from the GPU run's measured rates (``results/gpu-*.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import DATA, RESULTS, generated, machine, rss_mb, save  # noqa: E402
from deepmcat.cache import RowView, TensorCache  # noqa: E402
from deepmcat.config import DeepMCATConfig  # noqa: E402

STORE = DATA / "scale-cache"
#: units an acquisition (a short stack) and an examination, for the clustering and contrastive groups
UNITS_PER_ACQUISITION, UNITS_PER_STUDY = 3, 24
CONFIG = DeepMCATConfig().override(warmup_epochs=1, epochs=1, device="auto")


# ------------------------------------------------------------------------------------------- the store


def fill_store(n: int, seed_data: Path) -> None:
    """Make the store hold at least ``n`` rows: the seed set's tensors, copy k shifted by k pixels."""
    from deepmcat.data import load_collection

    cache = TensorCache(STORE)
    store = cache.store(CONFIG.preprocess)
    have = store.path.stat().st_size // store.row_bytes
    if have >= n:
        return
    seed = np.asarray(load_collection(seed_data, CONFIG.preprocess, progress=False, cache=cache).tensors)
    for start in range(have, n, 1000):
        idx = np.arange(start, min(n, start + 1000))
        rows = [np.roll(seed[i % len(seed)], i // len(seed), axis=(1, 2)) for i in idx]
        store.append([f"synthetic-{i}" for i in idx], rows)
        print(f"  store: {idx[-1] + 1} of {n} rows", end="\r", flush=True)
    print()


def view(n: int) -> RowView:
    store = TensorCache(STORE).store(CONFIG.preprocess)
    return RowView(store, np.arange(n))


def groups(n: int) -> tuple[list[str], list[str], list[str]]:
    ids = [f"u{i}" for i in range(n)]
    return ids, [f"a{i // UNITS_PER_ACQUISITION}" for i in range(n)], [f"s{i // UNITS_PER_STUDY}" for i in range(n)]


# ------------------------------------------------------------------------------------------- children


def stages(n: int, timed_units: int) -> dict:
    """One N: features and clustering of all units, and both training passes over ``timed_units`` of them.
    Uses the trainer's own steps (its private methods: the benchmark times exactly what an epoch runs)."""
    from deepmcat.sampling import grouped_order, uniform_cluster_sample
    from deepmcat.trainer import JointOptimizer, Trainer, TrainingData

    before = rss_mb("VmRSS")
    tensors = view(n)
    ids, acquisitions, studies = groups(n)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(CONFIG, tmp, progress=False)
        data = TrainingData.build(tensors, ids, acquisitions, studies, None)
        run = trainer._start(data, resume=False)
        timed = min(n, timed_units)
        tic = time.time()
        trainer._train_pass(run, data, grouped_order(data.study_ids, run.rng)[:timed], None, run.optimizer, "")
        warm = time.time() - tic
        tic = time.time()
        features = trainer._features(run.net, tensors)
        feature_s = time.time() - tic
        k = trainer._k_train(data)
        tic = time.time()
        _, result = trainer._cluster(features, k, data, seed=0)
        cluster_s = time.time() - tic
        run.net.reset_head(k)
        optimizer = JointOptimizer(run.optimizer, trainer._optimizer(run.net.head.parameters()))
        order = uniform_cluster_sample(result.assignments, n, run.rng)[:timed]
        tic = time.time()
        trainer._train_pass(run, data, order, result.assignments, optimizer, "")
        train = time.time() - tic
    warm_rate, train_rate = timed / warm, timed / train
    return {"n": n, "device": str(trainer.device), "timed_units": timed,
            "features_s": round(feature_s, 2), "features_units_per_s": round(n / feature_s, 1),
            "kmeans_s": round(cluster_s, 3), "kmeans_points": int(len(set(acquisitions))), "k": k,
            "warmup_units_per_s": round(warm_rate, 1), "cluster_pass_units_per_s": round(train_rate, 1),
            "warmup_epoch_s": round(n / warm_rate, 1),
            "cluster_epoch_s": round(feature_s + cluster_s + n / train_rate, 1),
            "rss_before_mb": before, "peak_rss_mb": rss_mb("VmHWM")}


def full_run(n: int, source: str) -> dict:
    """A whole training run (1 warm-up + 1 clustering epoch, publication included) on n units read from the
    cache, or copied into memory first (what every run did before the cache)."""
    from deepmcat.trainer import Trainer

    tensors = view(n)
    if source == "memory":
        tensors = np.asarray(tensors)
    ids, acquisitions, studies = groups(n)
    tic = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(CONFIG, tmp, progress=False).fit(tensors, ids, acquisitions=acquisitions, studies=studies)
    return {"n": n, "tensors": source, "seconds": round(time.time() - tic, 1), "peak_rss_mb": rss_mb("VmHWM")}


def read_pass(n: int, how: str) -> dict:
    """Every row once, in random batches of 64, through np.memmap or the cache's pread."""
    tensors = view(n)
    rows = np.random.default_rng(0).permutation(n)
    mapped = np.memmap(tensors.store.path, np.float32, "r", shape=(n, *tensors.store.shape)) if how == "mmap" else None
    tic, total = time.time(), 0.0
    for start in range(0, n, 64):
        idx = np.sort(rows[start : start + 64])
        batch = mapped[idx] if mapped is not None else tensors[idx]
        total += float(batch[:, 0, 0, 0].sum())
    return {"n": n, "read": how, "seconds": round(time.time() - tic, 2), "peak_rss_mb": rss_mb("VmHWM")}


def child(kind: str, *args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *map(str, args)], capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"{kind} {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- report


def projection(rows: list[dict]) -> dict | None:
    """1M units on one GPU from the GPU run's measured per-unit rates (the newest results/gpu-*.json) and
    this run's k-means time scaled linearly in N (k-means costs N x K x iterations)."""
    runs = sorted(RESULTS.glob("gpu-2*.json"))
    if not runs:
        return None
    gpu = json.loads(runs[-1].read_text())
    n, cfg = 1_000_000, DeepMCATConfig().train
    largest = max(rows, key=lambda r: r["n"])
    features = n / gpu["features_units_per_s"]["cuda"]
    kmeans = largest["kmeans_s"] * n / largest["n"]
    warm = n / gpu["train"]["cuda"]["stages"]["warm-up"]["units_per_s"]
    cluster = features + kmeans + n / gpu["train"]["cuda"]["stages"]["cluster"]["units_per_s"]
    total = cfg.warmup_epochs * warm + cfg.epochs * cluster + features
    return {"units": n, "from": runs[-1].name, "gpu": gpu["gpu"]["name"],
            "warmup_epoch_s": round(warm), "cluster_epoch_s": round(cluster),
            "default_run_hours": round(total / 3600, 1),
            "epochs": f"{cfg.warmup_epochs} warm-up + {cfg.epochs} clustering",
            "store_gb": round(n * np.prod((CONFIG.preprocess.channels, CONFIG.preprocess.size,
                                            CONFIG.preprocess.size)) * 4 / 1e9, 1),
            "read_mb_per_s_needed": round(gpu["train"]["cuda"]["stages"]["warm-up"]["units_per_s"]
                                          * CONFIG.preprocess.channels * CONFIG.preprocess.size ** 2 * 4 / 1e6),
            "assumptions": "per-unit GPU rates as measured on 2,540 units (batch 64) stay constant in N; the "
                           "store is read at least that fast (page cache or NVMe); k-means time linear in N "
                           "from this machine's largest N (CPU faiss, on acquisition means)"}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("warmup_epoch_s", "warm-up epoch"), ("cluster_epoch_s", "clustering epoch"),
                       ("features_s", "feature extraction"), ("kmeans_s", "PCA + k-means")):
        ax1.loglog(n, [r[key] for r in rows], "o-", label=label)
    ax1.set(xlabel="units N", ylabel="seconds", title=f"time per stage ({rows[0]['device']})")
    ax1.legend()
    ax2.semilogx(n, [r["peak_rss_mb"] / 1024 for r in rows], "o-", label="peak RSS (tensors from the cache)")
    ax2.semilogx(n, [r["n"] * CONFIG.preprocess.channels * CONFIG.preprocess.size ** 2 * 4 / 2**30 for r in rows],
                 "--", color="grey", label="the tensors themselves (what memory held before)")
    ax2.set(xlabel="units N", ylabel="GiB", title="memory")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--full", type=int, default=20_000, help="N of the whole training runs (0: none)")
    p.add_argument("--timed-units", dest="timed_units", type=int, default=10_000)
    p.add_argument("--keep", action="store_true", help="keep the filled store (benchmarks/.data/scale-cache)")
    p.add_argument("--resume", action="store_true", help="keep what today's JSON already holds, run the rest")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        fn = {"stages": stages, "full": full_run, "read": read_pass}[kind]
        print(json.dumps(fn(int(rest[0]), *(int(x) if x.isdigit() else x for x in rest[1:]))))
        return

    from deepmcat.generate import generate

    seed_data = generated(DATA / "classic-imbalanced-16s-seed7",
                          lambda out: generate(out, 16, seed=7, balanced=False, progress=False, family="classic"))
    fill_store(max(args.sizes + [args.full]), seed_data)
    name = f"scale-{dt.date.today().isoformat()}"
    result: dict = {"date": dt.date.today().isoformat(), "machine": machine(), "timed_units": args.timed_units,
                    "units_per_acquisition": UNITS_PER_ACQUISITION, "stages": [], "full_runs": [], "reads": []}
    previous = RESULTS / f"{name}.json"
    if args.resume and previous.is_file():  # what an interrupted run of today measured is kept, not re-run
        result.update({k: v for k, v in json.loads(previous.read_text()).items() if k in result})
    jobs = [("stages", (n, args.timed_units), "n", n) for n in sorted(args.sizes)]
    if args.full:
        jobs += [("full_runs", (args.full, source), "tensors", source) for source in ("cache", "memory")]
        jobs += [("reads", (args.full, how), "read", how) for how in ("pread", "mmap")]
    kinds = {"stages": "stages", "full_runs": "full", "reads": "read"}
    try:
        for part, child_args, field, value in jobs:
            if any(r.get(field) == value and r["n"] == child_args[0] for r in result[part]):
                continue
            result[part].append(child(kinds[part], *child_args))
            print(json.dumps(result[part][-1]), flush=True)
            save(name, result)  # after every measurement: a failure later loses nothing
    finally:
        if not args.keep:
            shutil.rmtree(STORE, ignore_errors=True)
    result["stages"].sort(key=lambda r: r["n"])
    result["projection_1m_gpu"] = projection(result["stages"])
    path = save(name, result)
    plot(result["stages"], RESULTS / f"{name}.png")
    print(f"written {path} and {name}.png")


if __name__ == "__main__":
    main()
