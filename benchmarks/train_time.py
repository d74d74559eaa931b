"""What ``deepmcat train`` costs with the defaults on an archive of about 1,500 units (issue 15: its CPU time
must stay under 15 minutes on the 2-core machine).

    python -m benchmarks.train_time [--subjects 60] [--seed 11] [--device auto] [--centre-crop F] [--tag TAG]

Generates the classic family's imbalanced subjects once (60 subjects: ~1,500 units), runs ``deepmcat train
--cache off`` in a child process (reading the files is part of the cost) and reports its wall time, CPU time
(user + system, the child and its reading workers) and peak RSS, and the units trained on. Writes
``benchmarks/results/train-time-<units>u-<date>[-TAG].json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks.common import DATA, generated, machine, save
from deepmcat.generate import generate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", type=int, default=60)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--device", default="auto")
    p.add_argument("--centre-crop", dest="centre_crop", type=float,
                   help="train's --centre-crop (default: train's own default), to price the second scale")
    p.add_argument("--tag", default="", help="added to the JSON's name (runs of one day keep apart)")
    args = p.parse_args()

    data = generated(DATA / f"classic-imbalanced-{args.subjects}s-seed{args.seed}",
                     lambda out: generate(out, args.subjects, seed=args.seed, balanced=False, progress=False))
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "deepmcat.cli", "train", "--data", str(data), "--out", out,
                              "--clusters", "12", "--device", args.device, "--cache", "off"]
                             + ([] if args.centre_crop is None else ["--centre-crop", str(args.centre_crop)]),
                             capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    units = int(re.search(r"-> (\d+) units", run.stdout + run.stderr).group(1))
    training = re.search(r"^training DeepMCAT.*$", run.stdout + run.stderr, re.M)
    result = {"machine": machine(), "date": dt.date.today().isoformat(), "args": vars(args), "units": units,
              "training": training.group(0) if training else None,
              "wall_s": round(wall, 1),
              "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
              "user_s": round(after.ru_utime - before.ru_utime, 1),
              "system_s": round(after.ru_stime - before.ru_stime, 1),
              "peak_rss_mb": round(after.ru_maxrss / 1024, 1)}
    print(result)
    crop = "" if args.centre_crop is None else f"-centre-crop-{args.centre_crop:g}"
    tag = f"-{args.tag}" if args.tag else ""
    print("saved", save(f"train-time-{units}u-{result['date']}{crop}{tag}", result))


if __name__ == "__main__":
    main()
