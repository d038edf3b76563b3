"""Wire types: pydantic models matching OpenAI's request and response shapes.

No silent drops: every request field is honoured, accepted and ignored on purpose (listed
in docs/server.md, "Fields accepted and ignored, fields refused"), or refused with a 400
``unsupported_parameter`` naming it. Unknown fields are refused (``extra="forbid"``); OpenAI
fields mlxk knows but does not implement are declared with :func:`refused` and pass only with
a value that changes nothing (null, ``false``, …). Both become ApiError in :class:`_Body`, the
one place. Values we accept but cannot honour (``n`` > 1, ``dimensions``) are refused by the
routes. mlxk additions are marked "mlxk:" in their descriptions.
"""

from __future__ import annotations

import difflib
import json
import time
import uuid
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mlxk.server.errors import ApiError

ModelName = Annotated[str, Field(min_length=1, max_length=512)]
StopField = str | Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=16)]
Role = Literal["system", "user", "assistant", "tool", "developer"]


UNSUPPORTED = "unsupported_parameter"
_NEUTRAL = "x-mlxk-accepted-only"  # the values that pass, in the field's JSON schema
_WHY = "x-mlxk-refused-because"


def refused(why: str, *neutral: Any) -> Any:
    """A field mlxk knows but does not implement: null (or a value in ``neutral``, one that
    changes nothing) passes, anything else is a 400 naming it, saying ``why``."""
    shown = ", ".join(json.dumps(v) for v in (None, *neutral))
    return Field(
        default=None,
        description=f"mlxk: not supported ({why}); only {shown} accepted",
        json_schema_extra={_NEUTRAL: [None, *neutral], _WHY: why},
    )


def _neutral(value: Any, allowed: list[Any]) -> bool:
    # type-strict: 1 is not True, 0 is not False
    return any(value == ok and type(value) is type(ok) for ok in allowed)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unimplemented(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra
            if name in data and isinstance(extra, dict) and _NEUTRAL in extra:
                allowed = extra[_NEUTRAL]
                if isinstance(allowed, list) and not _neutral(data[name], allowed):
                    ctx = {"why": str(extra[_WHY]), "field": name}
                    raise PydanticCustomError(UNSUPPORTED, "{field}: {why}", ctx)
        return data


class _Body(_Request):
    """A whole request body: an unknown or unimplemented field anywhere in it becomes one
    400 ``unsupported_parameter`` whose ``param`` is the field's path (``messages.0.audio``)."""

    @model_validator(mode="wrap")
    @classmethod
    def _no_silent_drops(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            for err in exc.errors():
                if err["type"] in ("extra_forbidden", UNSUPPORTED):
                    raise _unsupported(cls, data, err) from None
            raise


def _json_path(data: Any, loc: tuple[int | str, ...]) -> list[str] | None:
    """The error's location as keys and indexes of the body itself: pydantic's ``loc`` also
    holds union branches and discriminator tags, which are skipped (one may equal a key, as
    the tag "text" does, so the walk backtracks until the whole path exists)."""
    if not loc:
        return []
    head, rest = loc[0], loc[1:]
    in_dict = isinstance(data, dict) and isinstance(head, str) and head in data
    in_list = isinstance(data, list) and isinstance(head, int) and 0 <= head < len(data)
    if in_dict or in_list:
        tail = _json_path(data[head], rest)
        if tail is not None:
            return [str(head), *tail]
    return _json_path(data, rest) if rest else None


_HINTS = {  # fields of another endpoint that clients send to the wrong one
    "echo": "echo is a parameter of the completions endpoint",
    "suffix": "suffix is a parameter of the completions endpoint",
    "best_of": "best_of is a parameter of the completions endpoint",
    "prompt": "prompt is a parameter of the completions endpoint; chat takes messages",
    "messages": "messages is a parameter of the chat completions endpoint",
}


def _unsupported(cls: type[BaseModel], data: Any, err: Any) -> ApiError:
    loc = tuple(err["loc"])
    if err["type"] == UNSUPPORTED:  # raised by the model holding the field
        loc += (err["ctx"]["field"],)
    path = _json_path(data, loc) or [str(p) for p in loc]
    param, name = ".".join(path), path[-1]
    if err["type"] == UNSUPPORTED:
        why = str(err["ctx"]["why"])
    elif len(path) == 1 and name in _HINTS:
        why = _HINTS[name]
    else:
        why = "there is no such field here"
        if len(path) == 1 and (close := difflib.get_close_matches(name, cls.model_fields, 1)):
            why += f"; did you mean '{close[0]}'?"
    return ApiError(400, f"'{name}' is not supported by mlxk: {why}", param=param, code=UNSUPPORTED)


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
    detail: Literal["auto", "low", "high"] | None = refused(
        "images reach the model at its own processor's resolution", "auto"
    )


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


class FunctionCall(_Request):
    name: str = Field(max_length=64)
    arguments: str = Field(max_length=1_000_000, description="JSON text, as OpenAI sends it")


class ToolCall(_Request):
    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Request):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=128)  # assistant turns
    tool_call_id: str | None = Field(default=None, max_length=256)  # tool turns
    refusal: str | None = refused("an earlier refusal cannot be given back to the model")
    audio: dict[str, Any] | None = refused("earlier audio answers cannot be referred to")
    function_call: dict[str, Any] | None = refused("legacy function calling; use tool_calls")


