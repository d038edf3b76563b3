"""POST /v1/embeddings: sentence embeddings (L2-normalised) from an encoder model."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlxk.server.protocol import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage
from mlxk.server.routes import ERRORS
from mlxk.server.service import embed, prepare_embeddings, state_of
from mlxk.server.sse import once

router = APIRouter()


def _token_rows(value: Any) -> list[list[int]] | None:
    """Pre-tokenized input (a list of ids or a list of such lists), else None."""
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [list(value)]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [list(v) for v in value]
    return None


def _inputs(value: Any) -> list[str] | list[list[int]]:
    rows = _token_rows(value)
    if rows is not None:
        return rows
    return [value] if isinstance(value, str) else list(value)


def _encode(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":  # OpenAI's base64: little-endian float32 bytes
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post("/v1/embeddings", response_model=EmbeddingList, responses=ERRORS)
async def embeddings(req: EmbeddingRequest, request: Request) -> Response:
    state = state_of(request)
    state.admission.enter()
    leave = once(state.admission.leave)
    try:
        prep = await prepare_embeddings(state, req.model)
        done = await embed(state, prep, _inputs(req.input), req.dimensions)
        vectors, tokens = done.vectors, done.tokens
    finally:
        leave()
    data = [
        Embedding(index=i, embedding=_encode(v, req.encoding_format)) for i, v in enumerate(vectors)
    ]
    body = EmbeddingList(
        data=data, model=req.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    )
    return JSONResponse(body.model_dump(mode="json"))
