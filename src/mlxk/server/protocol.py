"""Wire types: pydantic models matching OpenAI's request and response shapes.

Unknown request fields are ignored (clients send many we do not use); fields we accept but
cannot honour (``n`` > 1, ``dimensions``) are refused with a 400 naming them. mlxk additions
are marked "mlxk:" in their descriptions.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ModelName = Annotated[str, Field(min_length=1, max_length=512)]
StopField = str | Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=16)]
Role = Literal["system", "user", "assistant", "tool", "developer"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- errors ----------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# -- chat ------------------------------------------------------------------------------------


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ImageUrl(_Request):
    url: str = Field(description="a data: URL (data:image/png;base64,...); remote URLs are refused")
    detail: str | None = None


class ImagePart(_Request):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(_Request):
    data: str = Field(description="base64-encoded audio file")
    format: str = Field(max_length=16, description="wav, mp3, flac, ogg, m4a, webm, …")


class AudioPart(_Request):
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[TextPart | ImagePart | AudioPart, Field(discriminator="type")]


class ChatMessage(_Request):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    model: ModelName
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: StopField | None = None
    n: int = Field(default=1, ge=1, le=128)
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(
        default=None, gt=0.0, le=10.0, description="mlxk: multiplicative repetition penalty"
    )
    user: str | None = Field(default=None, max_length=256)

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions
    echo: bool = False

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


# -- embeddings ------------------------------------------------------------------------------

TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=8192)]


class EmbeddingRequest(_Request):
    model: ModelName
    input: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=2048)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1, max_length=2048)]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, max_length=256)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# -- models ----------------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "mlxk"
    capabilities: list[str] = Field(description="mlxk: chat, vision, audio, embeddings, …")
    backend: str | None = Field(description="mlxk: mlx-lm, mlx-vlm, mlx-audio or embeddings")
    context_length: int | None = Field(description="mlxk: tokens the model can attend to")
    loaded: bool = Field(default=False, description="mlxk: in memory now")
    pinned: bool = Field(default=False, description="mlxk: preloaded with --model, never evicted")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- audio -----------------------------------------------------------------------------------

TranscriptFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]


class TranscriptionJson(BaseModel):
    text: str


class TextDelta(BaseModel):
    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str
    segment_id: str | None = None


class TextSegment(BaseModel):
    """A finished segment, sent right after its delta; ``audio_done``/``audio_duration`` are
    mlxk's: seconds of the upload decoded so far and in all (for progress bars)."""

    type: Literal["transcript.text.segment"] = "transcript.text.segment"
    id: str
    start: float
    end: float
    text: str
    audio_done: float
    audio_duration: float


class TextDone(BaseModel):
    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str


# -- health / stats --------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Stats(BaseModel):
    """mlxk: counters for operators and tests."""

    admitted: int
    rejected_busy: int
    cancelled: int
    completed: int
    failed: int
    generated_tokens: int
    active_sequences: int
    in_flight: int
    max_queue: int
    memory_budget_bytes: int
    memory_reserved_bytes: int
    loaded: list[dict[str, Any]]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())
