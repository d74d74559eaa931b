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
# sam2 (a MONAI Label requirement) comes as a source package whose build asks for torch: in pip's isolated build
# environment that is a second, uncapped CUDA torch (~6 GB more disk at the peak, downloaded from PyPI where it
# is not on local disk; a CI run failed with "No space left on device"). So the pinned torch goes in first, and
# the source packages build against it (SAM2_BUILD_CUDA=0: its optional CUDA kernels are not used here).
# Measured on the 2-core machine in a new venv: peak disk 15.7 -> 10.4 GB, 5 min 34 s -> 4 min 11 s.
TORCH=$(grep -oE 'torch==[0-9.]+' setup.cfg)
"$VENV/bin/python" -m pip install -q --no-cache-dir "$TORCH"
export SAM2_BUILD_CUDA=0
PIP_INSTALL=("$VENV/bin/python" -m pip install -q --no-cache-dir --no-build-isolation)
# one resolution for everything; where the Slicer panel harness's packages cannot be installed, the rest is,
# and that test is skipped saying why
"${PIP_INSTALL[@]}" -e '.[app,test,slicer]' \
  || { echo "warning: the install with the Slicer panel harness (slicer-core, PyQt5) failed, see above; retrying without it (the Slicer panel test will be skipped)" >&2
       "${PIP_INSTALL[@]}" -e '.[app,test]'; }
"$VENV/bin/python" -c "import deepmcat, monailabel, faiss, itk, torch; print('deepmcat env ready: torch', torch.__version__, '| monailabel', monailabel.__version__)"
