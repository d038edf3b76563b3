"""The registry Backend → loader, and the runner protocols the engine and ops/run rely on.

Every loaded model comes from here, for the CLI and the server alike; nobody else picks a
loader by backend. Engines are imported inside the loaders, never at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mlxk.backends.platform import PlatformInfo
from mlxk.types import Backend, GenerationChunk, Sampling


@dataclass(frozen=True)
class LoadContext:
    platform: PlatformInfo
    max_image_bytes: int


class TextRunnerLike(Protocol):
    context_length: int

    def encode_prompt(
        self, messages: list[dict[str, Any]] | None = None, *, prompt: str | None = None,
        use_chat_template: bool = True, system: str | None = None,
    ) -> list[int]: ...  # fmt: skip

    def new_batch(self, max_batch: int, stream: Any = None) -> Any: ...


class SpeechRunnerLike(Protocol):
    supports_translate: bool

    def windows(self, audio: Any, **kwargs: Any) -> Iterator[Any]: ...


class VisionRunnerLike(Protocol):
    def stream(
        self, prompt: str | None, *, images: Sequence[Any] = (), audio: Sequence[Any] = (),
        system: str | None = None, max_tokens: int = 512, sampling: Sampling | None = None,
        chunk: int = 1, messages: list[dict[str, Any]] | None = None,
    ) -> Iterator[GenerationChunk]: ...  # fmt: skip


def _text(path: Path, ctx: LoadContext) -> Any:
    from mlxk.backends.text import load_text

    return load_text(path, float32_activations=ctx.platform.is_cpu)


def _vision(path: Path, ctx: LoadContext) -> Any:
    from mlxk.backends.vision import load_vision

    return load_vision(
        path, float32_activations=ctx.platform.is_cpu, max_image_bytes=ctx.max_image_bytes
    )


def _speech(path: Path, ctx: LoadContext) -> Any:
    from mlxk.backends.speech import load_whisper

    return load_whisper(path, ctx.platform)


def _embeddings(path: Path, ctx: LoadContext) -> Any:
    from mlxk.backends.embeddings import load_embeddings

    return load_embeddings(path)


LOADERS: dict[Backend, Callable[[Path, LoadContext], Any]] = {
    Backend.MLX_LM: _text,
    Backend.MLX_VLM: _vision,
    Backend.MLX_AUDIO: _speech,
    Backend.EMBEDDINGS: _embeddings,
}


def loader_for(backend: Backend, path: Path, ctx: LoadContext) -> Callable[[], Any]:
    load = LOADERS[backend]
    return lambda: load(path, ctx)


def memory_modality(backend: Backend, capabilities: Sequence[str]) -> str:
    """Which headroom the memory gate keeps: speech and omni models audio, vision models
    vision, everything else text."""
    if backend is Backend.MLX_AUDIO:
        return "audio"
    if backend is Backend.MLX_VLM:
        return (
            "vision"
            if "vision" in capabilities
            else ("audio" if "audio" in capabilities else "text")
        )
    return "text"
