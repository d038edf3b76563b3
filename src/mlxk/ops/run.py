"""run: one pipeline from a model reference to a stream of results, for the CLI and the server.

resolve → probe/health/runtime → select backend (refuses mismatches before loading) →
memory gate → platform setup → load → stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlxk.backends.select import Inputs, select_backend
from mlxk.config import Settings
from mlxk.errors import MlxkError
from mlxk.ops.catalog import ModelRecord, build_record, list_models
from mlxk.store.resolve import Resolver
from mlxk.types import Backend, GenerationChunk, Transcript

# mlx-knife's defaults: text 0.7; Whisper 0.0; omni audio 0.2 (set in the vision backend).
TEXT_TEMPERATURE = 0.7
OMNI_AUDIO_PROMPT = "Transcribe what is spoken in this audio."
IMAGE_PROMPT = "Describe the image."


class RunRefused(MlxkError):
    type = "execution_error"
    http_status = 400


@dataclass(frozen=True)
class RunOptions:
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    images: Sequence[Path | bytes] = ()
    audio: Sequence[Path | bytes] = ()
    system: str | None = None
    language: str | None = None
    translate: bool = False
    initial_prompt: str | None = None  # for Whisper: only what the user gave
    temperature: float | None = None
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    max_tokens: int | None = None
    use_chat_template: bool = True
    word_timestamps: bool = False
    embeddings: bool = False
    chunk: int = 1
    stop: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class PreparedRun:
    name: str  # what the user typed, resolved name in messages
    record: ModelRecord
    backend: Backend


def capable_lister(settings: Settings) -> Any:
    def capable(capability: str) -> list[str]:
        recs = list_models(settings)
        return [_label(r) for r in recs if r.runnable and capability in r.info.capabilities]

    return capable


def _label(rec: ModelRecord) -> str:
    m = rec.model
    return m.name if m.cached else (m.display_name or m.name)


def _runnable_record(settings: Settings, spec: str) -> tuple[str, ModelRecord]:
    model = Resolver(settings).resolve(spec).model
    record = build_record(model)
    label = _label(record)
    if not record.health.healthy:
        raise RunRefused(f"Model '{label}' is unhealthy: {record.health.reason}")
    if not record.runtime.compatible:
        raise RunRefused(f"Model '{label}' is not compatible: {record.runtime.reason}")
    return label, record


def prepare(settings: Settings, spec: str, opts: RunOptions) -> PreparedRun:
    """Everything that can refuse a run, before any weights are loaded."""
    label, record = _runnable_record(settings, spec)
    inputs = Inputs(
        images=len(opts.images), audio=len(opts.audio), translate=opts.translate,
        embeddings=opts.embeddings,
    )  # fmt: skip
    backend = select_backend(label, record.info, inputs, capable_lister(settings))
    return PreparedRun(label, record, backend)


def prepare_by_kind(settings: Settings, spec: str) -> PreparedRun:
    """For preloading (serve --model): the backend the model's own kind calls for."""
    label, record = _runnable_record(settings, spec)
    kind = record.info.model_type
    inputs = Inputs(audio=int(kind == "audio"), embeddings=kind == "embedding")
    return PreparedRun(
        label, record, select_backend(label, record.info, inputs, capable_lister(settings))
    )


def modality_of(prep: PreparedRun) -> str:
    """Which headroom the memory gate keeps: speech and omni models audio, vision models
    vision, everything else text."""
    caps = prep.record.info.capabilities
    if prep.backend is Backend.MLX_AUDIO:
        return "audio"
    if prep.backend is Backend.MLX_VLM:
        return "vision" if "vision" in caps else ("audio" if "audio" in caps else "text")
    return "text"


def check_memory(settings: Settings, prep: PreparedRun, device: str) -> None:
    from mlxk.backends.memory import estimate, gate

    est = estimate(
        prep.record.model.path, prep.record.info, device=device, modality=modality_of(prep),
        override=settings.memory_limit_bytes,
    )  # fmt: skip
    gate(est, prep.name)


