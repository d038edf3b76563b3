#!/usr/bin/env bash
# Set up (idempotent) and run the checks CI runs: lint, type check, the full test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A separate reference environment for comparisons against transformers (torch). Kept apart
# because torch in the main environment slows every mlx-lm / mlx-audio import by seconds.
if [ ! -x .venv-ref/bin/python ] || ! .venv-ref/bin/python -c "import torch, transformers, accelerate, gguf" 2>/dev/null; then
  "${PYTHON:-python3}" -m venv .venv-ref
  .venv-ref/bin/python -m pip install -q --upgrade pip
  .venv-ref/bin/python -m pip install -q -c constraints.txt torch==2.13.0 accelerate==1.15.0 transformers gguf sentencepiece
fi
.venv/bin/ruff check src tests
.venv/bin/mypy
# One MLX kernel cache per run (MLX compiles CPU kernels with g++ on first use).
export TMPDIR="${TMPDIR:-/tmp}"
.venv/bin/python -m pytest -q "$@"
