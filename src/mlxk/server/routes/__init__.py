"""One router per endpoint family; ERRORS documents the error shape in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from mlxk.server.protocol import ErrorResponse

_WHY = {
    400: "invalid request (bad parameter, unsupported input for this model, context too long)",
    401: "missing or wrong API key",
    403: "Host header not allowed",
    404: "unknown model",
    413: "request, upload or media over a limit",
    503: "queue full: retry after the Retry-After header",
    507: "the model does not fit into the memory budget",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": why} for code, why in _WHY.items()
}
