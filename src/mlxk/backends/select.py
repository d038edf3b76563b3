"""The one backend selector, used by the CLI and the server alike.

Pure logic over the probe's ModelInfo: no MLX import here, so a capability mismatch is
refused before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlxk.errors import CapabilityMismatchError
from mlxk.store.engines import engine_knows
from mlxk.types import Backend, ModelInfo

CapableLister = Callable[[str], list[str]]  # capability → names of installed capable models


@dataclass(frozen=True)
class Inputs:
    text: bool = True
    images: int = 0
    audio: int = 0
    translate: bool = False
    embeddings: bool = False


def _refuse(name: str, what: str, capability: str, capable: CapableLister) -> None:
    others = [m for m in capable(capability) if m != name]
    hint = f" Models that can: {', '.join(others[:8])}" if others else ""
    raise CapabilityMismatchError(f"Model '{name}' does not support {what}.{hint}")


def select_backend(name: str, info: ModelInfo, inputs: Inputs, capable: CapableLister) -> Backend:
    caps = set(info.capabilities)
    if inputs.embeddings or info.model_type == "embedding":
        if "embeddings" not in caps:
            _refuse(name, "embeddings", "embeddings", capable)
        if not inputs.embeddings:
            raise CapabilityMismatchError(
                f"Model '{name}' is an embedding model; use `mlxk embed` or /v1/embeddings"
            )
        return Backend.EMBEDDINGS
    if inputs.translate:
        if not inputs.audio:
            raise CapabilityMismatchError("--translate requires audio input (--audio FILE)")
        if "audio-translate-en" not in caps:
            _refuse(name, "speech translation (audio-translate-en)", "audio-translate-en", capable)
    if inputs.audio:
        return _audio_backend(name, info, inputs, capable)
    if inputs.images:
        if "vision" not in caps:
            _refuse(name, "image input (vision)", "vision", capable)
        return Backend.MLX_VLM
    if info.model_type == "audio":
        raise CapabilityMismatchError(
            f"Model '{name}' is audio-only (speech-to-text). Use --audio FILE for transcription."
        )
    return text_backend(info)


def _audio_backend(name: str, info: ModelInfo, inputs: Inputs, capable: CapableLister) -> Backend:
    if "audio" not in info.capabilities or info.audio_backend is None:
        _refuse(name, "audio input", "audio", capable)
    assert info.audio_backend is not None
    if inputs.images and info.audio_backend is not Backend.MLX_VLM:
        raise CapabilityMismatchError(
            f"Model '{name}' is a speech model: it takes audio but not images together"
        )
    return info.audio_backend


def text_backend(info: ModelInfo) -> Backend:
    if engine_knows(Backend.MLX_LM, info.config_model_type):
        return Backend.MLX_LM
    if engine_knows(Backend.MLX_VLM, info.config_model_type):
        return Backend.MLX_VLM
    return Backend.MLX_LM


def backends_by_input(info: ModelInfo) -> dict[str, str]:
    """For `show`: which engine runs which kind of input."""
    out: dict[str, str] = {}
    if info.model_type == "embedding":
        return {"embeddings": Backend.EMBEDDINGS.value}
    if info.model_type != "audio":
        out["text"] = text_backend(info).value
    if "vision" in info.capabilities:
        out["image"] = Backend.MLX_VLM.value
    if info.audio_backend is not None:
        out["audio"] = info.audio_backend.value
    return out
