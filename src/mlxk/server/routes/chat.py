"""POST /v1/chat/completions: text, image_url data URLs and input_audio, stream or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlxk.backends.reasoning import ReasoningSplit
from mlxk.backends.tools import Piece, ToolStream
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
    DeltaFunction,
    DeltaToolCall,
    OutFunctionCall,
    OutToolCall,
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
    message, reason = _message(adm.stream, text, reason, req)
    answer = ChatCompletion(
        id=new_id("chatcmpl"),
        created=now(),
        model=req.model,
        choices=[ChatChoice(message=message, finish_reason=reason)],
        usage=Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        ),
    )
    payload = answer.model_dump(mode="json")
    sent = payload["choices"][0]["message"]
    for key in ("tool_calls", "reasoning_content"):  # OpenAI sends these only when there are any
        if sent.get(key) is None:
            sent.pop(key, None)
    return JSONResponse(payload)


def chat_options(req: ChatCompletionRequest, messages: list[dict[str, Any]], images: list[Any],
                 clips: list[Any]) -> RunOptions:  # fmt: skip
    """The request as ops.run takes it; unset sampling fields keep the shared defaults."""
    return RunOptions(
        messages=messages, images=tuple(images), audio=tuple(clips),
        max_tokens=req.max_completion_tokens or req.max_tokens, temperature=req.temperature,
        top_p=req.top_p, stop=req.stop_list(), repetition_penalty=req.repetition_penalty,
        presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        seed=req.seed, tools=[t.model_dump(exclude_none=True) for t in req.tools or []],
        tool_choice=_tool_choice(req), response_format=_response_format(req),
        thinking=False if req.reasoning_effort == "none" else None,
    )  # fmt: skip


def _tool_choice(req: ChatCompletionRequest) -> str | dict[str, Any] | None:
    choice = req.tool_choice
    if choice is None or isinstance(choice, str):
        return choice
    return {"name": choice.function.name}


def _response_format(req: ChatCompletionRequest) -> dict[str, Any] | None:
    fmt = req.response_format
    if fmt is None:
        return None
    if fmt.type == "json_schema" and (fmt.json_schema is None or fmt.json_schema.schema_ is None):
        raise bad_param("response_format.json_schema", "json_schema needs a schema")
    schema = fmt.json_schema.schema_ if fmt.json_schema is not None else None
    return {"type": fmt.type, "schema": schema}


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


def _tool_stream(stream: ChunkStream) -> ToolStream | None:
    plan: Any = stream.started.tools if stream.started is not None else None
    if plan is None:
        return None
    return ToolStream(plan.mode, plan.start, plan.end, plan.parser, plan.tools)


def _reasoning(stream: ChunkStream) -> ReasoningSplit | None:
    plan: Any = stream.started.reasoning if stream.started is not None else None
    return None if plan is None else ReasoningSplit(plan)


def _message(
    stream: ChunkStream, text: str, reason: str, req: ChatCompletionRequest
) -> tuple[AssistantMessage, str]:
    """The assistant message: thinking in ``reasoning_content``, calls in ``tool_calls``."""
    thinking: str | None = None
    split = _reasoning(stream)
    if split is not None:
        (r1, c1), (r2, c2) = split.feed(text), split.finish()
        thinking, text = (r1 + r2).strip() or None, (c1 + c2).lstrip()
    tools = _tool_stream(stream)
    if tools is None:
        return AssistantMessage(content=text, reasoning_content=thinking), reason
    pieces = tools.feed(text) + tools.finish()
    calls = _calls(pieces, req.parallel_tool_calls is not False)
    content = "".join(p.text for p in pieces if p.kind == "content").strip() or None
    if not calls:
        return AssistantMessage(content=content or "", reasoning_content=thinking), reason
    message = AssistantMessage(content=content, tool_calls=calls, reasoning_content=thinking)
    return message, "tool_calls"


class _Deltas:
    """Generated text → deltas: reasoning first split off, then tool calls."""

    def __init__(self, stream: ChunkStream) -> None:
        self.split = _reasoning(stream)
        self.tools = _tool_stream(stream)

    def feed(self, text: str) -> list[Delta]:
        return self._route(*(self.split.feed(text) if self.split else ("", text)), final=False)

    def finish(self) -> list[Delta]:
        thinking, content = self.split.finish() if self.split else ("", "")
        return self._route(thinking, content, final=True)

    def _route(self, thinking: str, content: str, *, final: bool) -> list[Delta]:
        out = [Delta(reasoning_content=thinking)] if thinking else []
        if self.tools is None:
            return out + ([Delta(content=content)] if content else [])
        pieces = self.tools.feed(content) + (self.tools.finish() if final else [])
        return out + _tool_deltas(pieces)


def _calls(pieces: list[Piece], parallel: bool) -> list[OutToolCall]:
    calls: dict[int, OutToolCall] = {}
    for p in pieces:
        if p.kind == "call":
            calls[p.index] = OutToolCall(
                id=p.call_id, function=OutFunctionCall(name=p.text, arguments="")
            )
        elif p.kind == "arguments" and p.index in calls:
            calls[p.index].function.arguments += p.text
    ordered = [calls[i] for i in sorted(calls)]
    return ordered if parallel else ordered[:1]  # parallel_tool_calls=false: the first call


def _tool_deltas(pieces: list[Piece]) -> list[Delta]:
    out = []
    for p in pieces:
        if p.kind == "content":
            if p.text:
                out.append(Delta(content=p.text))
        elif p.kind == "call":
            fn = DeltaFunction(name=p.text, arguments="")
            out.append(
                Delta(
                    tool_calls=[
                        DeltaToolCall(index=p.index, id=p.call_id, type="function", function=fn)
                    ]
                )
            )
        elif p.text:
            fn = DeltaFunction(arguments=p.text)
            out.append(Delta(tool_calls=[DeltaToolCall(index=p.index, function=fn)]))
    return out


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
        deltas = _Deltas(stream)
        async for c in stream.chunks():
            for d in deltas.feed(c.text):
                yield event(chunk(d))
            reason = c.finish_reason or reason
            prompt, completion = c.prompt_tokens or prompt, max(completion, c.token_count)
        for d in deltas.finish():
            yield event(chunk(d))
        if deltas.tools is not None and deltas.tools.calls:
            reason = "tool_calls"
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
