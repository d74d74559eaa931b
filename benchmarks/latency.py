"""Inference latency through the real MONAI Label server, one series per request.

    python -m benchmarks.latency                           # 60 uploads + 60 by-id requests, one client
    python -m benchmarks.latency --clients 8 --requests 240  # load: 8 concurrent clients

A model with the 8 x 96 x 96 input is trained briefly (latency does not depend on its quality), served with
``monailabel start_server`` on 127.0.0.1, and asked for the category of an 8-frame 96 x 96 cine series, by
upload (what 3D Slicer does) and by datastore id, through ``MONAILabelClient``. Client-side wall times give
p50/p95/max; the server's resident memory is read before and after. Writes
``benchmarks/results/latency-<clients>c-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil
from monailabel.client.client import MONAILabelClient

from benchmarks.common import HERE, RESULTS, machine
from deepmcat import checkpoint
from deepmcat.config import DeepMCATConfig
from deepmcat.data import load_collection
from deepmcat.generate import generate
from deepmcat.serve import start_server
from deepmcat.trainer import Trainer

FRAMES, SIZE = 8, 96


def prepare(work: Path) -> tuple[Path, Path, Path]:
    """(studies folder, model folder, the 8 x 96 x 96 series file)."""
    studies, model_dir = work / "studies", work / "model"
    if not (model_dir / checkpoint.MODEL).is_file():
        shutil.rmtree(work, ignore_errors=True)
        generate(studies, subjects=2, seed=11, balanced=True, fmt="nifti", progress=False)
        (studies / "labels.csv").unlink()
        cfg = DeepMCATConfig()
        cfg.preprocess.frames, cfg.preprocess.size = FRAMES, SIZE
        cfg.cluster.clusters, cfg.train.epochs, cfg.train.warmup_epochs = 12, 1, 2
        Trainer(cfg, model_dir, progress=False).fit_collection(load_collection(studies, cfg.preprocess, False))
    series = studies / "latency_cine_8x96x96.nii.gz"
    if not series.is_file():
        source = nib.load(next(studies.glob("*cine_4ch.nii.gz")))
        arr = np.asarray(source.dataobj, np.float32)  # (x, y, 1, t)
        frames = np.linspace(0, arr.shape[-1] - 1, FRAMES).round().astype(int)
        x0, y0 = (arr.shape[0] - SIZE) // 2, (arr.shape[1] - SIZE) // 2
        cut = arr[x0 : x0 + SIZE, y0 : y0 + SIZE, :, frames]
        nib.save(nib.Nifti1Image(cut, source.affine), series)
    return studies, model_dir, series


def timed(call) -> float:
    tic = time.perf_counter()
    call()
    return 1000 * (time.perf_counter() - tic)


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1), "max_ms": round(float(a.max()), 1),
            "mean_ms": round(float(a.mean()), 1)}


def server_rss_mb(pid: int) -> float:
    """Resident memory of the server process itself (its train/scoring subprocesses come and go)."""
    return psutil.Process(pid).memory_info().rss / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=60, help="requests of each kind (upload, by id)")
    p.add_argument("--clients", type=int, default=1, help="concurrent clients")
    args = p.parse_args()

    studies, model_dir, series = prepare(HERE / ".data" / "latency")
    server = start_server(studies, {"model_dir": model_dir, "clusters": 12}, log_path=HERE / ".data" / "latency.log")
    image_id = series.name.split(".nii")[0]
    failures = 0
    try:
        client = MONAILabelClient(server.url)
        for _ in range(3):  # warm-up: first model load, first ITK reader
            client.infer("deepmcat", image_id, {})
        rss_before = server_rss_mb(server.process.pid)

        def one(kind: str) -> float:
            nonlocal failures
            c = MONAILabelClient(server.url)
            try:
                if kind == "upload":
                    return timed(lambda: c.infer("deepmcat", "", {}, file=str(series)))
                return timed(lambda: c.infer("deepmcat", image_id, {}))
            except Exception:
                failures += 1
                return float("nan")

        results = {}
        tic = time.time()
        for kind in ("upload", "by_id"):
            with ThreadPoolExecutor(args.clients) as pool:
                ms = list(pool.map(one, [kind] * args.requests))
            results[kind] = percentiles([m for m in ms if m == m])
        wall = time.time() - tic
        rss_after = server_rss_mb(server.process.pid)
    finally:
        server.stop()

    mach = machine()
    print(f"\nDeepMCAT inference through MONAI Label, {FRAMES}x{SIZE}x{SIZE} cine series, {args.clients} "
          f"client(s), {mach['processor']} x{mach['cpus']} {mach['gpu'] or 'CPU only'}\n")
    print("| request | n | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|")
    for kind, r in results.items():
        print(f"| {kind} | {r['n']} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} |")
    print(f"\nfailures: {failures}; server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after; "
          f"{2 * args.requests / wall:.1f} requests/s")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"latency-{args.clients}c-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps({
        "input": f"{FRAMES}x{SIZE}x{SIZE}", "clients": args.clients, "requests_per_kind": args.requests,
        "results": results, "failures": failures, "server_rss_mb": {"before": round(rss_before, 1),
                                                                    "after": round(rss_after, 1)},
        "requests_per_second": round(2 * args.requests / wall, 2), "machine": mach,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }, indent=1))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
