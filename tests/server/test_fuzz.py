"""Schema fuzzing of every endpoint (security.md 12): schemathesis generates valid and invalid
requests from /openapi.json; no answer may be a 5xx, and every error is in OpenAI's shape.

It runs against the secure server (with its key), whose --max-tokens 32 bounds what a fuzzed
request that happens to name a real model can cost, and whose memory budget refuses (507)
every model but the pinned one. Examples per operation and mode are bounded.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from tests.server.conftest import Server

pytestmark = pytest.mark.slow

EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 6}


def _check(response: Any, label: str) -> None:
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"
    assert response.headers.get("x-request-id"), label
    if response.status_code >= 400:
        err = response.json()["error"]
        assert set(err) >= {"message", "type", "param", "code"}, label
        assert "Traceback" not in response.text and " at 0x" not in response.text


def _fuzz(server: Server, operation: Any, mode: GenerationMode) -> int:
    auth = {"Authorization": f"Bearer {server.api_key}"}
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"
    calls = 0

    @settings(max_examples=EXAMPLES[mode], deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal calls
        calls += 1
        _check(case.call(base_url=server.url, headers=auth, timeout=120), label)

    try:
        run()
    except Unsatisfiable:  # nothing invalid to send (GET /health has no parameters)
        assert mode is GenerationMode.NEGATIVE, label
    return calls


def test_schema_fuzzing_finds_no_server_errors(secure_server: Server) -> None:
    schema = schemathesis.openapi.from_url(
        secure_server.url + "/openapi.json",
        headers={"Authorization": f"Bearer {secure_server.api_key}"},
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/chat/completions", "/v1/audio/transcriptions", "/v1/embeddings"} <= paths
    calls = sum(_fuzz(secure_server, op, mode) for op in operations for mode in EXAMPLES)
    assert calls >= len(operations) * 3
