"""CSV files that people open in spreadsheets: written atomically, with no cell a spreadsheet would run.

A cell starting with ``= + - @``, a tab or a carriage return is a formula to Excel and LibreOffice
(``=HYPERLINK(...)`` in a SeriesDescription from a hostile header, say): such text cells get a leading
apostrophe, which spreadsheets show as text. Numbers (``-0.5``) are left as they are.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Mapping

from deepmcat.checkpoint import atomic_write_bytes

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | Path, columns: list[str]) -> None:
    """``rows`` (dicts; keys beyond ``columns`` ignored) to ``path`` atomically, every cell made safe."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: safe_cell(v) for k, v in row.items()} for row in rows)
    atomic_write_bytes(Path(path), buffer.getvalue().encode())
