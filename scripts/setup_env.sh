#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install deepmcat with the
# MONAI Label app, test and Slicer-harness extras. Idempotent: a second run only re-installs the project itself.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DEEPMCAT_VENV:-.venv}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
# one resolution for everything; where the Slicer panel harness's packages cannot be installed, the rest is,
# and that test is skipped saying why
"$VENV/bin/python" -m pip install -q -e '.[app,test,slicer]' \
  || { echo "warning: slicer-core / PyQt5 could not be installed: the Slicer panel test will be skipped" >&2
       "$VENV/bin/python" -m pip install -q -e '.[app,test]'; }
"$VENV/bin/python" -c "import deepmcat, monailabel, faiss, itk, torch; print('deepmcat env ready: torch', torch.__version__, '| monailabel', monailabel.__version__)"
