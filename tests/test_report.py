"""The organize report on its own: the charts a reader looks at first, drawn from the rows they summarise."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from deepmcat.organize import COLUMNS, EMBEDDINGS_CSV
from deepmcat.report import write_report


def _rows() -> list[dict]:
    rows = []
    for i, (cluster, category, confidence) in enumerate([("0", "cine_sax", 0.9)] * 6 + [("1", "lge", 0.5)] * 2):
        row = dict.fromkeys(COLUMNS, "")
        row.update(series_uid=f"1.2.{i}", cluster=cluster, category=category, confidence=f"{confidence:.4f}",
                   series_description=category, header_agrees="yes", location=f"s{i}")
        rows.append(row)
    return rows + [dict(dict.fromkeys(COLUMNS, ""), series_uid="1.2.99", error="cannot decode", location="bad")]


def test_the_report_shows_cluster_sizes_and_confidence_beside_the_embedding_map(tmp_path):
    rows = _rows()
    rng = np.random.default_rng(0)
    (tmp_path / EMBEDDINGS_CSV).write_text("".join(
        ",".join([r["series_uid"], *(f"{v:.4f}" for v in rng.normal(size=4))]) + "\n" for r in rows[:-1]))
    page = write_report(tmp_path, rows).read_text()
    assert "<h2>Clusters at a glance</h2>" in page
    charts = dict(re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([^']+)'>", page))
    assert set(charts) == {"cluster sizes and mean confidence", "embedding map"}
    bars = Image.open(io.BytesIO(base64.b64decode(charts["cluster sizes and mean confidence"])))
    assert bars.size[0] > 400 and bars.size[1] > 100
    assert "8 categorised in 2 clusters, 0 unknown, 1 unreadable" in page.replace("series: ", "")
    assert page.index("cluster 0: cine_sax") < page.index("cluster 1: lge")  # largest cluster first


def test_without_embeddings_the_bars_are_still_drawn(tmp_path):
    page = write_report(tmp_path, _rows()).read_text()
    assert "alt='cluster sizes and mean confidence'" in page and "alt='embedding map'" not in page


def test_organize_answers_unknown_series_in_the_csv_and_their_own_report_section(trained_tiny_model, tmp_path):
    """At the 5th percentile some series of a new examination are farther from the training units than the
    training units are from the other examination's (two training examinations: few of a category to lean on
    when one's own is left out, so the calibration runs high): those rows say "unknown", keep their nearest
    cluster, are left out of the header check and are listed on their own."""
    from deepmcat.generate import generate
    from deepmcat.inference import Model
    from deepmcat.organize import Organizer
    from deepmcat.sources import open_source

    generate(tmp_path / "new", subjects=1, seed=11, balanced=True, progress=False)
    model = Model(trained_tiny_model, device="cpu", unknown_percentile=5)
    rows = Organizer(model, open_source(tmp_path / "new"), tmp_path / "out", progress=False).run().rows
    unknown = [r for r in rows if r["novel"] == "yes"]
    assert 0 < len(unknown) < len(rows)
    assert all(r["category"] == "unknown" and r["cluster"] != "" and r["header_agrees"] == "" for r in unknown)
    assert all(r["category"] != "unknown" for r in rows if r["novel"] != "yes")
    page = write_report(tmp_path / "out", rows).read_text()
    assert f"Unknown: {len(unknown)} series like no learned category" in page
    assert f"{len(rows) - len(unknown)} categorised in" in page and f"{len(unknown)} unknown" in page
    assert "cluster 0: unknown" not in page and ": unknown</h3>" not in page
