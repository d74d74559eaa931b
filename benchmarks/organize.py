"""``deepmcat organize`` at archive scale: throughput, peak memory, and resuming after a kill.

    python -m benchmarks.organize --series 2000 [--interrupt-at 0.3]

Generates an imbalanced CMR archive with at least ``--series`` DICOM series (cached in benchmarks/.data),
trains a small model (quality is not measured here), then runs ``deepmcat organize`` as a subprocess, kills
it (SIGKILL) once ``--interrupt-at`` of the series are done and runs the same command again to the end. Peak resident
memory of each run is sampled every 0.2 s. Writes ``benchmarks/results/organize-<series>-<date>.json``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from benchmarks.common import HERE, RESULTS, cached, generated, machine, source_stamp
from deepmcat import checkpoint
from deepmcat.generate import generate
from deepmcat.sources import FolderSource

SERIES_PER_SUBJECT = 10  # imbalanced protocol: about 10 DICOM series a subject


def finished_rows(out: Path) -> int:
    try:
        with open(out / "series.csv", "rb") as fh:
            return max(0, fh.read().count(b"\n") - 1)
    except OSError:
        return 0


def run(cmd: list[str], out: Path, kill_at: int | None = None) -> dict:
    """Run ``cmd``; sample its peak RSS; SIGKILL it once ``kill_at`` series are written, when given."""
    tic = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak, killed = 0, False
    while proc.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)]))
        except psutil.Error:
            pass
        if kill_at is not None and finished_rows(out) >= kill_at:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.2)
    out = proc.communicate()[0]
    return {"seconds": round(time.time() - tic, 1), "peak_rss_mb": round(peak / 2**20, 1), "killed": killed,
            "returncode": proc.returncode, "tail": out.strip().splitlines()[-3:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", type=int, default=2000)
    p.add_argument("--interrupt-at", dest="interrupt", type=float, default=0.3,
                   help="fraction of the series after which the first run is killed")
    args = p.parse_args()

    subjects = math.ceil(args.series / SERIES_PER_SUBJECT) + 1
    data = generated(HERE / ".data" / f"archive-{subjects}s",
                     lambda out: generate(out, subjects, seed=0, balanced=False, wrong_descriptions=0.1))
    n_series = len(FolderSource(data))
    bin_dir = Path(sys.executable).parent

    def train(model: Path) -> None:
        small = generated(HERE / ".data" / "archive-train-4s",
                          lambda out: generate(out, 4, seed=1, balanced=False, progress=False))
        subprocess.run([str(bin_dir / "deepmcat"), "train", "--data", str(small), "--out", str(model), "--clusters",
                        "12", "--warmup-epochs", "10", "--epochs", "1", "--quiet"], check=True)

    model = cached(HERE / ".models" / "organize-small", source_stamp(), checkpoint.MODEL, train)
    out = HERE / ".data" / f"organize-out-{subjects}s"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    cmd = [str(bin_dir / "deepmcat"), "organize", "--model", str(model), "--source", str(data), "--out", str(out),
           "--quiet", "--device", "cpu"]
    first = run(cmd, out, kill_at=int(args.interrupt * n_series))
    with open(out / "series.csv", newline="") as fh:
        done_after_kill = len(list(csv.DictReader(fh)))
    second = run(cmd, out)
    with open(out / "series.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    match = re.search(r"organized (\d+) series \((\d+) now, (\d+) from an earlier run; ([\d.]+) series/s\)",
                      " ".join(second["tail"]))
    now, before, rate = (int(match.group(2)), int(match.group(3)), float(match.group(4))) if match else (0, 0, 0.0)
    result = {
        "series": n_series, "files": sum(1 for _ in data.rglob("*.dcm")), "rows": len(rows),
        "unique_rows": len({r["series_uid"] for r in rows}), "done_when_killed": done_after_kill,
        "second_run_processed": now, "second_run_found_done": before, "series_per_second": rate,
        "flagged_headers": sum(r["header_agrees"] == "no" for r in rows), "first_run": first, "second_run": second,
        "machine": machine(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    ok = (len(rows) == n_series == result["unique_rows"] and before == done_after_kill and now + before == n_series)
    result["resume_ok"] = ok
    print(f"\n{n_series} series ({result['files']} files), {machine()['processor']} x{os.cpu_count()} "
          f"{machine()['gpu'] or 'CPU only'}\n")
    print("| run | seconds | peak RSS MB | series done |\n|---|---|---|---|")
    print(f"| killed at {args.interrupt:.0%} | {first['seconds']} | {first['peak_rss_mb']} | {done_after_kill} |")
    print(f"| resumed | {second['seconds']} | {second['peak_rss_mb']} | {now} more ({rate} series/s) |")
    print(f"\nresume {'OK' if ok else 'FAILED'}: {len(rows)} rows, {result['unique_rows']} distinct series")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"organize-{n_series}-{dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
