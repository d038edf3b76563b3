#!/usr/bin/env bash
# Set up (idempotent) and run the checks CI runs: lint, type check, the full test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests
.venv/bin/mypy
# One MLX kernel cache per run (MLX compiles CPU kernels with g++ on first use).
export TMPDIR="${TMPDIR:-/tmp}"
.venv/bin/python -m pytest -q "$@"
