"""runtime_compatible: can an installed engine run this model? (asked lazily, no imports)"""

from __future__ import annotations

from dataclasses import dataclass

from mlxk.store.engines import engine_installed, engine_knows
from mlxk.store.probe import ModelFiles
from mlxk.types import Backend, Framework, HealthReport, ModelInfo

IMPORT_HINT = {
    Framework.GGUF: " — convert it with: mlxk import <file.gguf>",
    Framework.CTRANSLATE2: " — convert it with: mlxk import <folder>",
}
# Embedding encoders mlxk runs itself (see backends/embeddings.py once present).
SUPPORTED_EMBEDDERS = ("encoder",)


@dataclass(frozen=True)
class RuntimeVerdict:
    compatible: bool
    reason: str | None
    backend: Backend | None  # the engine that would run a plain (text or audio) request


def runtime_check(info: ModelInfo, files: ModelFiles, health: HealthReport) -> RuntimeVerdict:
    if not health.healthy:
        return RuntimeVerdict(False, health.reason, None)
    if info.model_type == "embedding" and files.with_suffix(".safetensors"):
        # mlxk's own MLX BERT encoder reads Hugging Face safetensors directly.
        return _embedding_verdict(info)
    if info.framework is not Framework.MLX:
        hint = IMPORT_HINT.get(info.framework, "")
        return RuntimeVerdict(False, f"Incompatible framework: {info.framework.value}{hint}", None)
    if info.model_type == "embedding":
        return _embedding_verdict(info)
    if info.model_type == "audio" and info.audio_backend is not None:
        return _engine_verdict(info.audio_backend, info, files)
    if info.config_model_type is None:
        return RuntimeVerdict(False, "config.json has no model_type", None)
    # Text goes to mlx-lm when it knows the type, else to mlx-vlm's text path (so a text
    # prompt to an omni model such as Gemma-3n works instead of failing late).
    for engine in (Backend.MLX_LM, Backend.MLX_VLM):
        if engine_knows(engine, info.config_model_type):
            return RuntimeVerdict(True, None, engine)
    return RuntimeVerdict(
        False, f"model_type '{info.config_model_type}' not supported by mlx-lm or mlx-vlm", None
    )


def _engine_verdict(engine: Backend, info: ModelInfo, files: ModelFiles) -> RuntimeVerdict:
    if not engine_installed(engine):
        return RuntimeVerdict(False, f"{engine.value} is not installed", None)
    mt = info.config_model_type
    if not engine_knows(engine, mt):
        return RuntimeVerdict(False, f"model_type '{mt}' not supported by {engine.value}", None)
    if mt == "voxtral" and files.has("tekken.json") and not files.has("tokenizer.json"):
        return RuntimeVerdict(False, "Voxtral without tokenizer.json (tekken.json only)", None)
    return RuntimeVerdict(True, None, engine)


def _embedding_verdict(info: ModelInfo) -> RuntimeVerdict:
    ok = info.embedder in SUPPORTED_EMBEDDERS
    why = None if ok else f"Embedding model kind '{info.embedder}' is not supported yet"
    return RuntimeVerdict(ok, why, Backend.EMBEDDINGS if ok else None)
