"""Tool calling and structured outputs through the official openai client against a real
`mlxk serve` with SmolLM2 (its template knows no tools: the generic tool prompt and the
grammar carry the call)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel
from tests.server.conftest import SPEECH, Server

pytestmark = pytest.mark.slow
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _check_args(arguments: str) -> dict[str, Any]:
    args = json.loads(arguments)
    assert isinstance(args["city"], str) and set(args) <= {"city", "unit"}
    assert args.get("unit", "celsius") in ("celsius", "fahrenheit")
    return args


def test_required_tool_call_parses_and_matches_the_schema(server: Server) -> None:
    client: Any = server.openai()
    r = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=60,
        temperature=0,
    )  # fmt: skip
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    _check_args(call.function.arguments)


def test_named_tool_choice_streams_the_same_call_as_chunks(server: Server) -> None:
    client: Any = server.openai()
    kw: dict[str, Any] = {
        "model": "smollm2", "messages": ASK, "tools": [WEATHER], "max_tokens": 60,
        "temperature": 0, "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }  # fmt: skip
    whole = client.chat.completions.create(**kw).choices[0].message.tool_calls[0]
    name, args, reasons, fragments = "", "", [], 0
    for chunk in client.chat.completions.create(stream=True, **kw):
        delta = chunk.choices[0].delta
        reasons.append(chunk.choices[0].finish_reason)
        for tc in delta.tool_calls or []:
            assert tc.index == 0
            name += tc.function.name or ""
            args += tc.function.arguments or ""
            fragments += 1
    assert reasons[-1] == "tool_calls" and fragments >= 2
    assert (name, json.loads(args)) == (whole.function.name, json.loads(whole.function.arguments))


def test_a_history_with_the_tool_result_gets_an_answer(server: Server) -> None:
    client: Any = server.openai()
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21, "sky": "sunny"}'}]  # fmt: skip
    r = client.chat.completions.create(  # "none": answer from the result, call nothing
        model="smollm2", messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=40,
        temperature=0,
    )  # fmt: skip
    choice = r.choices[0]
    assert choice.finish_reason in ("stop", "length") and not choice.message.tool_calls
    assert choice.message.content and choice.message.content.strip()


class City(BaseModel):
    name: str
    country: str
    population: int


def test_parse_with_a_pydantic_model_returns_the_object(server: Server) -> None:
    client: Any = server.openai()
    r = client.chat.completions.parse(
        model="smollm2", messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format=City, max_tokens=200, temperature=0,
    )  # fmt: skip
    city = r.choices[0].message.parsed
    assert isinstance(city, City) and city.name


def test_json_object_and_schema_also_when_streamed(server: Server) -> None:
    client: Any = server.openai()
    kw: dict[str, Any] = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": 'Reply with a JSON object: {"colour": <a colour>}.'}],
        "response_format": {"type": "json_object"}, "max_tokens": 120, "temperature": 0,
    }  # fmt: skip
    text = client.chat.completions.create(**kw).choices[0].message.content
    assert isinstance(json.loads(text), dict)
    streamed = "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw)
    )
    assert streamed == text
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"],
              "additionalProperties": False}  # fmt: skip
    kw["response_format"] = {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}
    streamed = "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw)
    )
    assert set(json.loads(streamed)) == {"colour"}


def test_an_impossible_schema_and_tools_to_whisper_are_400(server: Server) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense-type"}}}
    with server.client() as http:
        r = http.post("/v1/chat/completions", json={
            "model": "smollm2", "messages": ASK, "response_format": bad, "max_tokens": 5})  # fmt: skip
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "response_format"
        import base64

        audio = base64.b64encode(
            (SPEECH / "a_man_said_to_the_universe_sir_i_exist.wav").read_bytes()
        )
        content = [
            {"type": "input_audio", "input_audio": {"data": audio.decode(), "format": "wav"}}
        ]
        r = http.post("/v1/chat/completions", json={
            "model": "whisper-tiny.en", "messages": [{"role": "user", "content": content}],
            "tools": [WEATHER]})  # fmt: skip
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "tools"


def test_a_vision_model_answers_in_the_schema(server: Server) -> None:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    schema = {"type": "object", "properties": {"red": {"type": "boolean"}}, "required": ["red"],
              "additionalProperties": False}  # fmt: skip
    content = [
        {"type": "text", "text": "Is it red?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    client: Any = server.openai()
    r = client.chat.completions.create(
        model="tiny-qwen2-vl", messages=[{"role": "user", "content": content}], max_tokens=20,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    )  # fmt: skip
    # a random-weight model, held to the grammar: the answer is the schema's only shape
    assert set(json.loads(r.choices[0].message.content)) == {"red"}
