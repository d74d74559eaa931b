"""The ``deepmcat`` command line: generate, train, predict, evaluate, demo."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from deepmcat import __version__
from deepmcat.cache import OFF, open_cache
from deepmcat.checkpoint import CheckpointError
from deepmcat.config import DeepMCATConfig
from deepmcat.families import FAMILIES
from deepmcat.io import ReadError
from deepmcat.labels import data_root, read_labels, series_truth, unit_truth
from deepmcat.orthanc import OrthancError
from deepmcat.parallel import WorkerDied
from deepmcat.predictions import LEVELS, PRED_COLUMNS, evaluate_files, format_scores, predict_rows
from deepmcat.sources import is_url, local_copy, redact_url

log = logging.getLogger("deepmcat")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _positive(kind, zero: bool = False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'zero or ' if zero else ''}positive, got {text}")
        return value

    return parse


def _cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", help="folder of decoded headers and tensors reused by later runs (default "
                                        "$DEEPMCAT_CACHE or ~/.cache/deepmcat; 'off': decode everything, keep "
                                        "nothing)")


def _workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=_positive(int, zero=True), default=0,
                        help="processes reading or writing files (default 0: one per core, at most 16; "
                             "small jobs stay in one process)")


# ---------------------------------------------------------------------------------------------- generate


def cmd_generate(args) -> None:
    from deepmcat.generate import generate

    tic = time.time()
    labels = generate(args.out, args.subjects, seed=args.seed, balanced=not args.imbalanced, fmt=args.format,
                      wrong_descriptions=args.wrong_descriptions, progress=not args.quiet, workers=args.workers,
                      sidecars=args.sidecars, family=args.family)
    with open(labels) as fh:
        rows = list(csv.DictReader(fh))
    counts = Counter(r["category"] for r in rows)
    print(f"wrote {len(rows)} files of {len(counts)} categories to {args.out} in {time.time() - tic:.1f}s "
          f"(labels: {labels})")


# ------------------------------------------------------------------------------------------------- train


def _config_from_args(args) -> DeepMCATConfig:
    """``--config FILE`` (a DeepMCATConfig as JSON) or the defaults, with the flags given on top."""
    base = DeepMCATConfig()
    if getattr(args, "config", None):
        try:
            base = DeepMCATConfig.from_dict(json.loads(Path(args.config).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise CLIError(f"cannot read the config file {args.config}: {exc}") from exc
    elif args.clusters is None:
        raise CLIError("train needs --clusters (or a --config file)")
    return base.override(clusters=args.clusters, device=args.device, seed=args.seed, frames=args.frames,
                         size=args.size, centre_crop=args.centre_crop, epochs=args.epochs,
                         warmup_epochs=args.warmup_epochs,
                         batch_size=args.batch_size, train_clusters=args.train_clusters,
                         uniform_sampling=False if args.no_uniform else None)


def cmd_train(args) -> None:
    import tempfile

    if is_url(args.data):
        args.cache = OFF  # downloaded files are new files every time: nothing to reuse
    with tempfile.TemporaryDirectory(prefix="deepmcat-dicomweb-") as tmp:
        args.data = local_copy(args.data, Path(tmp))
        _train(args)


def _train(args) -> None:
    from deepmcat.distributed import Ranks, init_from_env, shutdown

    cfg = _config_from_args(args)
    ranks = Ranks()
    if getattr(args, "distributed", False):
        ranks, cfg.train.device = init_from_env(cfg.train.device)
        args.quiet = args.quiet or not ranks.is_main
    try:
        _fit(args, cfg, ranks)
    finally:
        shutdown()


def _fit(args, cfg: DeepMCATConfig, ranks) -> None:
    """Load ``args.data`` and train; with several ranks every rank loads it and only rank 0 reports."""
    from deepmcat.data import load_collection
    from deepmcat.trainer import Trainer

    report = print if ranks.is_main else (lambda *a, **k: None)
    tic = time.time()
    collection = load_collection(args.data, cfg.preprocess, progress=not args.quiet, workers=args.workers,
                                 cache=open_cache(args.cache))
    if ranks.is_main:
        _report_skipped(collection.failed)
    report(f"{collection.n_files} files -> {len(collection.units)} units "
           f"({len({u.series_uid for u in collection.units})} series) in {time.time() - tic:.1f}s")
    truth = None
    if args.labels:
        truth = unit_truth(collection.units, read_labels(args.labels), data_root(args.data))
        if truth is None and ranks.is_main:
            log.warning("--labels does not cover every unit: quality will not be monitored")
    trainer = Trainer(cfg, args.out, progress=not args.quiet, ranks=ranks)
    report(f"training DeepMCAT on {trainer.device}" + (f" x {ranks.world} processes" if ranks.active else "")
           + f": {cfg.cluster.clusters} clusters, {cfg.train.warmup_epochs}+{cfg.train.epochs} epochs, input "
           f"{cfg.preprocess.frames}x{cfg.preprocess.size}x{cfg.preprocess.size}"
           + (f" at {cfg.preprocess.views} scales" if cfg.preprocess.views > 1 else ""))
    result = trainer.fit_collection(collection, truth, resume=not args.fresh)
    last = result.history[-1] if result.history else {}
    extra = ", ".join(f"{k} {last[k]:.3f}" for k in ("nmi_prev", "purity", "nmi") if k in last)
    report(f"model written to {result.model_path} ({time.time() - tic:.1f}s total{'; ' + extra if extra else ''})")


def _report_skipped(failed: list[tuple[str, str]]) -> None:
    problems = [(p, r) for p, r in failed if r != "not a DICOM file"]
    others = len(failed) - len(problems)
    if others:
        log.info("ignored %d files that are not DICOM or image volumes", others)
    for path, reason in problems[:10]:
        log.warning("skipped %s: %s", path, reason)
    if len(problems) > 10:
        log.warning("... and %d more unreadable files", len(problems) - 10)


# ----------------------------------------------------------------------------------------------- predict


def cmd_predict(args) -> None:
    from deepmcat.data import load_collection
    from deepmcat.inference import Model
    from deepmcat.tables import write_csv

    model = Model(args.model, device=args.device, unknown_percentile=args.unknown_percentile)
    tic = time.time()
    cache = open_cache(args.cache)
    collection = load_collection(args.data, model.config.preprocess, progress=not args.quiet,
                                 workers=args.workers, cache=cache)
    _report_skipped(collection.failed)
    rows = predict_rows(model, collection, data_root(args.data), cache)
    write_csv(rows, args.out, PRED_COLUMNS)
    unknown = len({r["unit"] for r in rows if r["novel"]})
    files = len({r["path"] for r in rows})  # an enhanced file holds several units
    print(f"predicted {len(collection.units)} units ({files} files) in {time.time() - tic:.2f}s -> {args.out}"
          + (f"; {unknown} units like no learned category (category unknown)" if unknown else ""))


# ---------------------------------------------------------------------------------------------- organize


def cmd_organize(args) -> None:
    from deepmcat.inference import Model
    from deepmcat.organize import Organizer
    from deepmcat.report import write_report
    from deepmcat.sources import open_source

    model = Model(args.model, device=args.device, unknown_percentile=args.unknown_percentile)
    if not is_url(args.source) and not Path(args.source).exists():
        raise CLIError(f"source not found: {args.source}")
    cache = None if is_url(args.source) else open_cache(args.cache)  # downloads are new files every time
    source = open_source(args.source, cache.headers if cache else None)
    truth = None
    if args.labels:
        if is_url(args.source):
            raise CLIError("--labels needs a folder source (its paths are relative to the folder)")
        truth = series_truth(source, read_labels(args.labels))
    result = Organizer(model, source, args.out, layout=args.layout, show_phi=args.show_phi,
                       progress=not args.quiet, store=cache.store(model.config.preprocess) if cache else None).run()
    report = write_report(args.out, result.rows, truth, show_phi=args.show_phi)
    flagged = sum(r["header_agrees"] == "no" for r in result.rows)
    failed = sum(r["cluster"] == "" for r in result.rows)
    unknown = sum(r["novel"] == "yes" for r in result.rows)
    rate = result.processed / result.seconds if result.seconds else 0.0
    print(f"organized {len(result.rows)} series ({result.processed} now, {result.done_before} from an earlier run; "
          f"{rate:.1f} series/s): {flagged} with a header that disagrees with their content, {unknown} unknown, "
          f"{failed} unreadable\n"
          f"  {Path(args.out) / 'series.csv'}\n  {report}")


# ---------------------------------------------------------------------------------------------- watch


def cmd_watch(args) -> None:
    from deepmcat.inference import Model
    from deepmcat.orthanc import Orthanc
    from deepmcat.watch import WatchConfig, Watcher

    model = Model(args.model, device=args.device, unknown_percentile=args.unknown_percentile)
    stopping: list[int] = []

    def request_stop(signum, frame) -> None:
        if stopping:
            raise KeyboardInterrupt
        stopping.append(signum)
        print("stopping after the current series (again to stop now)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    config = WatchConfig(poll_seconds=args.poll, from_now=args.from_now)
    watcher = Watcher(model, Orthanc(args.orthanc), args.out, config, show_phi=args.show_phi)
    stats = watcher.run(stop=lambda: bool(stopping), once=args.once)
    print(f"watched {redact_url(args.orthanc)}: {stats.categorised} series categorised, {stats.failed} unreadable, "
          f"{stats.skipped} already done, {stats.outages} polls without an answer -> {Path(args.out) / 'series.csv'}")


# ---------------------------------------------------------------------------------------------- evaluate


def cmd_evaluate(args) -> None:
    scores = evaluate_files(args.pred, args.labels, level="file" if args.per_file else args.level)
    if args.json:
        print(json.dumps({k: v for k, v in scores.items() if k != "composition"} if not args.composition
                         else scores))
        return
    print(format_scores(scores))
    if args.composition:
        for cluster, comp in sorted(scores["composition"].items(), key=lambda kv: int(kv[0])):
            print(f"cluster {cluster}: " + ", ".join(f"{c} {n}" for c, n in comp.items()))


# -------------------------------------------------------------------------------------------------- demo


def _step(argv: list[str]) -> None:
    """One command of the demo, run as a user would type it."""
    if main(argv) != 0:
        raise CLIError(f"the demo stopped: 'deepmcat {argv[0]}' failed (see above)")


def cmd_demo(args) -> None:
    import resource

    from deepmcat.provenance import machine

    tic = time.time()
    data, model_dir = Path(args.data), Path(args.out)
    quiet = ["--quiet"] if args.quiet else []
    stage_seconds: dict[str, float] = {}

    def stage(name: str, argv: list[str]) -> None:
        start = time.time()
        _step(argv)
        stage_seconds[name] = round(time.time() - start, 1)

    if not (data / "labels.csv").is_file():
        print(f"generating demo data ({args.subjects} synthetic subjects, imbalanced) in {data} ...")
        stage("generate", ["generate", "--out", str(data), "--subjects", str(args.subjects), "--seed", str(args.seed),
                           "--imbalanced", "--workers", str(args.workers), *quiet])
    else:
        print(f"using existing demo data in {data}")
    n_categories = len(set(read_labels(data / "labels.csv").values()))
    epochs = [f"--{flag}={value}" for flag, value in (("epochs", args.epochs), ("warmup-epochs", args.warmup_epochs))
              if value is not None]
    stage("train", ["train", "--data", str(data), "--out", str(model_dir), "--clusters", str(n_categories), "--device",
                    args.device, "--seed", str(args.seed), "--labels", str(data / "labels.csv"), "--fresh",
                    "--workers", str(args.workers), *epochs, *quiet])
    preds = model_dir / "predictions.csv"
    stage("predict", ["predict", "--model", str(model_dir), "--data", str(data), "--out", str(preds), "--device",
                      args.device, "--workers", str(args.workers), *quiet])
    tables = {level: evaluate_files(preds, data / "labels.csv", level=level) for level in ("acquisition", "unit")}
    print("\nDeepMCAT on the demo data (clusters scored against the generator's categories):")
    print(format_scores(tables["acquisition"]) + "\n" + format_scores(tables["unit"]).splitlines()[-1])
    peak_mb = {who: round(resource.getrusage(flag).ru_maxrss / 1024, 1)
               for who, flag in (("this_process", resource.RUSAGE_SELF), ("largest_worker", resource.RUSAGE_CHILDREN))}
    result = {"subjects": args.subjects, "seed": args.seed, "seconds": round(time.time() - tic, 1),
              "stage_seconds": stage_seconds, "peak_rss_mb": peak_mb, "machine": machine(),
              "scores": {k: {m: v for m, v in t.items() if m != "composition"} for k, t in tables.items()}}
    (model_dir / "demo-result.json").write_text(json.dumps(result, indent=1))
    print(f"(written to {model_dir / 'demo-result.json'})")
    if args.no_serve:
        return
    studies = Path(args.studies)
    if not any(studies.glob("*.nii.gz")):
        print(f"\nwriting a small NIfTI studies folder for the server in {studies} ...")
        _step(["generate", "--out", str(studies), "--subjects", "4", "--seed", str(args.seed + 1), "--format",
               "nifti", "--imbalanced", *quiet])
    main(["serve", "--model", str(model_dir), "--studies", str(studies), "--host", args.host, "--port",
          str(args.port), "--conf", f"clusters={n_categories}", "--conf", f"device={args.device}"])


def cmd_serve(args) -> None:
    """Replace this process by ``monailabel start_server`` with the DeepMCAT app over ``--studies``."""
    from deepmcat.serve import command, default_app_dir, server_env

    app_dir = Path(args.app) if args.app else default_app_dir()
    conf = {"model_dir": str(Path(args.model).resolve())}
    for item in args.conf or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--conf takes key=value, got {item!r}")
        conf[key] = value
    studies = Path(args.studies)
    if not studies.is_dir():
        raise CLIError(f"studies folder not found: {studies}")
    example = next((p.name.split(".nii")[0] for p in sorted(studies.glob("*.nii*"))), "IMAGE_ID")
    url = f"http://{args.host}:{args.port}"
    print(f"\nserving {conf['model_dir']} with MONAI Label at {url} (studies: {studies}); Ctrl-C stops it.\n"
          f"  try: curl -X POST '{url}/infer/deepmcat?image={example}'\n"
          f"  3D Slicer: the DeepMCAT module (plugins/slicer) with server {url}", flush=True)
    cmd = command(app_dir, str(studies.resolve()), args.host, args.port, conf)
    os.execvpe(cmd[0], cmd, server_env())


# ---------------------------------------------------------------------------------------------- argparse


def _generate_parser(g: argparse.ArgumentParser) -> None:
    g.add_argument("--out", required=True)
    g.add_argument("--subjects", type=_positive(int), default=10)
    g.add_argument("--imbalanced", action="store_true", help="UK Biobank-like proportions (default: balanced)")
    g.add_argument("--balanced", dest="imbalanced", action="store_false")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--format", choices=["dicom", "enhanced", "nifti"], default="dicom",
                   help="enhanced: enhanced multi-frame DICOM, a file per series (every family but classic)")
    g.add_argument("--wrong-descriptions", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of series whose SeriesDescription names another category")
    g.add_argument("--family", choices=FAMILIES, default="classic",
                   help="phantom family: the project's own (classic) or one written apart from it (torso, blob, "
                        "contour, shell, spheroid)")
    g.add_argument("--sidecars", action="store_true",
                   help="with --format nifti: a dcm2niix-style JSON sidecar beside every file")
    _workers_argument(g)
    g.add_argument("--quiet", action="store_true")


def _train_parser(t: argparse.ArgumentParser) -> None:
    t.add_argument("--data", required=True, help="folder or file of DICOM / NIfTI / NRRD / MHA, or a DICOMweb URL")
    t.add_argument("--out", required=True, help="model folder (checkpoint.pt, model.pt)")
    t.add_argument("--clusters", type=_positive(int), help="K, the number of categories (required without --config)")
    t.add_argument("--config", help="a DeepMCATConfig as JSON; the flags given override it")
    t.add_argument("--epochs", type=_positive(int))
    t.add_argument("--warmup-epochs", dest="warmup_epochs", type=int)
    t.add_argument("--train-clusters", dest="train_clusters", type=_positive(int),
                   help="pseudo-label clusters while training (default 4 x clusters)")
    t.add_argument("--device", help="auto (default), cpu or cuda")
    t.add_argument("--frames", type=_positive(int))
    t.add_argument("--size", type=_positive(int))
    t.add_argument("--centre-crop", dest="centre_crop", type=float,
                   help="the central fraction of the field of view as a second scale (default 0.5; 0: the whole "
                        "field of view only, about a quarter less training time)")
    t.add_argument("--batch-size", dest="batch_size", type=_positive(int))
    t.add_argument("--no-uniform", action="store_true", help="sample units, not clusters, uniformly (ablation)")
    t.add_argument("--seed", type=int, help="training seed (default 0)")
    t.add_argument("--labels", help="optional labels.csv, only to monitor quality per epoch")
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint instead of resuming")
    t.add_argument("--distributed", action="store_true",
                   help="one of several processes started by torchrun (NCCL on GPUs, gloo on CPU)")
    _cache_argument(t)
    _workers_argument(t)
    t.add_argument("--quiet", action="store_true")


def _unknown_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unknown-percentile", dest="unknown_percentile", type=float,
                   help="a series farther from its nearest training units than this percentile of the training "
                        "units' distances to other examinations is answered 'unknown' (default: the model's, 99; "
                        "0 switches it off)")


def _predict_parser(r: argparse.ArgumentParser) -> None:
    r.add_argument("--model", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True, help="predictions CSV")
    r.add_argument("--device", default="auto")
    _unknown_argument(r)
    _cache_argument(r)
    _workers_argument(r)
    r.add_argument("--quiet", action="store_true")


def _evaluate_parser(e: argparse.ArgumentParser) -> None:
    e.add_argument("--pred", required=True)
    e.add_argument("--labels", required=True)
    e.add_argument("--level", choices=LEVELS, default="acquisition",
                   help="what is scored: acquisitions (series x image type, the default), units (slice positions) "
                        "or files")
    e.add_argument("--per-file", action="store_true", help="the same as --level file")
    e.add_argument("--composition", action="store_true", help="also list each cluster's categories")
    e.add_argument("--json", action="store_true")


def _demo_parser(d: argparse.ArgumentParser) -> None:
    d.add_argument("--data", default="demo-data")
    d.add_argument("--out", default="demo-model")
    d.add_argument("--subjects", type=_positive(int), default=32,
                   help="synthetic subjects (default 32: the rarest category, LGE, gets ~7 acquisitions; at 16 it "
                        "has 2, too few to form a cluster)")
    d.add_argument("--epochs", type=_positive(int))
    d.add_argument("--warmup-epochs", dest="warmup_epochs", type=int)
    d.add_argument("--device", default="auto")
    d.add_argument("--seed", type=int, default=0)
    _workers_argument(d)
    d.add_argument("--quiet", action="store_true")
    d.add_argument("--no-serve", dest="no_serve", action="store_true",
                   help="stop after the quality table instead of serving the model with MONAI Label")
    d.add_argument("--studies", default="demo-studies", help="NIfTI studies folder the server manages")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=_positive(int), default=8000)


def _organize_parser(o: argparse.ArgumentParser) -> None:
    o.add_argument("--model", required=True)
    o.add_argument("--source", required=True, help="folder, or DICOMweb URL (e.g. http://127.0.0.1:8042/dicom-web)")
    o.add_argument("--out", required=True, help="output folder: series.csv, report.html (resumable)")
    o.add_argument("--layout", choices=["none", "links", "copy"], default="none",
                   help="also sort the files into OUT/sorted/<category>/ (links: folder sources only)")
    o.add_argument("--labels", help="labels CSV (path,category) for a ground-truth table in the report")
    o.add_argument("--show-phi", dest="show_phi", action="store_true",
                   help="include patient name, ID and birth date in series.csv and the report")
    o.add_argument("--device", default="auto")
    _unknown_argument(o)
    _cache_argument(o)
    o.add_argument("--quiet", action="store_true")


def _watch_parser(w: argparse.ArgumentParser) -> None:
    w.add_argument("--model", required=True)
    w.add_argument("--orthanc", required=True, help="Orthanc's REST URL, e.g. http://127.0.0.1:8042 "
                                                    "(http://user:password@host:8042 with credentials)")
    w.add_argument("--out", required=True, help="output folder: series.csv, report.html, watch-state.json")
    w.add_argument("--poll", type=_positive(float), default=1.0, help="seconds between polls of the change feed")
    w.add_argument("--from-now", dest="from_now", action="store_true",
                   help="a new --out starts at Orthanc's next change (default: its first, so every stored series)")
    w.add_argument("--once", action="store_true", help="stop when the feed has nothing more (e.g. from cron)")
    w.add_argument("--show-phi", dest="show_phi", action="store_true",
                   help="include patient name, ID and birth date in series.csv and the report")
    w.add_argument("--device", default="auto")
    _unknown_argument(w)


def _serve_parser(v: argparse.ArgumentParser) -> None:
    v.add_argument("--model", required=True, help="model folder (model.pt)")
    v.add_argument("--studies", required=True, help="studies folder (NIfTI/NRRD) or a DICOMweb URL")
    v.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    v.add_argument("--port", type=_positive(int), default=8000)
    v.add_argument("--app", help="the MONAI Label app folder (default: apps/deepmcat of this source tree)")
    v.add_argument("--conf", action="append", metavar="KEY=VALUE", help="app setting, e.g. clusters=12")


SUBCOMMANDS = {
    "generate": ("write synthetic cardiac MR series and labels.csv", _generate_parser),
    "train": ("cluster a collection without labels and save the model", _train_parser),
    "predict": ("assign every file's unit to a cluster", _predict_parser),
    "evaluate": ("purity, NMI, ARI, ACC of predictions against labels", _evaluate_parser),
    "demo": ("generate demo data if absent, train on it, predict and evaluate", _demo_parser),
    "organize": ("categorise every series of a folder or DICOMweb server, with a report", _organize_parser),
    "watch": ("categorise each new series of an Orthanc PACS as it arrives, writing it back", _watch_parser),
    "serve": ("serve a trained model with MONAI Label (monailabel start_server)", _serve_parser),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepmcat", description="Unsupervised deep clustering of medical image series")
    p.add_argument("--version", action="version", version=f"deepmcat {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text))
    return p


COMMANDS = {"generate": cmd_generate, "train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate,
            "demo": cmd_demo, "serve": cmd_serve, "organize": cmd_organize, "watch": cmd_watch}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports every SIMD variant it tries
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # a line per retrieved series
    try:
        COMMANDS[args.command](args)
    except (CLIError, ValueError, FileNotFoundError, CheckpointError, ReadError, OrthancError, WorkerDied) as exc:
        print(f"deepmcat {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last epoch's checkpoint is kept; run the same command again to resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
