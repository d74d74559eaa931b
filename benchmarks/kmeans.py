"""faiss k-means against scikit-learn's, like for like (issue 20, item 7): the same points (a Gaussian mixture,
no duplicates), the same initial centroids, one run each, the same number of Lloyd iterations (scikit-learn's
tolerance set to 0 so that it does not stop early), at sizes where the choice matters.

    python benchmarks/kmeans.py [--sizes 10000 100000 1000000] [--dim 16] [--k 48] [--iterations 30]

Writes ``benchmarks/results/kmeans-<date>.json``: seconds and final objective (sum of squared distances) of each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402

from benchmarks.common import machine, save  # noqa: E402


def mixture(n: int, dim: int, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(0, 4, (k, dim))
    return (centres[rng.integers(0, k, n)] + rng.normal(0, 1, (n, dim))).astype(np.float32)


def objective(x: np.ndarray, centroids: np.ndarray) -> float:
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centroids, np.float32))
    d2, _ = index.search(x, 1)
    return float(d2.sum())


def compare(n: int, dim: int, k: int, iterations: int) -> dict:
    rng = np.random.default_rng(n)
    x = mixture(n, dim, k, rng)
    init = x[rng.choice(n, k, replace=False)].copy()
    tic = time.perf_counter()
    km = faiss.Kmeans(dim, k, niter=iterations, nredo=1, seed=0, max_points_per_centroid=10_000_000,
                      min_points_per_centroid=1)
    km.train(x, init_centroids=init)
    faiss_s = time.perf_counter() - tic
    tic = time.perf_counter()
    sk = KMeans(k, init=init, n_init=1, max_iter=iterations, tol=0.0, algorithm="lloyd").fit(x)
    sklearn_s = time.perf_counter() - tic
    return {"n": n, "dim": dim, "k": k, "iterations": iterations, "sklearn_iterations": int(sk.n_iter_),
            "faiss_seconds": round(faiss_s, 3), "sklearn_seconds": round(sklearn_s, 3),
            "sklearn_over_faiss": round(sklearn_s / faiss_s, 2),
            "faiss_objective": round(objective(x, km.centroids), 1),
            "sklearn_objective": round(objective(x, sk.cluster_centers_), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=16, help="the PCA dimension DeepMCAT clusters in")
    parser.add_argument("--k", type=int, default=48, help="4 x 12 categories: the training pseudo-labels")
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    rows = [compare(n, args.dim, args.k, args.iterations) for n in args.sizes]
    print("| points | faiss s | scikit-learn s | ratio | faiss objective | scikit-learn objective |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['faiss_seconds']} | {r['sklearn_seconds']} | {r['sklearn_over_faiss']} | "
              f"{r['faiss_objective']:.4g} | {r['sklearn_objective']:.4g} |")
    result = {"date": dt.date.today().isoformat(), "machine": machine(), "rows": rows}
    print(f"written to {save('kmeans-' + result['date'], result)}")


if __name__ == "__main__":
    main()
