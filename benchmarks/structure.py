"""How the final clustering's settings — the series structure's weight (:mod:`deepmcat.structure`), PCA
dimensions, whitening — change what trained networks' features become.

    python benchmarks/structure.py --models classic=benchmarks/.models/al-classic-16s-seed7 \\
        torso=benchmarks/.models/al-torso-16s-seed7 [--held-out blob=DIR] [--weights 0 0.2 0.3 0.5] [--seeds 0 1 2] \\
        [--variants default whiten=false pca_dim=32,whiten=false] [--tag TAG]

Each model's network is kept; only its final clustering is redone for each variant (cluster settings over the
model's own), weight and k-means seed, and scored as ``predict`` does, at the acquisition level, K = C
(``families.reclustered_scores``). Settings are chosen on the design sets (``--models``); ``--held-out`` sets
are only reported. The sets are the families' generated sets
of ``--subjects`` subjects and generator seed ``--data-seed`` (the models' training sets by default).
Writes ``benchmarks/results/structure-<date>[-TAG].json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import machine, save  # noqa: E402
from benchmarks.families import Scorer, dataset, predicted_scores, reclustered_scores  # noqa: E402
from deepmcat.config import ClusterConfig, DeepMCATConfig  # noqa: E402
from deepmcat.data import load_collection  # noqa: E402
from deepmcat.features import extract_features  # noqa: E402
from deepmcat.inference import Model  # noqa: E402


def run(name: str, model_dir: str, args) -> dict:
    data = dataset(name, args.subjects, args.data_seed)
    model = Model(model_dir, device="cpu")
    collection = load_collection(data, model.config.preprocess, progress=False, workers=0)
    scorer = Scorer(collection, data)
    features = extract_features(model.net, collection.tensors, model.device, model.config.train.amp)
    out = {"model": model_dir, "units": len(collection.units), "acquisitions": len(scorer.keys), "weights": {}}
    if model.published.structure is not None:  # a model published with the structure: predict's own answer
        out["predict"] = predicted_scores(scorer, model, data)
    for variant in args.variants:
        cluster = variant_settings(model.config.cluster, variant)
        scores = out["weights"] if variant == "default" else out.setdefault("variants", {}).setdefault(variant, {})
        for weight in args.weights:
            runs = [reclustered_scores(scorer, model, features, weight, seed, cluster) for seed in args.seeds]
            scores[str(weight)] = {"runs": runs} | {
                m: round(float(np.mean([r[m] for r in runs])), 4) for m in ("purity", "nmi", "ari", "worst_recall")}
            w = scores[str(weight)]
            print(f"{name:>8} {variant:<24} weight {weight:<4}: purity {w['purity']:.3f}, NMI {w['nmi']:.3f}, "
                  f"ARI {w['ari']:.3f}, worst recall {w['worst_recall']:.2f}  (k-means seeds {args.seeds})",
                  flush=True)
    return out


def variant_settings(cluster: ClusterConfig, variant: str) -> ClusterConfig:
    """``cluster`` with a variant's settings (``key=value,key=value``; ``default``: none) put over it."""
    if variant == "default":
        return cluster
    values = {}
    for item in variant.split(","):
        key, _, text = item.partition("=")
        if key not in {f.name for f in fields(ClusterConfig)}:
            raise SystemExit(f"unknown cluster setting {key!r} in variant {variant!r}")
        values[key] = text.lower() == "true" if text.lower() in ("true", "false") else type(getattr(cluster, key))(text)
    return replace(cluster, **values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="SET=MODEL_DIR of the design sets")
    parser.add_argument("--held-out", nargs="*", default=[], dest="held_out", help="SET=MODEL_DIR, reported only")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.2, 0.3, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--subjects", type=int, default=16)
    parser.add_argument("--data-seed", type=int, default=7, dest="data_seed")
    parser.add_argument("--variants", nargs="+", default=["default"],
                        help="cluster settings over the model's: default, or key=value[,key=value]")
    parser.add_argument("--tag", default="", help="added to the JSON's name (runs of one day keep apart)")
    args = parser.parse_args()
    results = {"date": dt.date.today().isoformat(), "machine": machine(), "subjects": args.subjects,
               "data_seed": args.data_seed, "kmeans_seeds": args.seeds,
               "default_weight": DeepMCATConfig().cluster.structure_weight, "design": {}, "held_out": {}}
    for part, pairs in (("design", args.models), ("held_out", args.held_out)):
        for pair in pairs:
            name, model_dir = pair.split("=", 1)
            key = name if name not in results[part] else f"{name} ({Path(model_dir).name})"  # several networks a set
            results[part][key] = run(name, model_dir, args)
            print(f"written to {save('structure-' + results['date'] + (f'-{args.tag}' if args.tag else ''), results)}")


if __name__ == "__main__":
    main()
