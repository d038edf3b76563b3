"""POST /v1/audio/transcriptions and /v1/audio/translations (multipart, OpenAI's fields)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

from mlxk.formats.transcripts import render, verbose_dict
from mlxk.ops.run import RunOptions
from mlxk.server.errors import bad_param
from mlxk.server.media import decode_audio
from mlxk.server.protocol import TextDelta, TextDone, TranscriptFormat, TranscriptionJson
from mlxk.server.routes import ERRORS
from mlxk.server.service import ServerState, prepare_run, run_with_model, state_of
from mlxk.server.sse import EventStreamResponse, event, once
from mlxk.types import Backend, Transcript

router = APIRouter()
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z]{2,4})?$|^[A-Za-z]{4,20}$")
Granularity = Literal["word", "segment"]
# What an omni (mlx-vlm) model is asked when it is used for transcription.
OMNI_PROMPT = "Transcribe what is spoken in this audio."


async def _transcript(
    state: ServerState,
    request: Request,
    upload: UploadFile,
    model: str,
    language: str | None,
    prompt: str | None,
    temperature: float,
    words: bool,
    translate: bool,
) -> Transcript:
    if language is not None and not _LANGUAGE.match(language):
        raise bad_param("language", "language must be a code such as 'en' or 'de'")
    run = RunOptions(audio=(b"",), translate=translate)
    prep = await prepare_run(state, model, run)  # refuses translation on tiny.en, text models…
    samples = await decode_audio(upload.file, state.settings, "file")
    task = "translate" if translate else "transcribe"
    if prep.backend is Backend.MLX_AUDIO:

        def whisper(runner: Any) -> Transcript:
            t: Transcript = runner.transcribe(
                samples,
                language=language,
                task=task,
                initial_prompt=prompt,
                word_timestamps=words,
                temperature=temperature,
            )
            return t

        result: Transcript = await run_with_model(state, prep, whisper)
        return result
    omni: Transcript = await run_with_model(
        state, prep, lambda r: _omni(r, samples, prompt, temperature)
    )
    return omni


def _omni(runner: Any, samples: np.ndarray, prompt: str | None, temperature: float) -> Transcript:
    chunks = runner.stream(prompt or OMNI_PROMPT, audio=[samples], temperature=temperature)
    text = "".join(c.text for c in chunks).strip()
    return Transcript(text=text, language=None, duration=len(samples) / 16000)


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


async def _deltas(t: Transcript) -> AsyncIterator[bytes]:
    # Whisper runs a whole clip at once: deltas are its segments, sent when it is done.
    pieces = [s.text for s in t.segments] or [t.text]
    for i, text in enumerate(pieces):
        if text:
            yield event(TextDelta(delta=text, segment_id=f"seg_{i}"))
    yield event(TextDone(text=t.text.strip()))  # OpenAI ends transcript streams here: no [DONE]


async def _handle(
    request: Request,
    file: UploadFile,
    model: str,
    language: str | None,
    prompt: str | None,
    response_format: str,
    temperature: float,
    granularities: list[str],
    stream: bool,
    translate: bool,
) -> Response:
    state = state_of(request)
    if granularities and response_format != "verbose_json":
        raise bad_param(
            "timestamp_granularities[]",
            "timestamp_granularities needs response_format=verbose_json",
        )
    state.admission.enter()
    leave = once(state.admission.leave)
    try:
        t = await _transcript(
            state,
            request,
            file,
            model,
            language,
            prompt,
            temperature,
            "word" in granularities,
            translate,
        )
    except BaseException:
        leave()
        raise
    if stream:
        return EventStreamResponse(_deltas(t), leave)
    leave()
    return _body(t, response_format, granularities)


FileField = Annotated[UploadFile, File(description="audio file (wav, mp3, flac, ogg, m4a, …)")]
ModelField = Annotated[str, Form(min_length=1, max_length=512)]
LangField = Annotated[str | None, Form(max_length=32)]
PromptField = Annotated[str | None, Form(max_length=4096)]
FormatField = Annotated[TranscriptFormat, Form()]
TempField = Annotated[float, Form(ge=0.0, le=1.0)]
GranField = Annotated[list[Granularity], Form(alias="timestamp_granularities[]")]
StreamField = Annotated[bool, Form()]


@router.post("/v1/audio/transcriptions", responses=ERRORS)
async def transcriptions(
    request: Request,
    file: FileField,
    model: ModelField,
    language: LangField = None,
    prompt: PromptField = None,
    response_format: FormatField = "json",
    temperature: TempField = 0.0,
    timestamp_granularities: GranField = [],  # noqa: B006 (FastAPI copies defaults)
    stream: StreamField = False,
) -> Response:
    return await _handle(
        request,
        file,
        model,
        language,
        prompt,
        response_format,
        temperature,
        list(timestamp_granularities),
        stream,
        translate=False,
    )


@router.post("/v1/audio/translations", responses=ERRORS)
async def translations(
    request: Request,
    file: FileField,
    model: ModelField,
    prompt: PromptField = None,
    response_format: FormatField = "json",
    temperature: TempField = 0.0,
) -> Response:
    return await _handle(
        request, file, model, None, prompt, response_format, temperature, [], False, translate=True
    )
