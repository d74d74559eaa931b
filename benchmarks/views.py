"""What the network sees of a family: one canonical tensor's first frame per category and subject, as a PNG
grid (rows: categories, columns: subjects), so that a generator's views can be looked at before they are
benchmarked.

    python -m benchmarks.views --family torso [--subjects 6] [--seed 7] [--categories cine_2ch cine_3ch ...]

Generates the family's imbalanced set once (``benchmarks/.data``, reused while the generator is unchanged),
reads it with the default preprocessing and writes ``benchmarks/results/views-<family>-<date>.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS
from benchmarks.families import SETS, dataset
from deepmcat.config import PreprocessConfig
from deepmcat.data import load_collection
from deepmcat.labels import read_labels, unit_truth


def first_frames(data: Path, categories: list[str] | None, subjects: int) -> dict[str, list[np.ndarray]]:
    """Per category, the first frame of the whole field of view of one unit of each of the first ``subjects``
    examinations that hold it."""
    collection = load_collection(data, PreprocessConfig(), progress=False, workers=0)
    truth = unit_truth(collection.units, read_labels(data / "labels.csv"), data.resolve())
    if truth is None:
        raise SystemExit(f"{data}: the labels do not cover every unit")
    wanted = categories or sorted(set(truth))
    frames: dict[str, list[np.ndarray]] = {c: [] for c in wanted}
    seen: set[tuple[str, str]] = set()
    for unit, category, tensor in zip(collection.units, truth, collection.tensors):
        if category in frames and (category, unit.study) not in seen and len(frames[category]) < subjects:
            seen.add((category, unit.study))
            frames[category].append(np.asarray(tensor)[0])
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="torso", choices=sorted(SETS))
    parser.add_argument("--subjects", type=int, default=6, help="columns: examinations shown per category")
    parser.add_argument("--set-subjects", type=int, default=16, dest="set_subjects",
                        help="subjects of the generated set the examinations are taken from")
    parser.add_argument("--seed", type=int, default=7, help="the generator's seed")
    parser.add_argument("--categories", nargs="*", help="rows (default: every category)")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = first_frames(dataset(args.family, args.set_subjects, args.seed), args.categories, args.subjects)
    fig, axes = plt.subplots(len(frames), args.subjects, figsize=(1.6 * args.subjects, 1.6 * len(frames)),
                             squeeze=False)
    for row, (category, images) in enumerate(frames.items()):
        for col, ax in enumerate(axes[row]):
            ax.set_axis_off()
            if col < len(images):
                ax.imshow(images[col], cmap="gray", vmin=min(0.0, float(images[col].min())), vmax=1.0)
        axes[row][0].set_title(category, fontsize=8, loc="left")
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"views-{args.family}-{dt.date.today().isoformat()}.png"
    fig.savefig(out, dpi=60)
    print("written to", out)


if __name__ == "__main__":
    main()
