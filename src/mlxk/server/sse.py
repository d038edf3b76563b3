"""Server-sent events framing, as OpenAI streams: ``data: <json>\\n\\n``, ending ``[DONE]``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

DONE_LINE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(payload: BaseModel | dict[str, Any]) -> bytes:
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


class EventStreamResponse(StreamingResponse):
    """A stream whose ``on_close`` runs however it ends: finished, failed or client gone.

    An async generator that was cancelled (or never started) does not reliably run its own
    ``finally``; the work it started and the queue slot it holds must still be given back.
    """

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(body, media_type="text/event-stream", headers=SSE_HEADERS)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def once(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` wrapped so that only the first call does anything."""
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            fn()

    return call
