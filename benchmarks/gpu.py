"""The GPU figures next to the same machine's CPU figures (issue 19): decoding, feature extraction and
training throughput, k-means time, peak GPU memory, and the quality of a CUDA-trained model.

    python benchmarks/gpu.py [--subjects 100] [--device cuda]

Writes ``benchmarks/results/gpu-<date>.json`` (and a copy into ``$OUT`` when that is set). ``--device cpu``
runs the same steps without a GPU (a dry run of this script; its JSON is named ``gpu-dryrun-cpu-<date>``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import machine, save  # noqa: E402
from deepmcat.clustering import faiss_gpus, kmeans  # noqa: E402
from deepmcat.config import ClusterConfig, DeepMCATConfig  # noqa: E402
from deepmcat.data import load_collection, load_units  # noqa: E402
from deepmcat.features import extract_features  # noqa: E402
from deepmcat.generate import generate  # noqa: E402
from deepmcat.inference import Model  # noqa: E402
from deepmcat.labels import read_labels  # noqa: E402
from deepmcat.model import DeepMCATNet  # noqa: E402
from deepmcat.parallel import default_workers  # noqa: E402
from deepmcat.predictions import evaluate_files, predict_rows, PRED_COLUMNS  # noqa: E402
from deepmcat.tables import write_csv  # noqa: E402
from deepmcat.trainer import Trainer  # noqa: E402


def timed(fn):
    tic = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tic


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def feature_rate(tensors: np.ndarray, cfg: DeepMCATConfig, device: torch.device) -> float:
    """Units per second through the backbone (after one warm-up batch)."""
    net = DeepMCATNet(cfg.preprocess.channels, cfg.model, 8, cfg.preprocess.views).to(device)
    extract_features(net, tensors[:256], device, cfg.train.amp)
    sync(device)
    _, seconds = timed(lambda: (extract_features(net, tensors, device, cfg.train.amp), sync(device)))
    return len(tensors) / seconds


def stage_rates(history: list[dict], n_units: int) -> dict:
    """Units per second of each training stage, from the per-epoch seconds the trainer records."""
    rates = {}
    for stage in ("warm-up", "cluster"):
        seconds = [h["seconds"] for h in history if h["stage"] == stage]
        if seconds:
            rates[stage] = {"epochs": len(seconds), "seconds_per_epoch": round(float(np.median(seconds)), 2),
                            "units_per_s": round(n_units / float(np.median(seconds)), 1)}
    return rates


def train(collection, cfg: DeepMCATConfig, out: Path, truth_labels: Path) -> dict:
    device = torch.device(cfg.train.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result, seconds = timed(lambda: Trainer(cfg, out, progress=False).fit_collection(collection, resume=False))
    figures = {"seconds": round(seconds, 1), "stages": stage_rates(result.history, len(collection.units))}
    if device.type == "cuda":
        figures["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    return figures


def quality(model_dir: Path, collection, data: Path, device: str) -> dict:
    rows = predict_rows(Model(model_dir, device=device), collection, data)
    write_csv(rows, model_dir / "predictions.csv", PRED_COLUMNS)
    scores = evaluate_files(model_dir / "predictions.csv", data / "labels.csv", level="acquisition")
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores.items() if k != "composition"}


def kmeans_seconds(n: int, k: int, d: int = 128) -> float:
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    return round(timed(lambda: kmeans(x, k, ClusterConfig(), seed=0))[1], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cpu-epochs", type=int, default=1, help="warm-up and cluster epochs of the CPU run")
    parser.add_argument("--work", help="folder for data and models (default: a temporary one)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU: nothing to measure (use --device cpu for a dry run)")
    work = Path(args.work or tempfile.mkdtemp(prefix="deepmcat-gpu-"))
    data = work / "data"
    workers = default_workers()
    report: dict = {"date": dt.date.today().isoformat(), "machine": machine(), "workers": workers,
                    "subjects": args.subjects, "faiss_gpus": faiss_gpus()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        report["gpu"] = {"name": props.name, "memory_gb": round(props.total_memory / 1e9, 1),
                         "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported()}
    print(json.dumps(report, indent=1), flush=True)

    _, seconds = timed(lambda: generate(data, args.subjects, seed=11, balanced=False, progress=False, workers=0))
    report["generate_seconds"] = round(seconds, 1)
    cfg = DeepMCATConfig().override(clusters=len(set(read_labels(data / "labels.csv").values())),
                                    device=str(device))
    collection, seconds = timed(lambda: load_collection(data, cfg.preprocess, progress=False, workers=0))
    n = len(collection.units)
    sample = collection.units[: min(n, 300)]
    _, one_core = timed(lambda: load_units(sample, cfg.preprocess, progress=False, workers=1))
    report["decode"] = {"units": n, "files": collection.n_files, "seconds": round(seconds, 1),
                        "units_per_s": round(n / seconds, 1),  # headers and pixels, all workers
                        "decode_only_one_core_units_per_s": round(len(sample) / one_core, 1)}
    print("decode", report["decode"], flush=True)

    cpu_rate = feature_rate(collection.tensors[:1024], cfg, torch.device("cpu"))
    report["features_units_per_s"] = {"cpu": round(cpu_rate, 1)}
    if device.type == "cuda":
        report["features_units_per_s"]["cuda"] = round(feature_rate(collection.tensors, cfg, device), 1)
    print("features", report["features_units_per_s"], flush=True)

    report["train"] = {str(device): train(collection, cfg, work / "model", data)}
    report["quality_acquisition_level"] = quality(work / "model", collection, data, str(device))
    print("train", report["train"], "\nquality", report["quality_acquisition_level"], flush=True)
    if device.type == "cuda":
        cpu_cfg = cfg.override(device="cpu", warmup_epochs=args.cpu_epochs, epochs=args.cpu_epochs)
        report["train"]["cpu"] = train(collection, cpu_cfg, work / "model-cpu", data)
        print("train cpu", report["train"]["cpu"], flush=True)

    k = 4 * cfg.cluster.clusters
    report["kmeans_seconds"] = {"units": {"n": n, "k": k, "seconds": kmeans_seconds(n, k)},
                                "100k": {"n": 100_000, "k": k, "seconds": kmeans_seconds(100_000, k)}}
    report["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    print("kmeans", report["kmeans_seconds"], "peak RSS", report["peak_rss_gb"], "GB", flush=True)

    name = f"gpu-{report['date']}" if device.type == "cuda" else f"gpu-dryrun-cpu-{report['date']}"
    print(f"written to {save(name, report)}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