class FunctionDef(_Request):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(default=None, max_length=16_384)
    parameters: dict[str, Any] | None = None  # a JSON schema for the arguments
    strict: bool | None = None


class Tool(_Request):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Request):
    name: str = Field(max_length=64)


class NamedToolChoice(_Request):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Request):
    name: str = Field(default="response", max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Body):
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
    user: str | None = Field(default=None, max_length=256, description="accepted, ignored")
    logit_bias: dict[str, float] | None = refused("token biases are not implemented", {})

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # accepted and ignored on purpose (docs/server.md says why): they never change the answer
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16, description="accepted, ignored (nothing is stored)"
    )
    store: bool | None = Field(default=None, description="accepted, ignored (nothing is stored)")
    service_tier: str | None = Field(default=None, max_length=32, description="accepted, ignored")
    prompt_cache_key: str | None = Field(
        default=None, max_length=1024, description="accepted, ignored"
    )
    safety_identifier: str | None = Field(
        default=None, max_length=256, description="accepted, ignored"
    )
    # OpenAI's, not implemented: refused unless they change nothing
    logprobs: bool | None = refused("log probabilities are not implemented", False)
    top_logprobs: int | None = refused("log probabilities are not implemented")
    modalities: list[str] | None = refused("mlxk answers in text only", ["text"])
    audio: dict[str, Any] | None = refused("mlxk answers in text only")
    prediction: dict[str, Any] | None = refused("predicted outputs are not implemented")
    web_search_options: dict[str, Any] | None = refused("mlxk does not search the web")
    reasoning_effort: str | None = refused(
        "only 'none' is implemented: it asks the chat template not to think", "none"
    )
    verbosity: str | None = refused("verbosity is not implemented")
    functions: list[Any] | None = refused("legacy function calling; use tools")
    function_call: str | dict[str, Any] | None = refused("legacy function calling; use tool_choice")
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions
    echo: bool = False
    logprobs: int | None = refused("log probabilities are not implemented")
    best_of: int | None = refused("only one completion is generated", 1)
    suffix: str | None = refused("insertion (text after the completion) is not implemented", "")

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OutFunctionCall(BaseModel):
    name: str
    arguments: str


class OutToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: OutFunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[OutToolCall] | None = None
    reasoning_content: str | None = None  # a thinking model's reasoning, kept out of content


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


class DeltaFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None
    reasoning_content: str | None = None


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


class EmbeddingRequest(_Body):
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


# Multipart form fields, checked by name (FastAPI would ignore unknown ones). To implement a
# refused one (chunking_strategy, say): give the route its Form parameter, add the name here
# and drop it from FORM_REFUSED.
TRANSCRIPTION_FIELDS = frozenset(
    {"file", "model", "language", "prompt", "response_format", "temperature", "stream",
     "timestamp_granularities[]", "chunking_strategy"}
)  # fmt: skip
TRANSLATION_FIELDS = frozenset(
    {"file", "model", "prompt", "response_format", "temperature", "stream"}
)
FORM_REFUSED = {  # OpenAI's, not implemented
    "include[]": "include (token logprobs of the transcript) is not implemented",
    "include": "include (token logprobs of the transcript) is not implemented",
    "language": "translations always translate into English; language is for transcriptions",
    "timestamp_granularities[]": "translations give no timestamps; use verbose_json with "
    "transcriptions",
}


def refuse_unknown_form_fields(names: Iterable[str], allowed: frozenset[str]) -> None:
    """A 400 ``unsupported_parameter`` for the first form field outside ``allowed``."""
    for name in names:
        if name in allowed:
            continue
        why = FORM_REFUSED.get(name, "there is no such field here")
        if name not in FORM_REFUSED and (close := difflib.get_close_matches(name, allowed, 1)):
            why += f"; did you mean '{close[0]}'?"
        message = f"'{name[:64]}' is not supported by mlxk: {why}"
        raise ApiError(400, message, param=name[:64], code=UNSUPPORTED)


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
