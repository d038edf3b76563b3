"""The asyncio edge of ops.run for chat and completions: one stream of GenerationChunk per
request, whichever backend the selector picked (ops.run decides how it runs).

The run's Started event is awaited before the route answers, so a refusal (context too long,
a bad image) still gets its honest status instead of a 200 followed by an error event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from mlxk.backends.engine import DONE
from mlxk.backends.sampling import token_budget as _budget
from mlxk.errors import GenerationError, MlxkError, ValidationError
from mlxk.ops.run import PreparedRun, RunOptions, describe, start_chat
from mlxk.server.errors import bad_param
from mlxk.server.service import AsyncSink, ServerState
from mlxk.server.sse import once
from mlxk.types import GenerationChunk, Started

log = logging.getLogger("mlxk.server")
_POLL_S = 0.5  # how often a waiting request checks whether its client is still there
CLIENT_GONE = 499  # nginx's "client closed request": nobody reads it, access logs do


class ClientGone(Exception):
    """The client disconnected while we waited; nothing more to send."""


async def next_event(sink: AsyncSink, request: Request) -> Any:
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
    sink: AsyncSink | None  # None: everything is in ``first``
    request: Request
    ended: bool = False  # the engine's DONE was already taken from the sink
    started: Started | None = None  # what the run was given (sampling, tools)

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
    """The one token-budget rule (backends.sampling), with the HTTP edge's error type."""
    try:
        return _budget(prompt_tokens, context, requested, ceiling)
    except ValidationError as exc:
        raise bad_param(getattr(exc, "param", "max_tokens"), exc.message) from None


async def start_events(
    state: ServerState, request: Request, submit: Callable[[AsyncSink], None]
) -> tuple[Started, AsyncSink]:
    """Submit a run and wait for its Started event: a refusal (context too long, a bad
    image, a speech model without audio) raises here, before any byte is sent."""
    sink = AsyncSink(asyncio.get_running_loop())
    submit(sink)
    try:
        event = await next_event(sink, request)
    except (MlxkError, ClientGone, asyncio.CancelledError):
        sink.cancel()
        raise
    if not isinstance(event, Started):  # a run always announces itself first
        sink.cancel()
        raise GenerationError(f"the engine sent {type(event).__name__} before starting")
    log.info("run: %s", describe(event))
    return event, sink


async def start(
    state: ServerState, request: Request, prep: PreparedRun, opts: RunOptions
) -> ChunkStream:
    """Start generating (text, vision/omni, Whisper on input_audio) through ops.run."""
    started, sink = await start_events(
        state, request, lambda sink: start_chat(state.runtime, prep, opts, sink)
    )
    return ChunkStream(None, sink, request, started=started)


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


async def admit(state: ServerState, begin: Callable[[], Awaitable[ChunkStream]]) -> Admitted | None:
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
