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

    def load_settled() -> Any:
        runner = load(path, ctx)
        _settle(runner)
        return runner

    return load_settled


def _settle(runner: Any) -> None:
    """Evaluate every array the runner holds, where it was loaded: MLX streams belong to
    threads, and a lazy array (a dtype cast, a sanitised weight, a cached table) computed
    later on the engine thread would name the loader thread's stream ("There is no
    Stream(cpu, 1) in current thread")."""
    import mlx.core as mx

    arrays: list[Any] = []
    _collect(runner, mx.array, arrays, set(), 0)
    mx.eval(arrays)
    mx.synchronize()


_MAX_DEPTH = 12  # model → layers → block → attention → … is far shallower


def _collect(obj: Any, kind: type, out: list[Any], seen: set[int], depth: int) -> None:
    """The arrays reachable from ``obj`` through containers and object attributes (private
    ones too: models keep rope tables and masks there, outside ``parameters()``)."""
    if isinstance(obj, kind):
        out.append(obj)
        return
    if depth > _MAX_DEPTH or id(obj) in seen or isinstance(obj, (str, bytes, int, float)):
        return
    seen.add(id(obj))
    children: list[Any] = []
    if isinstance(obj, dict):
        children += obj.values()
    elif isinstance(obj, (list, tuple, set)):
        children += obj
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict) and type(obj).__module__.split(".")[0] in _ENGINE_PACKAGES:
        children += attrs.values()
    for child in children:
        _collect(child, kind, out, seen, depth + 1)


# whose objects we walk into: the engines' models and processors and our runners
_ENGINE_PACKAGES = frozenset({"mlxk", "mlx", "mlx_lm", "mlx_vlm", "mlx_audio", "transformers"})


def memory_modality(backend: Backend, capabilities: Sequence[str]) -> str:
    """Which headroom the memory gate keeps: speech and omni models audio, vision models
    vision, everything else text."""
    if backend is Backend.MLX_AUDIO:
        return "audio"
    if backend is Backend.MLX_VLM:
        return (
            "vision" if "vision" in capabilities else "audio" if "audio" in capabilities else "text"
        )
    return "text"
