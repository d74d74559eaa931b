"""``OUT/report.html``: a self-contained (offline) review page of an organised archive.

Header disagreements first, then per cluster: representative thumbnails, size, mean confidence, the
SeriesDescriptions found in it and the suggested name (the most common one), outliers; a confusion table
against ground truth when labels are given; a bar chart of cluster sizes and mean confidence beside a 2-D map
(PCA) of the series embeddings. Patient identifiers
appear only with ``show_phi``.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from deepmcat.organize import EMBEDDINGS_CSV, THUMBNAILS, thumbnail_name
from deepmcat.sources import PHI_FIELDS

STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;text-align:left}th{background:#f2f2f2}
.cluster{border:1px solid #bbb;border-radius:6px;padding:.5em 1em;margin:1em 0}
.thumbs img{width:96px;height:96px;margin:2px;image-rendering:pixelated}.warn{color:#b00}
.charts img{vertical-align:top;margin:0 1em 1em 0;max-width:48%}
"""


def _png_data(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _embedding_map(out: Path, rows: list[dict]) -> str | None:
    """Scatter of the series embeddings on their first two principal axes, coloured by cluster (PNG data)."""
    path = out / EMBEDDINGS_CSV
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        vectors = {r[0]: np.asarray(r[1:], np.float32) for r in csv.reader(fh) if len(r) > 1}
    cluster = {r["series_uid"]: int(r["cluster"]) for r in rows if r["cluster"] != ""}
    uids = [u for u in vectors if u in cluster]
    if len(uids) < 3:
        return None
    plt = _pyplot()
    x = np.stack([vectors[u] for u in uids])
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    labels = np.asarray([cluster[u] for u in uids])
    fig, ax = plt.subplots(figsize=(6, 5), dpi=90)
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=10, label=str(c), alpha=0.8)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("series embeddings (PCA), coloured by cluster")
    ax.legend(fontsize=7, markerscale=1.5, ncol=2, title="cluster")
    return _figure_data(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure_data(fig) -> str:
    """The figure as PNG data for an <img> (the report opens offline), and closed."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _cluster_bars(by_cluster: dict[str, list[dict]]) -> str | None:
    """Series per cluster and their mean confidence, one bar each, largest cluster first (PNG data)."""
    if not by_cluster:
        return None
    plt = _pyplot()
    clusters = sorted(by_cluster, key=lambda c: -len(by_cluster[c]))
    labels = [f"{c}: {by_cluster[c][0]['category']}"[:28] for c in clusters]
    sizes = [len(by_cluster[c]) for c in clusters]
    confidence = [float(np.mean([float(r["confidence"]) for r in by_cluster[c]])) for c in clusters]
    height = 1.2 + 0.28 * len(clusters)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, height), dpi=90, sharey=True)
    rows = np.arange(len(clusters))
    left.barh(rows, sizes, color="#4c72b0")
    left.set_yticks(rows, labels, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("series")
    left.set_title("cluster size")
    right.barh(rows, confidence, color="#dd8452")
    right.set_xlim(0, 1)
    right.set_xlabel("mean confidence")
    right.set_title("how sure the model is")
    return _figure_data(fig)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cluster_section(out: Path, cluster: str, members: list[dict], per_cluster: int) -> str:
    """One cluster: its most typical thumbnails, size, mean confidence, descriptions, least typical members."""
    conf = np.asarray([float(r["confidence"]) for r in members])
    descriptions = Counter(r["series_description"] or "(none)" for r in members)
    suggested = descriptions.most_common(1)[0][0]
    ranked = sorted(members, key=lambda r: -float(r["confidence"]))
    thumbs = "".join(
        f"<img title='{html.escape(r['series_description'])}' src='{_png_data(out / THUMBNAILS / thumbnail_name(r['series_uid']))}'>"
        for r in ranked[:per_cluster] if (out / THUMBNAILS / thumbnail_name(r["series_uid"])).is_file())
    outliers = [r for r in ranked[::-1][:3] if float(r["confidence"]) < float(np.median(conf))]
    return (
        f"<div class='cluster'><h3>cluster {html.escape(cluster)}: {html.escape(members[0]['category'])}</h3>"
        f"<p>{len(members)} series, mean confidence {conf.mean():.2f}; suggested name (most common "
        f"description): <b>{html.escape(suggested)}</b></p><div class='thumbs'>{thumbs}</div>"
        "<p>descriptions: " + ", ".join(f"{html.escape(d)} ({n})" for d, n in descriptions.most_common(10))
        + "</p>" + ("<p>least typical: " + ", ".join(
            f"{html.escape(r['series_description'] or r['series_uid'][-12:])} ({float(r['confidence']):.2f})"
            for r in outliers) + "</p>" if outliers else "") + "</div>")


def write_report(out: str | Path, rows: list[dict], truth: dict[str, str] | None = None, show_phi: bool = False,
                 per_cluster: int = 8) -> Path:
    """Write ``out/report.html`` from organised ``rows`` (series.csv); ``truth``: series uid → category."""
    out = Path(out)
    unknown = [r for r in rows if r["cluster"] != "" and r.get("novel") == "yes"]
    done = [r for r in rows if r["cluster"] != "" and r.get("novel") != "yes"]
    failed = [r for r in rows if r["cluster"] == ""]
    parts = [f"<html><head><meta charset='utf-8'><title>DeepMCAT report</title><style>{STYLE}</style></head><body>",
             "<h1>DeepMCAT: organised series</h1>",
             f"<p>{len(rows)} series: {len(done)} categorised in {len({r['cluster'] for r in done})} clusters, "
             f"{len(unknown)} unknown, {len(failed)} unreadable.</p>"]
    phi = list(PHI_FIELDS) if show_phi else []

    disagree = sorted((r for r in done if r["header_agrees"] == "no"), key=lambda r: float(r["confidence"]),
                      reverse=True)
    parts.append(f"<h2 class='warn'>Header disagrees with content: {len(disagree)} series</h2>")
    parts.append("<p>The SeriesDescription of these series is mostly found in another cluster than theirs.</p>")
    parts.append(_table(["series description", "header suggests", "content says", "confidence", "location", *phi],
                        [[r["series_description"], r["header_category"], r["category"], r["confidence"],
                          r["location"], *(r.get(k, "") for k in phi)] for r in disagree]))

    by_cluster: dict[str, list[dict]] = defaultdict(list)
    for r in done:
        by_cluster[r["cluster"]].append(r)
    parts.append("<h2>Clusters</h2>")
    for cluster in sorted(by_cluster, key=lambda c: -len(by_cluster[c])):
        parts.append(_cluster_section(out, cluster, by_cluster[cluster], per_cluster))

    if truth:
        known = [r for r in done if r["series_uid"] in truth]
        categories = sorted({truth[r["series_uid"]] for r in known})
        clusters = sorted(by_cluster, key=int)
        counts = Counter((truth[r["series_uid"]], r["cluster"]) for r in known)
        parts.append("<h2>Ground truth × cluster</h2>")
        parts.append(_table(["category", *[f"c{c}" for c in clusters]],
                            [[cat, *[counts.get((cat, c), "") for c in clusters]] for cat in categories]))

    bars, image = _cluster_bars(by_cluster), _embedding_map(out, rows)
    if bars or image:
        parts.append("<h2>Clusters at a glance</h2><div class='charts'>"
                     + "".join(f"<img alt='{alt}' src='{data}'>" for alt, data in
                               (("cluster sizes and mean confidence", bars), ("embedding map", image)) if data)
                     + "</div>")
    if unknown:
        parts.append(f"<h2 class='warn'>Unknown: {len(unknown)} series like no learned category</h2>")
        parts.append("<p>Farther from every cluster than the model's training series are (another sequence, "
                     "another body part or modality): check them, and name or retrain if they are a new category.</p>")
        parts.append(_table(["series description", "nearest cluster", "location", *phi],
                            [[r["series_description"], r["cluster"], r["location"], *(r.get(k, "") for k in phi)]
                             for r in unknown]))
    if failed:
        parts.append("<h2>Unreadable series</h2>")
        parts.append(_table(["location", "error"], [[r["location"], r["error"]] for r in failed]))
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
