"""Reading speed on the main job's data (issue 19): files → canonical tensors without the cache (one process,
then one per core), through an empty cache and a filled one, and ``deepmcat predict`` run twice on one cache.

    python benchmarks/reading.py [--subjects 16] [--seed 0]

The data is what ``deepmcat demo`` generates (classic family, imbalanced, seed 0). Writes
``results/reading-<subjects>s-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DATA, generated, machine, save  # noqa: E402
from deepmcat.cache import TensorCache  # noqa: E402
from deepmcat.config import PreprocessConfig  # noqa: E402
from deepmcat.data import load_collection  # noqa: E402
from deepmcat.parallel import default_workers  # noqa: E402


def timed_load(data: Path, workers: int, cache: TensorCache | None, repeats: int = 1) -> dict:
    """Files → canonical tensors, ``repeats`` times (the median is the figure: this machine's timings vary
    by ±20 % from run to run)."""
    times = []
    for _ in range(repeats):
        tic = time.time()
        collection = load_collection(data, PreprocessConfig(), progress=False, workers=workers, cache=cache)
        times.append(time.time() - tic)
    seconds = statistics.median(times)
    return {"workers": workers or default_workers(), "cache": cache is not None, "units": len(collection.units),
            "files": collection.n_files, "seconds": round(seconds, 2), "runs": [round(t, 2) for t in times],
            "units_per_s": round(len(collection.units) / seconds, 1)}


def timed_predict(model: Path, data: Path, cache: Path, out: Path) -> dict:
    """``deepmcat predict`` as a user runs it: the whole process, and the time it reports for its own work
    (reading and predicting, without the interpreter's start and imports)."""
    deepmcat = Path(sys.executable).parent / "deepmcat"
    tic = time.time()
    done = subprocess.run([str(deepmcat), "predict", "--model", str(model), "--data", str(data), "--out", str(out),
                           "--cache", str(cache), "--quiet"], capture_output=True, text=True, check=True)
    wall = time.time() - tic
    own = float(re.search(r"in ([0-9.]+)s", done.stdout).group(1))
    return {"process_seconds": round(wall, 1), "own_seconds": own}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subjects", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed loads without the cache, median reported")
    p.add_argument("--tag", default="", help="added to the JSON's name (runs of one day keep apart)")
    args = p.parse_args()
    from deepmcat.generate import generate

    data = generated(DATA / f"demo-{args.subjects}s-seed{args.seed}",
                     lambda out: generate(out, args.subjects, seed=args.seed, balanced=False, progress=False))
    result: dict = {"date": dt.date.today().isoformat(), "machine": machine(), "data": data.name, "loads": []}
    for workers in (1, 0):
        result["loads"].append(timed_load(data, workers, None, args.repeats))
        print(result["loads"][-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for run in ("empty cache", "filled cache"):
            result["loads"].append(dict(timed_load(data, 0, TensorCache(tmp / "cache")), run=run))
            print(result["loads"][-1], flush=True)
        from deepmcat.cli import main as cli

        model = tmp / "model"  # a short training: the predictions' speed does not depend on the epochs
        assert cli(["train", "--data", str(data), "--out", str(model), "--clusters", "12", "--warmup-epochs", "1",
                    "--epochs", "1", "--cache", str(tmp / "cache"), "--quiet"]) == 0
        shutil.rmtree(tmp / "cache")
        runs = [timed_predict(model, data, tmp / "cache", tmp / f"p{i}.csv") for i in range(2)]
        same = (tmp / "p0.csv").read_bytes() == (tmp / "p1.csv").read_bytes()
    result["predict"] = {"first": runs[0], "cached": runs[1], "identical_csv": same,
                         "speed-up_own": round(runs[0]["own_seconds"] / runs[1]["own_seconds"], 1),
                         "speed-up_process": round(runs[0]["process_seconds"] / runs[1]["process_seconds"], 1)}
    print(result["predict"])
    print("written", save(f"reading-{args.subjects}s-{result['date']}" + (f"-{args.tag}" if args.tag else ""), result))


if __name__ == "__main__":
    main()
