"""Scaling of training with torch.distributed: 1 process vs ``torchrun --nproc_per_node 2`` (and more).

    python -m benchmarks.distributed [--subjects 8] [--procs 1 2] [--warmup-epochs 10 --epochs 2]

Same data, settings, seed and global batch (``--batch-size`` split over the processes); every run gets all
the machine's cores (split between its processes with
OMP_NUM_THREADS). On a CPU machine the processes use gloo, on GPUs NCCL (one GPU each). Reports wall time,
training throughput (units x epochs / s) and quality against the generator's categories. Writes
``benchmarks/results/distributed-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import HERE, RESULTS, generated, machine
from deepmcat.labels import read_labels, unit_truth
from deepmcat.data import load_collection
from deepmcat.generate import generate
from deepmcat.inference import Model
from deepmcat.metrics import evaluate
from deepmcat.serve import free_port


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--warmup-epochs", dest="warmup", type=int, default=10)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=64, help="global batch (split over ranks)")
    args = p.parse_args()

    data = generated(HERE / ".data" / f"cmr-imbalanced-{args.subjects}s-seed0",
                     lambda out: generate(out, args.subjects, seed=0, balanced=False, progress=False))
    bin_dir = Path(sys.executable).parent
    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    common = ["train", "--data", str(data), "--clusters", "12", "--warmup-epochs", str(args.warmup), "--epochs",
              str(args.epochs), "--seed", "0", "--fresh", "--quiet"]
    rows = []
    for n in args.procs:
        out = HERE / ".models" / f"distributed-{n}"
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // n)))
        per_rank = ["--batch-size", str(max(2, args.batch_size // n))]  # the same global batch for every n
        if n == 1:
            cmd = [str(bin_dir / "deepmcat"), *common, *per_rank, "--out", str(out)]
        else:
            cmd = [str(bin_dir / "torchrun"), "--nproc_per_node", str(n), "--master_addr", "127.0.0.1",
                   "--master_port", str(free_port()), "-m", "deepmcat.cli", *common, *per_rank, "--out", str(out),
                   "--distributed"]
        tic = time.time()
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        seconds = time.time() - tic
        model = Model(out, device="cpu")
        collection = load_collection(data, model.config.preprocess, progress=False)
        truth = unit_truth(collection.units, read_labels(data / "labels.csv"), data.resolve())
        scores = evaluate(truth, [q.cluster for q in model.predict(collection.tensors, acquisitions=collection.acquisitions,
                                                                     structure=collection.structure)])
        units = len(collection.units)
        rows.append({"processes": n, "threads_per_process": int(env["OMP_NUM_THREADS"]), "seconds": round(seconds, 1),
                     "units": units, "units_x_epochs_per_s": round(units * (args.warmup + args.epochs) / seconds, 1),
                     **{m: round(float(scores[m]), 4) for m in ("purity", "nmi", "ari")}})
        print(rows[-1], flush=True)
    mach = machine()
    print(f"\n{rows[0]['units']} units, {args.warmup}+{args.epochs} epochs, {mach['processor']} x{cores}, "
          f"{gpus} GPU(s)\n")
    print("| processes | threads each | seconds | units x epochs / s | purity | NMI |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['threads_per_process']} | {r['seconds']} | {r['units_x_epochs_per_s']} | "
              f"{r['purity']:.3f} | {r['nmi']:.3f} |")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"distributed-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps({"rows": rows, "subjects": args.subjects, "machine": mach,
                                "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}, indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
