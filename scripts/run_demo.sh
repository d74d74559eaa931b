#!/usr/bin/env bash
# The main job on a fresh machine: create the environment, then generate demo data, train DeepMCAT on the
# CPU (or GPU when present), predict and print the quality table. Extra arguments go to `deepmcat demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/deepmcat demo "$@"