_LOADED: dict[tuple[str, Path], Any] = {}


def _cached(kind: str, path: Path, load: Any) -> Any:
    """Keep the last loaded model so an interactive chat does not reload it every turn."""
    key = (kind, path)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load()
    return _LOADED[key]


def last_vision_request() -> dict[str, Any] | None:
    """What the last vision/omni call actually used (prompt, temperature, audio windows)."""
    from dataclasses import asdict

    for (kind, _path), runner in _LOADED.items():
        if kind == "vision" and getattr(runner, "last_request", None) is not None:
            return asdict(runner.last_request)
    return None


def platform_for(settings: Settings) -> Any:
    from mlxk.backends.platform import setup_platform

    return setup_platform(settings)


def stream_text(
    settings: Settings, prep: PreparedRun, opts: RunOptions
) -> Iterator[GenerationChunk]:
    plat = platform_for(settings)
    check_memory(settings, prep, plat.device)
    from mlxk.backends.text import load_text

    path = prep.record.model.path
    runner = _cached(
        "text", path, lambda: load_text(path, float32_activations=plat.device == "cpu")
    )
    temperature = TEXT_TEMPERATURE if opts.temperature is None else opts.temperature
    yield from runner.stream(
        opts.messages, prompt=opts.prompt if opts.messages is None else None,
        use_chat_template=opts.use_chat_template, system=opts.system,
        max_tokens=opts.max_tokens, temperature=temperature, top_p=opts.top_p,
        repetition_penalty=opts.repetition_penalty, stop=opts.stop,
    )  # fmt: skip


def stream_vision(
    settings: Settings, prep: PreparedRun, opts: RunOptions
) -> Iterator[GenerationChunk]:
    from mlxk.media.audio import load_audio

    plat = platform_for(settings)
    check_memory(settings, prep, plat.device)
    clips = [_load_clip(settings, a, load_audio) for a in opts.audio]
    from mlxk.backends.vision import load_vision

    path = prep.record.model.path
    runner = _cached(
        "vision", path, lambda: load_vision(path, float32_activations=plat.device == "cpu")
    )
    prompt = opts.prompt
    if prompt is None and opts.messages is None:
        prompt = OMNI_AUDIO_PROMPT if clips else (IMAGE_PROMPT if opts.images else None)
    yield from runner.stream(
        prompt, images=list(opts.images), audio=[c.samples for c in clips], system=opts.system,
        max_tokens=opts.max_tokens or 512, temperature=opts.temperature, top_p=opts.top_p,
        chunk=opts.chunk, messages=opts.messages,
    )  # fmt: skip


def _load_clip(settings: Settings, source: Path | bytes, loader: Any) -> Any:
    return loader(
        source, target_rate=16000, max_bytes=settings.max_audio_bytes,
        max_seconds=settings.max_audio_seconds,
    )  # fmt: skip


@dataclass(frozen=True)
class FileTranscript:
    source: str
    transcript: Transcript | None
    error: str | None = None


def transcribe(settings: Settings, prep: PreparedRun, opts: RunOptions) -> Iterator[FileTranscript]:
    """One result per audio input, in order; a bad file is reported, never skipped silently."""
    from mlxk.media.audio import load_audio

    plat = platform_for(settings)
    check_memory(settings, prep, plat.device)
    from mlxk.backends.speech import load_whisper

    path = prep.record.model.path
    runner = _cached("speech", path, lambda: load_whisper(path, plat))
    for source in opts.audio:
        label = source.name if isinstance(source, Path) else "upload"
        try:
            clip = _load_clip(settings, source, load_audio)
        except MlxkError as exc:
            yield FileTranscript(label, None, exc.message)
            continue
        result = runner.transcribe(
            clip.samples, language=opts.language,
            task="translate" if opts.translate else "transcribe",
            initial_prompt=opts.initial_prompt, word_timestamps=opts.word_timestamps,
            temperature=opts.temperature or 0.0,
        )  # fmt: skip
        yield FileTranscript(label, result)
