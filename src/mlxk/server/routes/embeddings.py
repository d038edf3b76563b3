"""POST /v1/embeddings: sentence embeddings (L2-normalised) from an encoder model."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlxk.server.errors import bad_param
from mlxk.server.protocol import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage
from mlxk.server.routes import ERRORS
from mlxk.server.service import prepare_embeddings, run_with_model, state_of
from mlxk.server.sse import once

router = APIRouter()


def _token_rows(value: Any) -> list[list[int]] | None:
    """Pre-tokenized input (a list of ids or a list of such lists), else None."""
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [list(value)]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return [list(v) for v in value]
    return None


def _embed(runner: Any, value: Any) -> tuple[np.ndarray, int]:
    rows = _token_rows(value)
    if rows is None:
        texts = [value] if isinstance(value, str) else list(value)
        rows = runner.tokenize(texts)
    else:
        vocab = runner.tokenizer.get_vocab_size()
        if any(t >= vocab for row in rows for t in row):
            raise bad_param("input", f"token ids must be below the vocabulary size {vocab}")
        rows = [row[: runner.max_length] for row in rows]
    return runner.embed_ids(rows), sum(len(r) for r in rows)


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
        vectors, tokens = await run_with_model(state, prep, lambda r: _check_and_embed(r, req))
    finally:
        leave()
    data = [
        Embedding(index=i, embedding=_encode(v, req.encoding_format)) for i, v in enumerate(vectors)
    ]
    body = EmbeddingList(
        data=data, model=req.model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    )
    return JSONResponse(body.model_dump(mode="json"))


def _check_and_embed(runner: Any, req: EmbeddingRequest) -> tuple[np.ndarray, int]:
    if req.dimensions is not None and req.dimensions != runner.dimensions:
        raise bad_param(
            "dimensions",
            f"this model gives {runner.dimensions} dimensions; other sizes are not supported",
        )
    return _embed(runner, req.input)
