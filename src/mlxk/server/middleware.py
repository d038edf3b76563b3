"""Pure ASGI middleware (streaming-safe): request ids, Host allow-list, API key, body limit.

Order, outermost first: RequestId → Host → CORS (Starlette's) → ApiKey → BodyLimit → app.
Refusals are answered here in OpenAI's error shape, before the app reads anything.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from mlxk.server.errors import error_body

log = logging.getLogger("mlxk.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
OPEN_PATHS = ("/health",)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def send_error(
    send: Send,
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    body = json.dumps(error_body(status, message, code=code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestId:
    """Every response carries X-Request-ID (the client's when it is sane, else a new one).

    It is also the last line of defence: an unexpected exception before the response started
    becomes a scrubbed 500 here, so even that answer has the header and OpenAI's shape.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        rid = given if given and _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # the server's last edge: not swallowed — logged with its traceback,
            # answered as an OpenAI-shaped 500 (typed errors were mapped earlier, in errors.py)
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await send_error(send_with_id, 500, f"internal server error (request {rid})")


class HostCheck:
    """Refuse requests whose Host header is not ours: DNS-rebinding protection for loopback."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...] | None) -> None:
        self.app = app
        self.allowed = None if allowed is None else {a.lower() for a in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed is None:
            await self.app(scope, receive, send)
            return
        host = (_header(scope, b"host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name not in self.allowed and host not in self.allowed:
            await refuse(scope, send, 403, "Host header not allowed", code="host_not_allowed")
            return
        await self.app(scope, receive, send)


async def refuse(
    scope: Scope, send: Send, status: int, message: str, *, code: str,
    headers: dict[str, str] | None = None,
) -> None:  # fmt: skip
    """An HTTP error, or for a WebSocket handshake a close before accepting it (the server
    answers the upgrade with 403)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    await send_error(send, status, message, code=code, headers=headers)


def _ws_key(scope: Scope) -> bytes:
    """Browsers cannot set headers on a WebSocket: they send the key as a subprotocol."""
    for proto in scope.get("subprotocols") or []:
        if proto.startswith("openai-insecure-api-key."):
            return proto.removeprefix("openai-insecure-api-key.").encode()
    return b""


class ApiKey:
    """With a key configured, every route but /health needs ``Authorization: Bearer KEY``."""

    def __init__(self, app: ASGIApp, key: str | None) -> None:
        self.app = app
        self.key = key.encode() if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or self.key is None or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        auth = _header(scope, b"authorization") or ""
        scheme, _, token = auth.partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        if not given and kind == "websocket":
            given = _ws_key(scope)
        if not hmac.compare_digest(given, self.key):
            await refuse(
                scope, send, 401, "missing or invalid API key (Authorization: Bearer KEY)",
                code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
            return
        await self.app(scope, receive, send)


class BodyTooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing passes it on instead of calling it a 400."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class BodyLimit:
    """Refuse bodies over ``limit`` bytes: at once from Content-Length, else while reading.

    Counting the bytes actually received covers a missing or lying Content-Length; we never
    hold more than the limit plus one network chunk.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self) -> BodyTooLarge:
        mib = self.limit / 2**20
        return BodyTooLarge(f"request body is larger than the limit of {mib:.4g} MiB")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            status = 413 if declared.isdigit() else 400
            message = str(self._too_large().detail) if status == 413 else "bad Content-Length"
            await send_error(send, status, message, code="request_too_large")
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise self._too_large()
            return message

        await self.app(scope, counted, send)
