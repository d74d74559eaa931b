"""The CLI contract: generate → train → predict → evaluate, and clear errors on bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepmcat.cli import main


def test_generate_writes_labels_for_every_file(tmp_path):
    assert main(["generate", "--out", str(tmp_path), "--subjects", "1", "--imbalanced", "--seed", "5",
                 "--quiet"]) == 0
    with open(tmp_path / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    files = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.dcm")}
    assert {r["path"] for r in rows} == files
    assert len({r["category"] for r in rows}) >= 11  # every category but (sometimes) LGE


def test_generate_is_deterministic_by_seed(tmp_path):
    import pydicom

    for name in ("a", "b"):
        main(["generate", "--out", str(tmp_path / name), "--subjects", "1", "--seed", "9", "--quiet"])
    first = sorted((tmp_path / "a").rglob("*.dcm"))[5]
    second = tmp_path / "b" / first.relative_to(tmp_path / "a")
    assert (pydicom.dcmread(first).pixel_array == pydicom.dcmread(second).pixel_array).all()


def test_nifti_format_writes_flat_files(tmp_path):
    main(["generate", "--out", str(tmp_path), "--subjects", "1", "--format", "nifti", "--quiet"])
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(list(tmp_path.glob("*.nii.gz"))) >= 12


def test_interrupted_generation_leaves_no_labels_csv(tmp_path, monkeypatch):
    """labels.csv is what says a generated set is complete (the benchmarks reuse a folder that has one), so
    a run stopped half-way must not leave one."""
    from deepmcat import generate as generate_module

    written = generate_module.write_subject

    def fail_on_second(job):
        if job.subject == 2:
            raise KeyboardInterrupt
        return written(job)

    monkeypatch.setattr(generate_module, "write_subject", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        generate_module.generate(tmp_path, subjects=3, seed=1, progress=False, workers=1)
    assert list(tmp_path.glob("sub-0001/*")) and not list(tmp_path.glob("labels.csv*"))


def test_a_benchmark_set_is_reused_only_while_the_generator_is_the_same(tmp_path, monkeypatch):
    """benchmarks.common.generated makes a set once per version of the generator's sources: reused while they
    are unchanged, made anew (the stale folder removed first) when they changed or a run left it unfinished."""
    from benchmarks import common

    made = []

    def make(out):
        made.append(out)
        out.mkdir(parents=True)
        (out / "labels.csv").write_text("path,category\n")

    folder = tmp_path / "set"
    monkeypatch.setattr(common, "source_stamp", lambda *parts: "version-1")
    assert common.generated(folder, make) == folder and common.generated(folder, make) == folder
    assert len(made) == 1
    monkeypatch.setattr(common, "source_stamp", lambda *parts: "version-2")
    (folder / "stale.dcm").write_text("")
    common.generated(folder, make)
    assert len(made) == 2 and not (folder / "stale.dcm").exists()
    (folder / "labels.csv").unlink()  # as an interrupted generation leaves it
    common.generated(folder, make)
    assert len(made) == 3 and (folder / "labels.csv").is_file()


def test_a_family_set_is_stamped_by_its_own_generator_only(tmp_path, monkeypatch):
    """A set of one phantom family is made anew when its family's files or the shared writer change, not when
    another family's file does (a new family left every other set standing)."""
    from benchmarks import common

    stamped = {}

    def make(out):
        out.mkdir(parents=True)
        (out / "labels.csv").write_text("path,category\n")

    for family in ("classic", "torso", "shell"):
        monkeypatch.setattr(common, "source_stamp", lambda *parts, f=family: stamped.setdefault(f, parts) and "v")
        common.generated(tmp_path / family, make, family)
    assert {"generate.py", "phantoms.py", "sidecars.py"} <= set(stamped["classic"])
    assert not any(part.startswith("families/") for part in stamped["classic"])
    assert {"families/files.py", "families/torso.py", "families/shell.py", "generate.py"} <= set(stamped["shell"])
    assert not {"families/blob.py", "families/contour.py", "families"} & set(stamped["shell"] + stamped["torso"])


