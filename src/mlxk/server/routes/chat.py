"""POST /v1/chat/completions: text, image_url data URLs and input_audio, stream or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlxk.errors import MlxkError
from mlxk.ops.run import RunOptions
from mlxk.server.errors import bad_param, error_response
from mlxk.server.generation import (
    CLIENT_GONE,
    ChunkStream,
    ClientGone,
    admit,
    closer,
    collect_admitted,
    start,
)
from mlxk.server.media import ChatInputs, decode_audio, decode_images, split_chat
from mlxk.server.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    Usage,
    new_id,
    now,
)
from mlxk.server.routes import ERRORS
from mlxk.server.service import ServerState, prepare_run, state_of
from mlxk.server.sse import DONE_LINE, EventStreamResponse, event

router = APIRouter()


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS)
async def chat_completions(req: ChatCompletionRequest, request: Request) -> Response:
    state = state_of(request)
    if req.n != 1:
        raise bad_param("n", "only n=1 is supported")
    inputs = split_chat(req.messages, state.settings, state.options)
    adm = await admit(state, lambda: _start(state, request, req, inputs))
    if adm is None:
        return Response(status_code=CLIENT_GONE)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        body = _sse(adm.stream, req.model, include_usage)
        return EventStreamResponse(body, closer(adm.stream, adm.leave))
    result = await collect_admitted(adm)
    if result is None:
        return Response(status_code=CLIENT_GONE)
    text, reason, prompt, completion = result
    answer = ChatCompletion(
        id=new_id("chatcmpl"),
        created=now(),
        model=req.model,
        choices=[ChatChoice(message=AssistantMessage(content=text), finish_reason=reason)],
        usage=Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        ),
    )
    return JSONResponse(answer.model_dump(mode="json"))


def chat_options(req: ChatCompletionRequest, messages: list[dict[str, Any]], images: list[Any],
                 clips: list[Any]) -> RunOptions:  # fmt: skip
    """The request as ops.run takes it; unset sampling fields keep the shared defaults."""
    return RunOptions(
        messages=messages, images=tuple(images), audio=tuple(clips),
        max_tokens=req.max_completion_tokens or req.max_tokens, temperature=req.temperature,
        top_p=req.top_p, stop=req.stop_list(), repetition_penalty=req.repetition_penalty,
        presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        seed=req.seed,
    )  # fmt: skip


async def _start(
    state: ServerState, request: Request, req: ChatCompletionRequest, inputs: ChatInputs
) -> ChunkStream:
    run = RunOptions(images=tuple(inputs.image_bytes), audio=tuple(inputs.audio_bytes))
    prep = await prepare_run(state, req.model, run)
    images = await decode_images(inputs.image_bytes, state.settings, state.options)
    clips = [
        await decode_audio(b, state.settings, f"input_audio {i + 1}")
        for i, b in enumerate(inputs.audio_bytes)
    ]
    opts = chat_options(req, inputs.messages, images, clips)
    return await start(state, request, prep, opts)


async def _sse(stream: ChunkStream, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    cid, created = new_id("chatcmpl"), now()

    def chunk(delta: Delta, reason: str | None = None) -> dict[str, Any]:
        body = ChatCompletionChunk(
            id=cid,
            created=created,
            model=model,
            choices=[ChunkChoice(delta=delta, finish_reason=reason)],
        ).model_dump(mode="json")
        # OpenAI leaves unset delta fields out, and sends "usage" only when it was asked for.
        body["choices"][0]["delta"] = delta.model_dump(exclude_none=True)
        if not include_usage:
            body.pop("usage")
        return body

    reason, prompt, completion = "stop", 0, 0
    try:
        yield event(chunk(Delta(role="assistant", content="")))
        async for c in stream.chunks():
            if c.text:
                yield event(chunk(Delta(content=c.text)))
            reason = c.finish_reason or reason
            prompt, completion = c.prompt_tokens or prompt, max(completion, c.token_count)
        yield event(chunk(Delta(), reason))
        if include_usage:
            usage = Usage(
                prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
            )
            yield event(
                ChatCompletionChunk(id=cid, created=created, model=model, choices=[], usage=usage)
            )
        yield DONE_LINE
    except ClientGone:
        return
    except MlxkError as exc:  # after the 200 was sent: the error travels as an event
        yield b"data: " + bytes(error_response(exc).body) + b"\n\n"
