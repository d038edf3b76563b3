"""No silent drops (issue 17): every request field is honoured, accepted and ignored on purpose,
or refused with a 400 ``unsupported_parameter`` naming it — against the real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.server.conftest import SPEECH, Server

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"
HI = [{"role": "user", "content": "Hi"}]
BASE: dict[str, dict[str, Any]] = {
    CHAT: {"model": "smollm2", "messages": HI, "max_tokens": 1},
    COMPLETIONS: {"model": "smollm2", "prompt": "Hi", "max_tokens": 1},
    EMBEDDINGS: {"model": "minilm", "input": "hi"},
}
CLIP = SPEECH / "a_man_said_to_the_universe_sir_i_exist.wav"

# (endpoint, field, value): refused with param == field and the message naming it
REFUSED: list[tuple[str, str, Any]] = [
    (CHAT, "logit_bias", {"50256": -100}),
    (CHAT, "logprobs", True),
    (CHAT, "top_logprobs", 2),
    (CHAT, "audio", {"voice": "alloy", "format": "wav"}),
    (CHAT, "modalities", ["text", "audio"]),
    (CHAT, "prediction", {"type": "content", "content": "Hello"}),
    (CHAT, "web_search_options", {}),
    (CHAT, "functions", [{"name": "f", "parameters": {"type": "object"}}]),
    (CHAT, "function_call", "auto"),
    (CHAT, "reasoning_effort", "low"),
    (CHAT, "verbosity", "low"),
    (CHAT, "echo", True),
    (CHAT, "suffix", "x"),
    (CHAT, "best_of", 2),
    (CHAT, "max_token", 3),  # a typo is not dropped either
    (COMPLETIONS, "logit_bias", {"1": 5}),
    (COMPLETIONS, "logprobs", 1),
    (COMPLETIONS, "best_of", 2),
    (COMPLETIONS, "suffix", " world"),
    (COMPLETIONS, "messages", HI),
    (COMPLETIONS, "metadata", {"a": "b"}),  # a chat field, not a completions one
    (EMBEDDINGS, "truncate", "END"),
    (EMBEDDINGS, "temperature", 0.5),
]
# nested fields: (endpoint, body changes, param)
NESTED: list[tuple[str, dict[str, Any], str]] = [
    (CHAT, {"stream_options": {"include_usage": True, "obfuscate": True}},
     "stream_options.obfuscate"),
    (CHAT, {"messages": [{"role": "user", "content": "Hi", "weight": 2}]}, "messages.0.weight"),
    (CHAT, {"messages": [{"role": "assistant", "content": "x", "refusal": "no"}, *HI]},
     "messages.0.refusal"),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi", "x": 1}]}]},
     "messages.0.content.0.x"),
    (CHAT, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "high"}}
    ]}]}, "messages.0.content.0.image_url.detail"),
]  # fmt: skip
# accepted and ignored on purpose, or accepted with the value that changes nothing
ACCEPTED: list[tuple[str, str, Any]] = [
    (CHAT, "user", "user-1234"),
    (CHAT, "metadata", {"team": "a"}),
    (CHAT, "store", False),
    (CHAT, "store", True),
    (CHAT, "service_tier", "auto"),
    (CHAT, "prompt_cache_key", "k1"),
    (CHAT, "safety_identifier", "hash-1"),
    (CHAT, "logit_bias", {}),
    (CHAT, "logit_bias", None),
    (CHAT, "logprobs", False),
    (CHAT, "top_logprobs", None),
    (CHAT, "modalities", ["text"]),
    (CHAT, "audio", None),
    (CHAT, "functions", None),
    (CHAT, "n", 1),
    (COMPLETIONS, "user", "user-1234"),
    (COMPLETIONS, "best_of", 1),
    (COMPLETIONS, "suffix", ""),
    (COMPLETIONS, "logprobs", None),
    (COMPLETIONS, "echo", True),
    (EMBEDDINGS, "user", "user-1234"),
    (EMBEDDINGS, "encoding_format", "base64"),
]
# multipart: (endpoint, field, value)
FORM_REFUSED: list[tuple[str, str, str]] = [
    (TRANSCRIPTIONS, "include[]", "logprobs"),
    (TRANSCRIPTIONS, "known_speaker_names[]", "bob"),
    (TRANSCRIPTIONS, "timestamp_granularities", "word"),  # without [], as curl users write it
    (TRANSLATIONS, "language", "de"),
    (TRANSLATIONS, "timestamp_granularities[]", "segment"),
]


def _assert_refused(r: Any, param: str) -> None:
    assert r.status_code == 400, (param, r.status_code, r.text)
    err = r.json()["error"]
    assert err["param"] == param, err
    assert err["type"] == "invalid_request_error", err
    assert err["code"] == "unsupported_parameter", err
    name = param.rsplit(".", 1)[-1]
    assert f"'{name}' is not supported by mlxk" in err["message"], err


@pytest.mark.parametrize(("endpoint", "field", "value"), REFUSED)
def test_unimplemented_fields_are_refused_by_name(
    server: Server, endpoint: str, field: str, value: Any
) -> None:
    with server.client() as http:
        r = http.post(endpoint, json=BASE[endpoint] | {field: value})
    _assert_refused(r, field)


@pytest.mark.parametrize(("endpoint", "changes", "param"), NESTED)
def test_nested_fields_are_refused_by_path(
    server: Server, endpoint: str, changes: dict[str, Any], param: str
) -> None:
    with server.client() as http:
        r = http.post(endpoint, json=BASE[endpoint] | changes)
    _assert_refused(r, param)


def test_legacy_functions_point_to_tools_and_typos_to_the_field(server: Server) -> None:
    with server.client() as http:
        legacy = http.post(CHAT, json=BASE[CHAT] | {"functions": [{"name": "f"}]}).json()
        typo = http.post(CHAT, json=BASE[CHAT] | {"max_token": 3}).json()
        echo = http.post(CHAT, json=BASE[CHAT] | {"echo": True}).json()
    assert "use tools" in legacy["error"]["message"]
    assert "did you mean 'max_tokens'" in typo["error"]["message"]
    assert "completions endpoint" in echo["error"]["message"]


def test_n_above_one_stays_refused(server: Server) -> None:
    with server.client() as http:
        r = http.post(CHAT, json=BASE[CHAT] | {"n": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n", r.text


@pytest.mark.parametrize(("endpoint", "field", "value"), ACCEPTED)
def test_allowed_fields_are_accepted(server: Server, endpoint: str, field: str, value: Any) -> None:
    with server.client() as http:
        r = http.post(endpoint, json=BASE[endpoint] | {field: value})
    assert r.status_code == 200, (field, r.text)


def _form_post(server: Server, endpoint: str, clip: Path, data: dict[str, str]) -> Any:
    with server.client() as http, clip.open("rb") as fh:
        return http.post(
            endpoint,
            files={"file": (clip.name, fh, "audio/wav")},
            data={"model": "whisper-tiny.en"} | data,
        )


@pytest.mark.parametrize(("endpoint", "field", "value"), FORM_REFUSED)
def test_unknown_form_fields_are_refused_by_name(
    server: Server, endpoint: str, field: str, value: str
) -> None:
    _assert_refused(_form_post(server, endpoint, CLIP, {field: value}), field)


def test_form_refusals_say_why(server: Server) -> None:
    include = _form_post(server, TRANSCRIPTIONS, CLIP, {"include[]": "logprobs"}).json()
    typo = _form_post(server, TRANSCRIPTIONS, CLIP, {"timestamp_granularities": "word"}).json()
    assert "not implemented" in include["error"]["message"]
    assert "did you mean 'timestamp_granularities[]'" in typo["error"]["message"]


def test_every_openai_transcription_field_mlxk_implements_is_accepted(server: Server) -> None:
    data = {"language": "en", "prompt": "A man.", "response_format": "verbose_json",
            "temperature": "0", "timestamp_granularities[]": "segment", "stream": "false",
            "chunking_strategy": "auto"}  # fmt: skip
    r = _form_post(server, TRANSCRIPTIONS, CLIP, data)
    assert r.status_code == 200, r.text
    assert "universe" in r.json()["text"].lower()


def test_openapi_schema_forbids_extra_fields(server: Server) -> None:
    with server.client() as http:
        schemas = http.get("/openapi.json").json()["components"]["schemas"]
    for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest", "ChatMessage"):
        assert schemas[name]["additionalProperties"] is False, name
    logit_bias = schemas["ChatCompletionRequest"]["properties"]["logit_bias"]
    assert "not supported" in logit_bias["description"]


def test_the_official_client_still_works(server: Server) -> None:
    client: Any = server.openai()
    chat = client.chat.completions.create(
        model="smollm2", messages=HI, max_tokens=2, user="x", metadata={"k": "v"}, store=False
    )
    assert chat.choices[0].message.content is not None
    stream = client.chat.completions.create(
        model="smollm2", messages=HI, max_tokens=2, stream=True,
        stream_options={"include_usage": True}, user="x",
    )  # fmt: skip
    assert [c for c in stream if c.usage is not None]
    text = client.completions.create(model="smollm2", prompt="Hi", max_tokens=2, user="x")
    assert text.choices[0].text is not None
    vectors = client.embeddings.create(model="minilm", input=["a", "b"], user="x")
    assert len(vectors.data) == 2
    with CLIP.open("rb") as fh:
        heard = client.audio.transcriptions.create(model="whisper-tiny.en", file=fh)
    assert "universe" in heard.text.lower()
    import openai

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="smollm2", messages=HI, max_tokens=2, logit_bias={"1": 5}
        )
    assert refused.value.param == "logit_bias"
    assert refused.value.code == "unsupported_parameter"
