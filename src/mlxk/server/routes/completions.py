"""POST /v1/completions: a raw prompt (no chat template), stream or not."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
from mlxk.server.protocol import (
    Completion,
    CompletionChoice,
    CompletionRequest,
    Usage,
    new_id,
    now,
)
from mlxk.server.routes import ERRORS
from mlxk.server.service import ServerState, prepare_run, state_of
from mlxk.server.sse import DONE_LINE, EventStreamResponse, event

router = APIRouter()


@router.post("/v1/completions", response_model=Completion, responses=ERRORS)
async def completions(req: CompletionRequest, request: Request) -> Response:
    state = state_of(request)
    if req.n != 1:
        raise bad_param("n", "only n=1 is supported")
    prompt = req.prompt_text()
    if not prompt:
        raise bad_param("prompt", "prompt must not be empty")
    adm = await admit(state, lambda: _start(state, request, req, prompt))
    if adm is None:
        return Response(status_code=CLIENT_GONE)
    echo = prompt if req.echo else ""
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        body = _sse(adm.stream, req.model, echo, include_usage)
        return EventStreamResponse(body, closer(adm.stream, adm.leave))
    result = await collect_admitted(adm)
    if result is None:
        return Response(status_code=CLIENT_GONE)
    text, reason, used, made = result
    answer = Completion(
        id=new_id("cmpl"),
        created=now(),
        model=req.model,
        choices=[CompletionChoice(text=echo + text, finish_reason=reason)],
        usage=Usage(prompt_tokens=used, completion_tokens=made, total_tokens=used + made),
    )
    return JSONResponse(answer.model_dump(mode="json"))


async def _start(
    state: ServerState, request: Request, req: CompletionRequest, prompt: str
) -> ChunkStream:
    prep = await prepare_run(state, req.model, RunOptions(prompt=prompt))
    opts = RunOptions(
        prompt=prompt, use_chat_template=False, max_tokens=req.max_tokens,
        temperature=req.temperature, top_p=req.top_p, stop=req.stop_list(),
        repetition_penalty=req.repetition_penalty, presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty, seed=req.seed,
    )  # fmt: skip
    return await start(state, request, prep, opts)


async def _sse(
    stream: ChunkStream, model: str, echo: str, include_usage: bool
) -> AsyncIterator[bytes]:
    cid, created = new_id("cmpl"), now()

    def chunk(text: str, reason: str | None = None) -> Completion:
        return Completion(
            id=cid,
            created=created,
            model=model,
            choices=[CompletionChoice(text=text, finish_reason=reason)],
        )

    used = made = 0
    try:
        if echo:
            yield event(chunk(echo))
        async for c in stream.chunks():
            used, made = c.prompt_tokens or used, max(made, c.token_count)
            if c.text or c.finish_reason:
                yield event(chunk(c.text, c.finish_reason))
        if include_usage:
            usage = Usage(prompt_tokens=used, completion_tokens=made, total_tokens=used + made)
            yield event(Completion(id=cid, created=created, model=model, choices=[], usage=usage))
        yield DONE_LINE
    except ClientGone:
        return
    except MlxkError as exc:
        yield b"data: " + bytes(error_response(exc).body) + b"\n\n"
