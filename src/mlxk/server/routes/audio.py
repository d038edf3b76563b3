"""POST /v1/audio/transcriptions and /v1/audio/translations (multipart, OpenAI's fields)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

from mlxk.backends.engine import DONE
from mlxk.backends.select import Inputs
from mlxk.errors import MlxkError
from mlxk.formats.transcripts import render, verbose_dict
from mlxk.ops.run import RunOptions, fold_transcript, start_transcription
from mlxk.server.errors import bad_param, error_response
from mlxk.server.generation import CLIENT_GONE, ClientGone, next_event, start_events
from mlxk.server.media import decode_audio
from mlxk.server.protocol import (
    TRANSCRIPTION_FIELDS,
    TRANSLATION_FIELDS,
    TextDelta,
    TextDone,
    TextSegment,
    TranscriptFormat,
    TranscriptionJson,
    refuse_unknown_form_fields,
)
from mlxk.server.routes import ERRORS
from mlxk.server.service import AsyncSink, ServerState, prepare_inputs, state_of
from mlxk.server.sse import EventStreamResponse, event, once
from mlxk.types import GenerationChunk, Started, Transcript

router = APIRouter()
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z]{2,4})?$|^[A-Za-z]{4,20}$")
Granularity = Literal["word", "segment"]


def _check_chunking(value: str | None) -> None:
    """OpenAI's ``chunking_strategy``: "auto" or a server_vad object. mlxk always cuts at
    Silero VAD's speech and gates segments by it, so both ask for what is done anyway; the
    VAD parameters of the object are not tunable per request (its own defaults apply)."""
    if value is None or value == "auto":
        return
    try:
        obj = json.loads(value)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or obj.get("type") != "server_vad":
        raise bad_param(
            "chunking_strategy", 'chunking_strategy is "auto" or {"type": "server_vad"}'
        )


def _options(
    samples: np.ndarray, language: str | None, prompt: str | None, temperature: float | None,
    words: bool, translate: bool,
) -> RunOptions:  # fmt: skip
    return RunOptions(
        audio=(samples,), language=language, translate=translate, initial_prompt=prompt,
        temperature=temperature, word_timestamps=words,
    )  # fmt: skip


async def _begin(
    state: ServerState, request: Request, upload: UploadFile, model: str, form: _Form
) -> tuple[Started, AsyncSink, RunOptions]:
    if form.language is not None and not _LANGUAGE.match(form.language):
        raise bad_param("language", "language must be a code such as 'en' or 'de'")
    # refuses translation on tiny.en, text models… before the upload is decoded
    prep = await prepare_inputs(state, model, Inputs(audio=1, translate=form.translate))
    samples = await decode_audio(upload.file, state.settings, "file")
    opts = _options(
        samples, form.language, form.prompt, form.temperature, form.words, form.translate
    )
    rt = state.runtime
    started, sink = await start_events(
        state, request, lambda sink: start_transcription(rt, prep, opts, samples, sink)
    )
    return started, sink, opts


async def _collect(sink: AsyncSink, request: Request) -> list[Any]:
    events = []
    while (ev := await next_event(sink, request)) is not DONE:
        events.append(ev)
    return events


def _body(t: Transcript, fmt: str, granularities: list[str]) -> Response:
    if fmt == "json":
        return JSONResponse(TranscriptionJson(text=t.text.strip()).model_dump())
    if fmt == "verbose_json":
        body = verbose_dict(t)
        if "word" not in granularities:
            body.pop("words", None)  # OpenAI sends words only when asked for them
        return JSONResponse(body)
    media = "text/vtt" if fmt == "vtt" else "text/plain"
    return PlainTextResponse(render(t, fmt), media_type=media)


@dataclass(frozen=True)
class _Form:
    language: str | None
    prompt: str | None
    temperature: float | None
    words: bool
    translate: bool


def _window_events(window: Any, first: bool) -> Iterator[bytes]:
    """One decoded window: a delta and a segment event per segment, as OpenAI streams them;
    segments carry how much of the audio is done (mlxk's fields audio_done/audio_duration)."""
    for seg in window.segments:
        sid = f"seg_{seg.id}"
        yield event(TextDelta(delta=seg.text if first else " " + seg.text, segment_id=sid))
        yield event(TextSegment(
            id=sid, start=round(seg.start, 3), end=round(seg.end, 3), text=seg.text,
            audio_done=round(window.end, 3), audio_duration=round(window.duration, 3),
        ))  # fmt: skip
        first = False


async def _stream(
    started: Started, sink: AsyncSink, request: Request, opts: RunOptions
) -> AsyncIterator[bytes]:
    events: list[Any] = []
    try:
        while (ev := await next_event(sink, request)) is not DONE:
            first = not any(e.segments if hasattr(e, "segments") else e.text for e in events)
            events.append(ev)
            if isinstance(ev, GenerationChunk):
                if ev.text:
                    yield event(TextDelta(delta=ev.text, segment_id=None))
            else:
                for chunk in _window_events(ev, first):
                    yield chunk
        t = fold_transcript(started, events, opts)
        yield event(TextDone(text=t.text.strip()))  # OpenAI ends transcript streams here
    except ClientGone:
        return
    except MlxkError as exc:  # after the 200 was sent: the error travels as an event
        yield b"data: " + bytes(error_response(exc).body) + b"\n\n"


async def _handle(
    request: Request, file: UploadFile, model: str, form: _Form, response_format: str,
    granularities: list[str], stream: bool,
) -> Response:  # fmt: skip
    state = state_of(request)
    fields = TRANSLATION_FIELDS if form.translate else TRANSCRIPTION_FIELDS
    refuse_unknown_form_fields((await request.form()).keys(), fields)  # no silent drops
    if granularities and response_format != "verbose_json":
        raise bad_param(
            "timestamp_granularities[]",
            "timestamp_granularities needs response_format=verbose_json",
        )
    state.admission.enter()
    leave = once(state.admission.leave)
    try:
        started, sink, opts = await _begin(state, request, file, model, form)
    except ClientGone:
        leave()
        return Response(status_code=CLIENT_GONE)
    except BaseException:
        leave()
        raise
    if stream:
        return EventStreamResponse(_stream(started, sink, request, opts), _closer(sink, leave))
    try:
        events = await _collect(sink, request)
    except ClientGone:
        return Response(status_code=CLIENT_GONE)
    finally:
        leave()
    return _body(fold_transcript(started, events, opts), response_format, granularities)


def _closer(sink: AsyncSink, leave: Callable[[], None]) -> Callable[[], None]:
    def close() -> None:
        sink.cancel()  # a no-op when the transcription finished
        leave()

    return close


FileField = Annotated[UploadFile, File(description="audio file (wav, mp3, flac, ogg, m4a, …)")]
ModelField = Annotated[str, Form(min_length=1, max_length=512)]
LangField = Annotated[str | None, Form(max_length=32)]
PromptField = Annotated[str | None, Form(max_length=4096)]
FormatField = Annotated[TranscriptFormat, Form()]
TempField = Annotated[float | None, Form(ge=0.0, le=1.0)]
GranField = Annotated[list[Granularity], Form(alias="timestamp_granularities[]")]
StreamField = Annotated[bool, Form()]
ChunkingField = Annotated[str | None, Form(max_length=512)]


@router.post("/v1/audio/transcriptions", responses=ERRORS)
async def transcriptions(
    request: Request,
    file: FileField,
    model: ModelField,
    language: LangField = None,
    prompt: PromptField = None,
    response_format: FormatField = "json",
    temperature: TempField = None,
    timestamp_granularities: GranField = [],  # noqa: B006 (FastAPI copies defaults)
    stream: StreamField = False,
    chunking_strategy: ChunkingField = None,
) -> Response:
    _check_chunking(chunking_strategy)
    words = "word" in timestamp_granularities
    form = _Form(language, prompt, temperature, words, translate=False)
    return await _handle(
        request, file, model, form, response_format, list(timestamp_granularities), stream
    )


@router.post("/v1/audio/translations", responses=ERRORS)
async def translations(
    request: Request,
    file: FileField,
    model: ModelField,
    prompt: PromptField = None,
    response_format: FormatField = "json",
    temperature: TempField = None,
    stream: StreamField = False,
) -> Response:
    form = _Form(None, prompt, temperature, False, translate=True)
    return await _handle(request, file, model, form, response_format, [], stream)
