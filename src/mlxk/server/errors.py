"""Every error becomes OpenAI's ``{"error": {message, type, param, code}}`` here, once.

Status codes come from the exception (``MlxkError.http_status``); messages are scrubbed of
paths, user names and object reprs before they leave the process.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlxk.errors import MlxkError, ValidationError

log = logging.getLogger("mlxk.server")

_OBJECT_REPR = re.compile(r"<[^<>]{0,200}? at 0x[0-9a-fA-F]+>")
# An absolute POSIX or Windows path (two components or more), or a file: URL.
_PATH = re.compile(r"(?:file://)?(?:[A-Za-z]:\\|\\\\|/)[^\s'\"<>()\[\],;]*[/\\][^\s'\"<>()\[\],;]*")
_MAX_MESSAGE = 1000

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_busy",
    507: "insufficient_storage",
}


class ApiError(MlxkError):
    """An HTTP-level refusal with its own status (auth, host, busy, unsupported parameter)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.type = type or _STATUS_TYPES.get(status, "error")
        self.param = param
        self.code = code
        self.headers = headers or {}


class QueueFullError(ApiError):
    def __init__(self, retry_after: int, max_queue: int) -> None:
        super().__init__(
            503,
            f"the server is busy ({max_queue} requests in flight); retry later",
            code="queue_full",
            headers={"Retry-After": str(retry_after)},
        )


def bad_param(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


def _private_strings() -> list[str]:
    """Strings that identify this machine's user; replaced even outside a path."""
    names = {os.path.expanduser("~")}
    try:
        user = getpass.getuser()
        if len(user) >= 3:  # "a", "me": too common in ordinary text to replace
            names.add(user)
    except (KeyError, OSError):
        pass
    return sorted((n for n in names if n and n != "/"), key=len, reverse=True)


_PRIVATE = _private_strings()


def scrub(message: str) -> str:
    """The message without paths, user names or object reprs, on one bounded line."""
    text = _OBJECT_REPR.sub("<object>", message)
    text = _PATH.sub(lambda m: _basename(m.group(0)), text)
    for private in _PRIVATE:
        text = re.sub(rf"\b{re.escape(private)}\b", "<user>", text)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _basename(path: str) -> str:
    # "…/smollm2" keeps the part a user recognises (the model folder) and drops where it lives.
    tail = re.split(r"[/\\]", path.rstrip("/\\"))[-1]
    return f"…/{tail}" if tail else "<path>"


def error_body(
    status: int,
    message: str,
    type_: str | None = None,
    param: str | None = None,
    code: str | int | None = None,
) -> dict[str, Any]:
    return {
        "error": {
            "message": scrub(message),
            "type": type_ or _STATUS_TYPES.get(status, "error"),
            "param": param,
            "code": code,
        }
    }


def error_response(exc: MlxkError) -> JSONResponse:
    status = int(getattr(exc, "http_status", 500))
    param = getattr(exc, "param", None)
    code = getattr(exc, "code", None)
    extra = {k: v for k, v in exc.extra.items() if k.endswith(("_bytes", "_pixels", "_seconds"))}
    if code is None and exc.type not in _STATUS_TYPES.values():
        code = exc.type  # mlxk's own error type (model_not_found, media_too_large, …)
    body = error_body(status, exc.message, _STATUS_TYPES.get(status), param, code)
    body["error"].update(extra)  # needed/available figures for 507, limits for 413
    headers = dict(getattr(exc, "headers", {}) or {})
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value"))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return (f"{param}: {msg}{more}" if param else f"{msg}{more}"), param


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(MlxkError)
    async def _mlxk(_: Request, exc: MlxkError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(_with_param(ValidationError(message), param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: "no such route", 405: "method not allowed for this route"}.get(
            exc.status_code, str(exc.detail)
        )
        return error_response(ApiError(exc.status_code, message, headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        rid = request.headers.get("x-request-id", "")
        log.exception("internal error in %s %s", request.method, request.url.path)
        return error_response(ApiError(500, f"internal server error {rid}".strip()))


def _with_param(exc: ValidationError, param: str | None) -> ApiError:
    return ApiError(400, exc.message, param=param, code="invalid_request")
