"""Chat and completions with the real SmolLM2 through the official openai client and httpx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.server.conftest import Server

pytestmark = pytest.mark.slow

PARIS = [{"role": "user", "content": "What is the capital of France?"}]


def _prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer.encode(text, add_special_tokens=False))


def test_capital_of_france_is_paris_with_exact_usage(
    server: Server, smollm2_tokenizer: Any
) -> None:
    client: Any = server.openai()
    r = client.chat.completions.create(
        model="smollm2", messages=PARIS, temperature=0, max_tokens=24
    )
    answer = r.choices[0].message.content
    assert "Paris" in answer
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == _prompt_tokens(smollm2_tokenizer, PARIS)
    # EOS ends the answer: it is counted as generated, never shown
    assert r.usage.completion_tokens == len(smollm2_tokenizer.encode(answer)) + 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_max_tokens_gives_length_and_exact_counts(server: Server, smollm2_tokenizer: Any) -> None:
    client: Any = server.openai()
    r = client.chat.completions.create(model="smollm2", messages=PARIS, temperature=0, max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    assert r.usage.prompt_tokens == _prompt_tokens(smollm2_tokenizer, PARIS)
    assert r.choices[0].message.content.strip().startswith("The capital")


def test_stop_string_cuts_the_answer_unstreamed(server: Server) -> None:
    client: Any = server.openai()
    r = client.chat.completions.create(
        model="smollm2", messages=PARIS, temperature=0, max_tokens=24, stop=[" France"]
    )
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == "The capital of"


def test_stop_string_cuts_the_answer_streamed(server: Server) -> None:
    client: Any = server.openai()
    stream = client.chat.completions.create(
        model="smollm2", messages=PARIS, temperature=0, max_tokens=24, stop="France", stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital of "
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_include_usage_sends_a_final_usage_chunk(
    server: Server, smollm2_tokenizer: Any
) -> None:
    client: Any = server.openai()
    stream = client.chat.completions.create(
        model="smollm2",
        messages=PARIS,
        temperature=0,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["length"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 4
    assert last.usage.prompt_tokens == _prompt_tokens(smollm2_tokenizer, PARIS)
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage(server: Server) -> None:
    with server.client() as http:
        body = {"model": "smollm2", "messages": PARIS, "max_tokens": 2, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(ln[6:]) for ln in lines[:-1]]
    assert all("usage" not in e for e in events)
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_completions_raw_prompt_stream_and_not(server: Server, smollm2_tokenizer: Any) -> None:
    client: Any = server.openai()
    prompt = "The capital of France is"
    r = client.completions.create(model="smollm2", prompt=prompt, max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(smollm2_tokenizer.encode(prompt))
    assert r.usage.completion_tokens == 3
    streamed = client.completions.create(
        model="smollm2", prompt=prompt, max_tokens=3, temperature=0, stream=True
    )
    text = "".join(c.choices[0].text for c in streamed if c.choices)
    assert text == r.choices[0].text


def test_prompt_plus_max_tokens_beyond_context_is_a_400_naming_the_limit(server: Server) -> None:
    with server.client() as http:
        r = http.post(
            "/v1/chat/completions", json={"model": "smollm2", "messages": PARIS, "max_tokens": 9000}
        )
    assert r.status_code == 400
    err = r.json()["error"]
    assert "8192" in err["message"] and err["param"] == "max_tokens"
