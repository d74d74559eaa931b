"""Novelty scores compared on kept embeddings, without training again (issue 18, item 2).

    python -m benchmarks.novelty_variants DIR [DIR ...] [--variants knn5 ...] [--tag TAG]

Reads the runs ``python -m benchmarks.novelty --keep DIR`` wrote (one model per left-out category, its
training units, the held-out examinations' units and the package images, embedded as inference embeds
them) and scores each variant as inference would apply it: a unit's score against the training units, the
threshold a percentile of the training units' scores against *other* examinations, a series unknown when
most of its units are, its score its units' median. Per variant: the series AUROC of left-out against known
categories (mean over runs, and pooled over the runs of a family), and at the 99th percentile the known
series called unknown, left-out series and package images caught. Choose on design families' runs only.
Writes ``benchmarks/results/novelty-variants-<dirs>-<date>[-TAG].json``, and with ``--plot V ...`` a PNG
beside it: the pooled series ROC of those variants per family, the 99th-percentile rule marked.
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.common import machine, save
from deepmcat.clustering import group_means, squared_distances

PERCENTILE = 99.0


@dataclass(frozen=True)
class Variant:
    """A novelty score: mean squared distance to the ``k`` nearest reference points, the series-structure
    block scaled by ``structure_scale``; ``level`` ``unit`` (inference's) or ``acquisition`` (each series'
    mean embedding against the training series' means); ``local`` divides by the neighbours' own score
    (a local outlier factor: a sparse category's units lie farther apart)."""

    k: int = 5
    structure_scale: float = 1.0
    level: str = "unit"
    local: bool = False


VARIANTS = {
    "knn5": Variant(),
    "knn1": Variant(k=1),
    "knn3": Variant(k=3),
    "knn10": Variant(k=10),
    "knn20": Variant(k=20),
    "knn5_structure0.5": Variant(structure_scale=0.5),
    "knn5_structure2": Variant(structure_scale=2.0),
    "knn5_structure3": Variant(structure_scale=3.0),
    "knn5_structure1.5": Variant(structure_scale=1.5),
    "knn1_structure2": Variant(k=1, structure_scale=2.0),
    "knn3_structure2": Variant(k=3, structure_scale=2.0),
    "knn3_structure3": Variant(k=3, structure_scale=3.0),
    "knn5_local": Variant(local=True),
    "acq_knn1": Variant(k=1, level="acquisition"),
    "acq_knn3": Variant(k=3, level="acquisition"),
    "acq_knn5": Variant(k=5, level="acquisition"),
    "acq_knn1_structure2": Variant(k=1, level="acquisition", structure_scale=2.0),
    "acq_knn3_structure2": Variant(k=3, level="acquisition", structure_scale=2.0),
}


def acquisition_means(x: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean row per key, the keys, and each row's key index."""
    names, ids = np.unique(keys, return_inverse=True)
    return group_means(x, ids), names, ids


class Scored:
    """One variant under one run: reference points, their calibration scores, and a query's scores."""

    def __init__(self, variant: Variant, run: dict):
        self.variant, self.dims = variant, int(run["dims"])
        points, groups = self.space(run["train"]), run["train_studies"]
        if variant.level == "acquisition":
            points, names, ids = acquisition_means(points, run["train_acquisitions"])
            groups = np.asarray([groups[ids == i][0] for i in range(len(names))])
        self.points = points
        d2 = squared_distances(points, points)
        d2[groups[:, None] == groups[None, :]] = np.inf
        self.own = self._mean_nearest(d2)  # each reference point against the other examinations
        calibration = self._scores_from(d2)
        self.threshold = float(np.percentile(calibration[np.isfinite(calibration)], PERCENTILE))

    def space(self, x: np.ndarray) -> np.ndarray:
        x = np.array(x, np.float32)
        x[:, self.dims:] *= self.variant.structure_scale
        return x

    def _mean_nearest(self, d2: np.ndarray) -> np.ndarray:
        k = min(self.variant.k, d2.shape[1])
        return np.sort(d2, axis=1)[:, :k].mean(axis=1)

    def _scores_from(self, d2: np.ndarray) -> np.ndarray:
        score = self._mean_nearest(d2)
        if self.variant.local:
            k = min(self.variant.k, d2.shape[1])
            nearest = np.argsort(d2, axis=1)[:, :k]
            score = score / (self.own[nearest].mean(axis=1) + 1e-6)
        return score

    def series(self, x: np.ndarray, acquisitions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each acquisition's score and whether it is called unknown, in ``np.unique`` order."""
        x = self.space(x)
        if self.variant.level == "acquisition":
            means, names, _ = acquisition_means(x, acquisitions)
            scores = self._scores_from(squared_distances(means, self.points))
            return scores, scores > self.threshold
        scores = self._scores_from(squared_distances(x, self.points))
        names, ids = np.unique(acquisitions, return_inverse=True)
        median = np.array([np.median(scores[ids == i]) for i in range(len(names))])
        unknown = np.array([2 * (scores[ids == i] > self.threshold).sum() > (ids == i).sum()
                            for i in range(len(names))])
        return median, unknown


def evaluate(variant: Variant, run: dict) -> dict:
    """One variant on one run: its series scores and verdicts, and their rates and AUROC."""
    scored = Scored(variant, run)
    names, ids = np.unique(run["test_acquisitions"], return_inverse=True)
    novel = np.array([run["novel"][ids == i].mean() > 0.5 for i in range(len(names))])
    scores, unknown = scored.series(run["test"], run["test_acquisitions"])
    out = {"scores": scores, "novel": novel, "unknown": unknown, "false_unknown": float(unknown[~novel].mean()),
           "caught": float(unknown[novel].mean()), "auroc": float(roc_auc_score(novel, scores))}
    if "packages" in run:
        out["packages_caught"] = float(scored.series(run["packages"], run["packages_acquisitions"])[1].mean())
    return out


def plot(curves: dict[str, dict[str, dict]], path: Path, held_out: Sequence[str] = ()) -> None:
    """Pooled series ROC per family (a panel each), a line per variant, its 99th-percentile rule marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    families = list(next(iter(curves.values())))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 4.0), dpi=100, squeeze=False)
    for ax, family in zip(axes[0], families):
        for name, by_family in curves.items():
            c = by_family[family]
            fpr, tpr, _ = roc_curve(c["novel"], c["scores"])
            line, = ax.plot(fpr, tpr, label=f"{name} (AUROC {c['auroc']:.3f})")
            ax.plot([c["false_unknown"]], [c["caught"]], "o", color=line.get_color())
        ax.plot([0, 1], [0, 1], ":", color="grey")
        role = "held out" if family in held_out else "design"
        ax.set_title(f"{family} ({role}): {int(c['novel'].sum())} left-out / {int((~c['novel']).sum())} known series",
                     fontsize=10)
        ax.set_xlabel("known series scored above (false unknown rate)")
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("left-out series scored above (caught)")
    fig.suptitle(f"Series novelty ROC, categories left out of training in turn (dot: the {PERCENTILE:g}th "
                 "percentile rule)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", type=Path, help="folders of benchmarks.novelty --keep")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--tag", default="")
    p.add_argument("--plot", nargs="*", default=[], choices=list(VARIANTS), help="variants drawn in the PNG")
    p.add_argument("--held-out", nargs="*", default=[], help="families titled held out in the PNG")
    args = p.parse_args()
    runs = {path.stem: dict(np.load(path)) for d in args.dirs for path in sorted(d.glob("*.npz"))}
    families = sorted({name.split("-")[0] for name in runs})
    results = {"machine": machine(), "date": dt.date.today().isoformat(), "runs": sorted(runs),
               "percentile": PERCENTILE, "variants": {}}
    curves: dict[str, dict[str, dict]] = {}
    for name in dict.fromkeys(args.variants + args.plot):
        per_run = {run: evaluate(VARIANTS[name], data) for run, data in runs.items()}
        entry = {"variant": vars(VARIANTS[name]), "per_run_auroc": {r: round(v["auroc"], 3) for r, v in per_run.items()}}
        for family in families + ["all"]:
            chosen = [v for r, v in per_run.items() if family == "all" or r.split("-")[0] == family]
            pooled = roc_auc_score(np.concatenate([v["novel"] for v in chosen]),
                                   np.concatenate([v["scores"] for v in chosen]))
            novel = np.concatenate([v["novel"] for v in chosen])
            if name in args.plot and family != "all":
                curves.setdefault(name, {})[family] = {
                    "novel": novel, "scores": np.concatenate([v["scores"] for v in chosen]), "auroc": pooled,
                    "false_unknown": float(np.mean(np.concatenate([v["unknown"][~v["novel"]] for v in chosen]))),
                    "caught": float(np.mean(np.concatenate([v["unknown"][v["novel"]] for v in chosen])))}
            entry[family] = {"auroc_mean": round(float(np.mean([v["auroc"] for v in chosen])), 3),
                             "auroc_pooled": round(float(pooled), 3),
                             "false_unknown": round(float(np.mean([v["false_unknown"] for v in chosen])), 3),
                             "caught": round(float(np.mean([v["caught"] for v in chosen])), 3),
                             "packages_caught": round(float(np.mean([v.get("packages_caught", np.nan)
                                                                     for v in chosen])), 3)}
        results["variants"][name] = entry
        print(f"{name:22s}", "  ".join(f"{f}: {e['auroc_mean']:.3f}/{e['auroc_pooled']:.3f} "
                                        f"fu {e['false_unknown']:.3f} c {e['caught']:.2f} p {e['packages_caught']:.2f}"
                                        for f, e in entry.items() if f in families + ["all"]), flush=True)
    label = "-".join(d.name for d in args.dirs)
    path = save(f"novelty-variants-{label}-{dt.date.today().isoformat()}" + (f"-{args.tag}" if args.tag else ""),
                results)
    print("saved", path)
    if curves:
        plot(curves, path.with_suffix(".png"), args.held_out)
        print("saved", path.with_suffix(".png"))


if __name__ == "__main__":
    main()
