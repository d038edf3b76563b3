"""Generation for chat and completions: one stream of GenerationChunk per request, whichever
backend the selector picked (mlx-lm batched, mlx-vlm, or Whisper for chat input_audio).

The first chunk is awaited before the route answers, so a refusal (context too long, a bad
image) still gets its honest status instead of a 200 followed by an error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from mlxk.errors import MlxkError
from mlxk.ops.run import TEXT_TEMPERATURE, PreparedRun
from mlxk.server.engine import DONE, Sampling, Sink
from mlxk.server.errors import ApiError, bad_param
from mlxk.server.pool import Loaded
from mlxk.server.service import ServerState, acquire, acquire_now, run_with_model
from mlxk.server.sse import once
from mlxk.types import Backend, GenerationChunk

_POLL_S = 0.5  # how often a waiting request checks whether its client is still there
CLIENT_GONE = 499  # nginx's "client closed request": nobody reads it, access logs do


@dataclass(frozen=True)
class GenParams:
    """What a chat or completion request asks of the generator."""

    messages: list[dict[str, str]] | None
    prompt: str | None
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: tuple[str, ...]
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class ClientGone(Exception):
    """The client disconnected while we waited; nothing more to send."""


async def next_event(sink: Sink, request: Request) -> Any:
    """The next engine event; cancels the work if the client goes away while we wait."""
    while True:
        try:
            event = await asyncio.wait_for(sink.queue.get(), timeout=_POLL_S)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                sink.cancel()
                raise ClientGone() from None
            continue
        if isinstance(event, BaseException):
            raise event
        return event


@dataclass
class ChunkStream:
    """The chunks of one generation; ``first`` (when any) was already received."""

    first: GenerationChunk | None
    sink: Sink | None  # None: everything is in ``first``
    request: Request
    ended: bool = False  # the engine's DONE was already taken from the sink

    async def chunks(self) -> AsyncIterator[GenerationChunk]:
        if self.first is not None:
            yield self.first
        if self.sink is None or self.ended:
            return
        while True:
            event = await next_event(self.sink, self.request)
            if event is DONE:
                self.ended = True
                return
            yield event

    def cancel(self) -> None:
        if self.sink is not None:
            self.sink.cancel()


def token_budget(prompt_tokens: int, context: int, requested: int | None, ceiling: int) -> int:
    """max_tokens for this request; refuses a prompt + max_tokens beyond the context."""
    room = context - prompt_tokens
    if room <= 0:
        raise bad_param(
            "messages",
            f"the prompt is {prompt_tokens} tokens; the model's context length is {context} tokens",
        )
    if requested is not None and requested > room:
        raise bad_param(
            "max_tokens",
            f"prompt ({prompt_tokens} tokens) + max_tokens ({requested})"
            f" exceeds the model's context length of {context} tokens",
        )
    return min(requested or room, room, ceiling)


def _sampling(p: GenParams, max_tokens: int) -> Sampling:
    return Sampling(
        max_tokens=max_tokens,
        temperature=TEXT_TEMPERATURE if p.temperature is None else p.temperature,
        top_p=1.0 if p.top_p is None else p.top_p,
        repetition_penalty=p.repetition_penalty,
        presence_penalty=p.presence_penalty,
        frequency_penalty=p.frequency_penalty,
        stop=p.stop,
    )


def _encode(runner: Any, p: GenParams) -> list[int]:
    """Prompt ids; a chat template that rejects the messages is the client's 400, not a 500."""
    from jinja2 import TemplateError

    try:
        ids: list[int] = runner.encode_prompt(
            p.messages, prompt=p.prompt, use_chat_template=p.messages is not None
        )
    except (TemplateError, TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, MlxkError):
            raise
        raise bad_param(
            "messages", f"the model's chat template refused the messages: {exc}"
        ) from None
    return ids


async def _start_text(state: ServerState, prep: PreparedRun, p: GenParams) -> Sink:
    opts = state.options

    def job() -> tuple[Loaded, list[int], int]:
        entry = acquire_now(state, prep)
        try:
            runner = entry.runner
            ids = _encode(runner, p)
            limit = token_budget(len(ids), runner.context_length, p.max_tokens, opts.max_tokens)
            return entry, ids, limit
        except BaseException:
            state.pool.release(entry)
            raise

    entry, ids, limit = await state.engine.call(job)
    sink = Sink(asyncio.get_running_loop())
    state.engine.generate(entry, ids, _sampling(p, limit), sink)
    return sink


