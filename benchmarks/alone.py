"""Series read alone against the same series read with their examination: how often the answer changes.

    python -m benchmarks.alone --models torso=DIR [contour=DIR ...] [--subjects 16] [--examinations 4]

A clinician in Slicer, the app's datastore and ``organize`` send one series at a time. Such a series cannot
know whether its one slice belongs to a stack stored a series per slice, or whether its phase image lies in
another series (:func:`deepmcat.structure.observed_structure`). Per model, the first ``--examinations``
examinations of its family's generated set are predicted whole, then each series folder alone, two ways:
``as read`` (the lone series' one slice and missing pair taken as known, what inference did before
2026-12-07) and ``observed`` (both left out of the distances, the default). Scored per file and category: the
share whose acquisition cluster differs from the whole examination's. Writes
``benchmarks/results/alone-<sets>-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, save  # noqa: E402
from benchmarks.families import dataset  # noqa: E402
from deepmcat.data import Collection, load_collection  # noqa: E402
from deepmcat.inference import Model, series_vote  # noqa: E402
from deepmcat.labels import read_labels  # noqa: E402

WAYS = ("as_read", "observed")


def acquisition_clusters(model: Model, collection: Collection, way: str) -> dict[str, int]:
    """Each file's acquisition cluster (the vote of its acquisition's units), the structure taken ``way``."""
    structure = collection.structure if way == "as_read" else collection.observed_structure
    preds = model.predict(collection.tensors, k=1, acquisitions=collection.acquisitions, structure=structure)
    by_acquisition: dict[str, list] = {}
    for unit, pred in zip(collection.units, preds):
        by_acquisition.setdefault(unit.acquisition, []).append(pred)
    votes = {key: series_vote(p).cluster for key, p in by_acquisition.items()}
    return {f: votes[u.acquisition] for u in collection.units for f in u.files}


def run(name: str, model_dir: str, args) -> dict:
    model = Model(model_dir, device="cpu")
    data = dataset(name, args.subjects, args.data_seed)
    labels = read_labels(data / "labels.csv")
    files, changed = Counter(), {way: Counter() for way in WAYS}
    start = time.time()
    for exam in sorted(p for p in data.iterdir() if p.is_dir())[: args.examinations]:
        collection = load_collection(exam, model.config.preprocess, progress=False)
        whole = acquisition_clusters(model, collection, "observed")  # an examination read whole knows both
        for folder in sorted({Path(f).parent for f in whole}):
            alone = load_collection(folder, model.config.preprocess, progress=False)
            answers = {way: acquisition_clusters(model, alone, way) for way in WAYS}
            for f in answers["observed"]:
                category = labels[str(Path(f).resolve().relative_to(data.resolve()))]
                files[category] += 1
                for way in WAYS:
                    changed[way][category] += int(answers[way][f] != whole[f])
    rows = {c: {"files": files[c], **{way: round(changed[way][c] / files[c], 4) for way in WAYS}} for c in sorted(files)}
    total = sum(files.values())
    return {"model": model_dir, "examinations": args.examinations, "seconds": round(time.time() - start, 1),
            "categories": rows,
            "all": {way: round(sum(changed[way].values()) / total, 4) for way in WAYS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, metavar="SET=DIR")
    parser.add_argument("--subjects", type=int, default=16, help="the generated set the model belongs to")
    parser.add_argument("--data-seed", type=int, default=7, dest="data_seed")
    parser.add_argument("--examinations", type=int, default=4)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.models)
    result = {"machine": machine(), "date": dt.date.today().isoformat(), "subjects": args.subjects,
              "data_seed": args.data_seed, "sets": {}}
    for name, model_dir in models.items():
        out = result["sets"][name] = run(name, model_dir, args)
        print(f"\n{name}: share of files whose series, read alone, changes its acquisition cluster "
              f"({args.examinations} examinations, {out['seconds']} s)")
        print("| category | files | as read | observed (default) |\n|---|---|---|---|")
        for category, row in {**out["categories"], "all": {"files": "", **out["all"]}}.items():
            print(f"| {category} | {row['files']} | {row['as_read']:.3f} | {row['observed']:.3f} |")
    tag = f"-{args.tag}" if args.tag else ""
    print("written to", save(f"alone-{'-'.join(models)}-{result['date']}{tag}", result))


if __name__ == "__main__":
    main()