def test_the_source_stamp_follows_the_files_it_hashes():
    from benchmarks.common import GENERATOR, source_stamp

    assert source_stamp(*GENERATOR) == source_stamp(*GENERATOR)
    assert len({source_stamp(*GENERATOR), source_stamp("generate.py"), source_stamp()}) == 3


@pytest.mark.integration  # whole training runs
def test_train_predict_evaluate_end_to_end(tiny_phantoms, tmp_path):
    from sklearn.metrics import normalized_mutual_info_score

    from deepmcat.labels import read_labels

    model = tmp_path / "model"
    assert main(["train", "--data", str(tiny_phantoms), "--out", str(model), "--clusters", "6", "--frames", "4",
                 "--size", "32", "--warmup-epochs", "8", "--epochs", "2", "--batch-size", "8", "--device", "cpu",
                 "--seed", "0", "--quiet"]) == 0
    preds = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(model), "--data", str(tiny_phantoms), "--out", str(preds),
                 "--device", "cpu", "--quiet"]) == 0
    for name, cache in (("cached.csv", []), ("uncached.csv", ["--cache", "off"])):  # the cache changes nothing
        assert main(["predict", "--model", str(model), "--data", str(tiny_phantoms), "--out", str(tmp_path / name),
                     "--device", "cpu", "--quiet", *cache]) == 0
        assert (tmp_path / name).read_bytes() == preds.read_bytes()
    with open(preds) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(list(tiny_phantoms.rglob("*.dcm")))  # one row per input file
    assert {"path", "unit", "series_uid", "cluster", "category", "confidence", "novel"} <= set(rows[0])
    assert all((r["category"] == "unknown") == (r["novel"] == "1") for r in rows)
    by_unit: dict[str, set] = {}
    for r in rows:
        assert not Path(r["path"]).is_absolute() and 0 <= float(r["confidence"]) <= 1
        by_unit.setdefault(r["unit"], set()).add(r["cluster"])
    assert all(len(c) == 1 for c in by_unit.values())  # every file of a unit carries its unit's cluster
    assert len(by_unit) == 24

    out = subprocess.run([sys.executable, "-m", "deepmcat.cli", "evaluate", "--pred", str(preds), "--labels",
                          str(tiny_phantoms / "labels.csv"), "--json"], capture_output=True, text=True, check=True)
    scores = json.loads(out.stdout)
    assert scores["n"] == 24 and scores["level"] == "acquisition"  # what sorting an archive is judged by
    by_file = subprocess.run([sys.executable, "-m", "deepmcat.cli", "evaluate", "--pred", str(preds), "--labels",
                              str(tiny_phantoms / "labels.csv"), "--json", "--level", "file"],
                             capture_output=True, text=True, check=True)
    assert json.loads(by_file.stdout)["n"] == len(rows)

    # the score recomputed from the rows, and compared with the same clusters shuffled over acquisitions
    labels = read_labels(tiny_phantoms / "labels.csv")
    truth = {r["acquisition"]: labels[r["path"]] for r in rows}
    clusters = {r["acquisition"]: r["acquisition_cluster"] for r in rows}
    keys = sorted(truth)
    y, c = [truth[k] for k in keys], [clusters[k] for k in keys]
    assert abs(scores["nmi"] - normalized_mutual_info_score(y, c)) < 1e-9
    rng = np.random.default_rng(0)
    shuffled = [normalized_mutual_info_score(y, rng.permutation(c)) for _ in range(500)]
    assert scores["nmi"] > np.percentile(shuffled, 95) + 0.03, (scores["nmi"], np.percentile(shuffled, 95))


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "{tmp}/missing", "--out", "{tmp}/m", "--clusters", "3"], "no such file or folder"),
    (["train", "--data", "{tmp}/empty", "--out", "{tmp}/m", "--clusters", "3"], "no readable image series"),
    (["train", "--data", "{tmp}/empty", "--out", "{tmp}/m", "--clusters", "3", "--centre-crop", "1.5"],
     "centre_crop must be in [0, 1)"),
    (["predict", "--model", "{tmp}/nomodel", "--data", "{tmp}/empty", "--out", "{tmp}/p.csv"], "no model folder"),
    (["evaluate", "--pred", "{tmp}/bad.csv", "--labels", "{tmp}/bad.csv"], "needs the columns"),
    (["generate", "--out", "{tmp}/g", "--subjects", "1", "--format", "enhanced"],
     "add --family torso, blob, contour, shell or spheroid"),
])
def test_bad_input_gives_one_clear_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    code = main([a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", "x", "--out", "y", "--clusters", "0"])
    assert exc.value.code == 2
    assert "must be positive" in capsys.readouterr().err


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("deepmcat")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("deepmcat ")


@pytest.mark.integration  # whole training runs
def test_demo_runs_end_to_end_and_prints_the_table(tmp_path, capsys):
    code = main(["demo", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "model"), "--subjects", "1",
                 "--epochs", "1", "--warmup-epochs", "1", "--device", "cpu", "--quiet", "--no-serve"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| acquisition |" in out and "| unit |" in out and "purity" in out
    assert (tmp_path / "model" / "model.pt").is_file() and (tmp_path / "model" / "predictions.csv").is_file()
    result = json.loads((tmp_path / "model" / "demo-result.json").read_text())
    assert result["scores"]["acquisition"]["level"] == "acquisition" and result["machine"]["cpus"]
    assert f"{result['scores']['acquisition']['purity']:.3f}" in out  # the printed figure is the saved one
    assert set(result["stage_seconds"]) == {"generate", "train", "predict"}
    stages = result["stage_seconds"].values()  # each rounded to 0.1 s, as the total is
    assert sum(stages) <= result["seconds"] + 0.05 * (len(stages) + 1) and result["peak_rss_mb"]["this_process"] > 100


def test_generated_uids_are_unique(tmp_path):
    import pydicom

    from deepmcat.generate import phantom_uid

    # what collided before: pydicom joins entropy sources without a separator ("1" + "12" == "11" + "2")
    assert phantom_uid(0, 1, "series=12") != phantom_uid(0, 11, "series=2")
    keys = ["study", *(f"series={n}" for n in range(1, 40)), *(f"series=flow-{s}" for s in range(1, 151))]
    uids = [phantom_uid(0, subject, key) for subject in range(1, 151) for key in keys]
    assert len(set(uids)) == len(uids)
    main(["generate", "--out", str(tmp_path), "--subjects", "2", "--seed", "3", "--quiet"])
    series, studies, instances = {}, {}, []
    for path in sorted(tmp_path.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        subject = path.parts[-3]
        series.setdefault(ds.SeriesInstanceUID, set()).add(subject)
        studies.setdefault(ds.StudyInstanceUID, set()).add(subject)
        instances.append(ds.SOPInstanceUID)
    assert len(set(instances)) == len(instances)
    assert all(len(members) == 1 for members in studies.values()) and len(studies) == 2
    assert all(len(subjects) == 1 for subjects in series.values())  # a series never spans two subjects
    assert len(series) == len({p.parent for p in tmp_path.rglob("*.dcm")}) - 2  # flow magnitude + phase: one


def test_gpu_check_script_says_there_is_no_gpu_and_exits_0():
    """scripts/gpu_check.sh on a machine (or with the GPUs hidden) without CUDA: it says so and does nothing."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
    results = script.parents[1] / "benchmarks" / "results"
    before = sorted(results.glob("gpu-*.json"))
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable))
    assert run.returncode == 0 and "no CUDA GPU" in run.stdout, run.stdout + run.stderr
    assert sorted(results.glob("gpu-*.json")) == before