async def _start_vision(
    state: ServerState, prep: PreparedRun, p: GenParams, images: list[Any], clips: list[Any]
) -> Sink:
    entry = await acquire(state, prep)
    ceiling = min(p.max_tokens or 512, state.options.max_tokens)
    runner = entry.runner

    def start() -> Any:
        return runner.stream(
            p.prompt if p.messages is None else None,
            images=images,
            audio=clips,
            messages=p.messages,
            max_tokens=ceiling,
            temperature=p.temperature,
            top_p=1.0 if p.top_p is None else p.top_p,
            repetition_penalty=p.repetition_penalty,
        )

    sink = Sink(asyncio.get_running_loop())
    state.engine.stream(entry, start, p.stop, sink)
    return sink


async def _transcribe_clips(state: ServerState, prep: PreparedRun, clips: list[Any]) -> str:
    def work(runner: Any) -> str:
        return "\n".join(runner.transcribe(c, task="transcribe").text.strip() for c in clips)

    text: str = await run_with_model(state, prep, work)
    return text


async def start(
    state: ServerState,
    request: Request,
    prep: PreparedRun,
    p: GenParams,
    images: list[Any],
    clips: list[Any],
) -> ChunkStream:
    """Start generating and wait for the first chunk (errors raise here, before any byte)."""
    if prep.backend is Backend.MLX_AUDIO:
        if not clips:
            raise ApiError(
                400, f"model '{prep.name}' is a speech model: send input_audio", param="messages"
            )
        text = await _transcribe_clips(state, prep, clips)
        return ChunkStream(GenerationChunk(text, 0, "stop", 0), None, request)
    if prep.backend is Backend.MLX_VLM:
        sink = await _start_vision(state, prep, p, images, clips)
    elif prep.backend is Backend.MLX_LM:
        sink = await _start_text(state, prep, p)
    else:
        raise ApiError(400, f"model '{prep.name}' is not a generative model", param="model")
    stream = ChunkStream(None, sink, request)
    try:
        event = await next_event(sink, request)
    except (MlxkError, ClientGone, asyncio.CancelledError):
        sink.cancel()
        raise
    if event is DONE:  # nothing was generated at all
        stream.ended = True
    else:
        stream.first = event
    return stream


async def collect(stream: ChunkStream) -> tuple[str, str, int, int]:
    """Fold a stream: text, finish_reason, prompt_tokens, completion_tokens."""
    parts: list[str] = []
    reason, prompt, completion = "stop", 0, 0
    async for chunk in stream.chunks():
        parts.append(chunk.text)
        reason = chunk.finish_reason or reason
        prompt = chunk.prompt_tokens or prompt
        completion = max(completion, chunk.token_count)
    return "".join(parts), reason, prompt, completion


def closer(stream: ChunkStream, leave: Callable[[], None]) -> Callable[[], None]:
    """What a streamed response runs at its end: stop the work (a no-op when it finished)
    and give the queue slot back."""

    def close() -> None:
        stream.cancel()
        leave()

    return close


@dataclass
class Admitted:
    """A started generation holding a queue slot until ``leave`` runs (once)."""

    stream: ChunkStream
    leave: Callable[[], None]


async def admit(
    state: ServerState, begin: Callable[[], Awaitable[ChunkStream]]
) -> Admitted | None:
    """Take a queue slot (503 when full) and start; None when the client left meanwhile."""
    state.admission.enter()
    leave = once(state.admission.leave)
    try:
        return Admitted(await begin(), leave)
    except ClientGone:
        leave()
        return None
    except BaseException:
        leave()
        raise


async def collect_admitted(adm: Admitted) -> tuple[str, str, int, int] | None:
    """The whole answer with the slot given back; None when the client left."""
    try:
        return await collect(adm.stream)
    except ClientGone:
        return None
    finally:
        adm.leave()
