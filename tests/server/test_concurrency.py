"""Concurrent streams are batched and all finish; /health answers meanwhile; a client that
leaves mid-stream has its generation stopped, and the next request works."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
import pytest
from tests.server.conftest import Server

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "Name a color."}]
STORY = [{"role": "user", "content": "Write a very long story about a dragon and a castle."}]


def _stream_chat(server: Server, max_tokens: int) -> tuple[str | None, int]:
    client: Any = server.openai()
    stream = client.chat.completions.create(
        model="smollm2",
        messages=QUESTION,
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    reason, tokens = None, 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].finish_reason:
            reason = chunk.choices[0].finish_reason
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return reason, tokens


def _stats(http: httpx.Client) -> dict[str, Any]:
    stats: dict[str, Any] = http.get("/v1/mlxk/stats").json()
    return stats


def test_eight_concurrent_streams_finish_and_health_answers(
    server: Server, record_property: Any
) -> None:
    stop = threading.Event()
    latencies: list[float] = []
    peak_active = 0

    def watch() -> None:
        nonlocal peak_active
        with server.client(timeout=10) as http:
            while not stop.is_set():
                t0 = time.perf_counter()
                ok = http.get("/health").status_code == 200
                latencies.append(time.perf_counter() - t0 if ok else float("inf"))
                peak_active = max(peak_active, _stats(http)["active_sequences"])
                time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: _stream_chat(server, 12), range(8)))
    finally:
        stop.set()
        watcher.join()
    assert all(reason in ("stop", "length") for reason, _ in results), results
    assert all(1 <= tokens <= 12 for _, tokens in results), results
    assert latencies and all(lat != float("inf") for lat in latencies)
    assert peak_active >= 2, "concurrent requests should share the batch"
    median = sorted(latencies)[len(latencies) // 2]
    record_property("health_latency_median_ms", round(median * 1000, 1))
    record_property("health_latency_max_ms", round(max(latencies) * 1000, 1))
    sys.stderr.write(
        f"/health while 8 streams ran: median {median * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} probes\n"
    )


def test_client_disconnect_stops_generation_and_next_request_works(server: Server) -> None:
    body = {
        "model": "smollm2",
        "messages": STORY,
        "max_tokens": 400,
        "temperature": 0.7,
        "stream": True,
        "repetition_penalty": 1.0,
    }
    with server.client() as http:
        before = _stats(http)
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: ") and "content" in line:
                    seen += 1
                if seen == 4:  # the role chunk + 3 content chunks
                    break
        # leaving the block closed the connection mid-stream
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _stats(http)["cancelled"] <= before["cancelled"]:
            time.sleep(0.2)
        after = _stats(http)
        assert after["cancelled"] == before["cancelled"] + 1
        assert after["active_sequences"] == 0
        time.sleep(1.0)
        settled = _stats(http)
        assert settled["generated_tokens"] == after["generated_tokens"], "generation went on"
        assert after["generated_tokens"] - before["generated_tokens"] < 400
        r = http.post("/v1/chat/completions", json={**body, "stream": False, "max_tokens": 3})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
        assert json.loads(r.text)["choices"][0]["finish_reason"] == "length"
