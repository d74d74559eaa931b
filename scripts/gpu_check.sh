#!/usr/bin/env bash
# One prepared GPU check (issue 19), at most 8 minutes on a machine with one CUDA GPU: the GPU and driver,
# the tests marked `gpu`, then benchmarks/gpu.py (training on 100 generated subjects with --device cuda),
# which writes benchmarks/results/gpu-<date>.json. Without a GPU it says so and exits 0 having done nothing.
#   PYTHON=...  the interpreter to use (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export PYTHONPATH="$PWD/lib:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "no CUDA GPU visible to $PYTHON: the GPU check has nothing to do"
  exit 0
fi
SECONDS=0
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true
"$PYTHON" -c 'import torch, faiss, monai; print("torch", torch.__version__, "CUDA", torch.version.cuda,
"| GPUs", torch.cuda.device_count(), "| faiss", faiss.__version__, "| monai", monai.__version__)'
timeout 240 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
timeout $((470 - SECONDS)) "$PYTHON" benchmarks/gpu.py --subjects "${GPU_CHECK_SUBJECTS:-100}"
echo "GPU check done in ${SECONDS}s"
