"""``deepmcat watch`` on arrival: how soon a new series has its category in Orthanc, and how many series a
second it keeps up with.

    python -m benchmarks.watch [--subjects 6] [--stable-age 2] [--trickle 5] [--model MODEL_DIR]

Starts Debian's Orthanc (``scripts/start_orthanc.sh``, ``StableAge`` = ``--stable-age``) and the watcher, then
uploads generated series: ``--trickle`` of them one at a time, each after the previous one has its category
(the delay from a series' last instance to its ``DeepMCATCategory`` metadata, which includes the stable age
and the poll), then all the others back to back (the rate at which categories appear once the watcher is
busy). Without ``--model`` a small model is trained first (quality is not measured here). Writes
``benchmarks/results/watch-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, save
from deepmcat.cli import main as deepmcat
from deepmcat.generate import generate
from deepmcat.serve import OrthancProcess
from deepmcat.sources import FolderSource

POLL = 0.25  # how often this script looks for the metadata (the resolution of the delays)


def categorised(pacs: OrthancProcess) -> dict[str, float]:
    """Orthanc series id → when this script first saw its category (now) for those that have one."""
    done = {}
    for series in pacs.get("/series"):
        meta = pacs.get(f"/series/{series}/metadata")
        if "DeepMCATCategory" in meta or "DeepMCATError" in meta:
            done[series] = time.time()
    return done


def wait_for(pacs: OrthancProcess, n: int, seen: dict[str, float], timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while len(seen) < n:
        if time.time() > deadline:
            raise TimeoutError(f"{len(seen)} of {n} series categorised after {timeout:.0f} s")
        for series, when in categorised(pacs).items():
            seen.setdefault(series, when)
        time.sleep(POLL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", type=int, default=6)
    p.add_argument("--stable-age", type=int, default=2)
    p.add_argument("--trickle", type=int, default=5)
    p.add_argument("--model")
    p.add_argument("--poll", type=float, default=0.5, help="the watcher's --poll")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="deepmcat-watch-bench-"))
    data = work / "data"
    generate(data, args.subjects, seed=77, balanced=False, progress=False)
    uploads = [sorted({f for u in ref.units for f in u.files}) for ref in FolderSource(data).series()]
    model = Path(args.model) if args.model else work / "model"
    if not args.model:
        assert deepmcat(["train", "--data", str(data), "--out", str(model), "--clusters", "12", "--warmup-epochs", "15",
                         "--epochs", "1", "--device", "cpu", "--quiet"]) == 0

    pacs = OrthancProcess(work / "orthanc", stable_age=args.stable_age)
    log = work / "watch.log"
    watcher = subprocess.Popen([sys.executable, "-m", "deepmcat.cli", "watch", "--model", str(model), "--orthanc",
                                pacs.url, "--out", str(work / "out"), "--poll", str(args.poll), "--device", "cpu"],
                               stdout=open(log, "w"), stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        while "watching" not in log.read_text():
            assert watcher.poll() is None, log.read_text()
            time.sleep(0.2)
        seen: dict[str, float] = {}
        delays = []
        for i, files in enumerate(uploads[:args.trickle]):
            pacs.upload(files)
            uploaded = time.time()
            wait_for(pacs, i + 1, seen)
            delays.append(max(seen.values()) - uploaded)
            print(f"series {i + 1}: category {delays[-1]:.1f} s after its last instance", flush=True)
        burst = uploads[args.trickle:]
        tic = time.time()
        for files in burst:
            pacs.upload(files)
        upload_seconds = time.time() - tic
        wait_for(pacs, len(uploads), seen)
        burst_done = sorted(seen.values())[args.trickle:]
        rate = (len(burst_done) - 1) / (burst_done[-1] - burst_done[0]) if len(burst_done) > 1 else None
        per_series = [float(line.rsplit(" in ", 1)[1].split()[0]) for line in log.read_text().splitlines()
                      if line.startswith("INFO: series ") and " in " in line]
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(60)
        pacs.stop()

    result = {
        "machine": machine(), "date": dt.date.today().isoformat(), "subjects": args.subjects,
        "series": len(uploads), "files": sum(1 for _ in data.rglob("*.dcm")), "stable_age_s": args.stable_age,
        "watcher_poll_s": args.poll,
        "delay_after_last_instance_s": {"median": round(statistics.median(delays), 2), "max": round(max(delays), 2),
                                        "each": [round(d, 2) for d in delays]},
        "burst": {"series": len(burst), "upload_s": round(upload_seconds, 1),
                  "series_per_s": round(rate, 2) if rate else None,
                  "last_category_after_last_upload_s": round(max(seen.values()) - (tic + upload_seconds), 1)},
        "categorise_one_series_s": {"median": round(statistics.median(per_series), 3),
                                    "p95": round(sorted(per_series)[int(0.95 * (len(per_series) - 1))], 3)},
    }
    print(result)
    print(f"saved {save(f'watch-{dt.date.today().isoformat()}', result)}")


if __name__ == "__main__":
    main()
