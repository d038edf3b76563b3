"""Shared typed values passed between layers (frozen where they are facts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Framework(str, Enum):
    MLX = "MLX"
    GGUF = "GGUF"
    PYTORCH = "PyTorch"
    CTRANSLATE2 = "CTranslate2"
    UNKNOWN = "Unknown"


class Backend(str, Enum):
    MLX_LM = "mlx-lm"
    MLX_VLM = "mlx-vlm"
    MLX_AUDIO = "mlx-audio"
    EMBEDDINGS = "embeddings"


CAPABILITY_ORDER = (
    "text-generation",
    "chat",
    "vision",
    "audio",
    "audio-translate-en",
    "embeddings",
    "tools",
)


@dataclass(frozen=True)
class LocalModel:
    """A model found on disk: an HF cache snapshot or a workspace directory."""

    name: str  # "org/name" for cache models, absolute path for workspaces
    path: Path  # snapshot dir or workspace dir (may not exist for broken cache entries)
    cached: bool
    commit: str | None = None  # 40-hex snapshot name for cache models
    repo_dir: Path | None = None  # models--org--name for cache models
    display_name: str | None = None
    problem: str | None = None  # set when the cache entry has no usable snapshot


@dataclass(frozen=True)
class HealthReport:
    healthy: bool
    reason: str


@dataclass(frozen=True)
class ModelInfo:
    """What the probe learns from a model's own files."""

    framework: Framework
    model_type: str  # chat / base / audio / embedding
    capabilities: tuple[str, ...]
    config_model_type: str | None
    architecture: str | None
    audio_backend: Backend | None
    context_length: int | None
    quantization: dict[str, int] | None
    embedder: str | None = None  # decoder / encoder / encoder_declared

    @property
    def capability_label(self) -> str:
        return "+".join(c for c in self.capabilities if c in ("chat", "vision", "audio")) or (
            self.model_type
        )


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float | None = None


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float | None = None
    no_speech_prob: float | None = None


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    duration: float
    segments: tuple[Segment, ...] = field(default_factory=tuple)
    task: str = "transcribe"


@dataclass(frozen=True)
class GenerationChunk:
    text: str
    token_count: int = 0
    finish_reason: str | None = None  # "stop" / "length" on the last chunk
    prompt_tokens: int | None = None


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn; one value with one set of defaults for the CLI and the server
    (``backends.sampling.resolve_sampling`` fills it)."""

    temperature: float
    top_p: float
    repetition_penalty: float | None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Started:
    """The first event of every run: what the runner was actually given."""

    backend: Backend
    sampling: Sampling | None = None
    prompt: str | None = None  # the prompt after defaults (None when messages were given)
    prompt_tokens: int | None = None
    max_tokens: int | None = None
    duration: float | None = None  # seconds of audio, for transcriptions
    # backend-specific facts, filled in as the run goes (vision: windows, per-call batches)
    detail: object | None = None
    tools: object | None = None  # backends.text.ToolPlan when the request has tools
    reasoning: object | None = None  # backends.reasoning.ReasoningPlan for thinking models
