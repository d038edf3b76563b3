"""server-overhead and concurrency: streamed /v1/chat/completions against ``mlxk serve`` and
``mlx_lm.server`` on the same model files, at 1/2/4/8 clients, plus in-process generation
through mlxk's text backend as the overhead anchor.

The servers run as child processes on free loopback ports; clients are threads speaking plain
HTTP/1.1 (stdlib), reading the SSE stream line by line. An OpenAI request cannot ignore EOS:
the prompt asks for a long answer and the tokens actually streamed are counted.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlxk.bench.records import RunContext, anchor_ref, make_record, ratio, summarize
from mlxk.config import Settings
from mlxk.errors import MlxkError, UsageError

SCENARIO_OVERHEAD = "server-overhead"
SCENARIO_CONCURRENCY = "concurrency"
PROMPT = "Count from 1 to 200, writing every number as a word, separated by commas."
START_TIMEOUT_S = 600.0


class ServerUnavailable(MlxkError):
    type = "bench_server_unavailable"


@dataclass(frozen=True)
class ServerBenchOptions:
    model: str
    clients: tuple[int, ...] = (1, 2, 4, 8)
    max_tokens: int = 64
    requests_per_client: int = 2
    anchor: bool = True
    in_process: bool = True
    repeats: int = 3  # in-process and 1-client repeats for the overhead figures


@dataclass(frozen=True)
class Stream:
    ttft_s: float
    done_s: float
    tokens: int
    text: str

    @property
    def tok_s(self) -> float:
        span = self.done_s - self.ttft_s
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else 0.0


@dataclass
class Server:
    name: str
    model: str  # what requests name in "model"
    port: int
    proc: subprocess.Popen[bytes]
    log: Any
    start_s: float = 0.0
    streams: dict[int, list[Stream]] = field(default_factory=dict)
    walls: dict[int, float] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mlxk_serve_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("mlxk.cli.commands_serve") is not None


def _spawn(name: str, cmd: list[str], model: str, port: int, health: str) -> Server:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; stop() closes
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name, model, port, proc, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-6:]
            raise ServerUnavailable(f"{name} exited with {proc.returncode}: {' | '.join(tail)}")
        if _get_ok(port, health):
            server.start_s = time.perf_counter() - t0
            return server
        time.sleep(0.5)
    stop(server)
    raise ServerUnavailable(f"{name} did not answer {health} within {START_TIMEOUT_S:.0f} s")


def _get_ok(port: int, path: str) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def stop(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    server.log.close()


def start_mlxk(spec: str, *more: str) -> Server:
    """``mlxk serve`` with ``spec`` (what requests name) and ``more`` models pinned."""
    port = free_port()
    pins = [arg for m in (spec, *more) for arg in ("--model", m)]
    cmd = [sys.executable, "-m", "mlxk", "serve", *pins, "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    return _spawn("mlxk serve", cmd, spec, port, "/health")


def start_mlx_lm(path: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "mlx_lm.server", "--model", str(path), "--port", str(port)]
    return _spawn("mlx_lm.server", cmd, str(path), port, "/v1/models")


# --- one streamed request -------------------------------------------------------------------


def chat_body(model: str, max_tokens: int) -> bytes:
    return json.dumps({
        "model": model, "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0,
        "repetition_penalty": 1.0, "stream": True, "stream_options": {"include_usage": True},
    }).encode()  # fmt: skip


def post_stream(
    port: int, path: str, body: bytes, content_type: str = "application/json"
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """POST and check the status; the caller reads the event stream, then closes ``conn``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    conn.request("POST", path, body, {"Content-Type": content_type})
    resp = conn.getresponse()
    if resp.status != 200:
        conn.close()
        raise ServerUnavailable(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    return conn, resp


def sse_events(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The JSON payloads of an SSE stream, up to ``[DONE]`` or the end of the response."""
    for raw in resp:  # HTTPResponse undoes chunked encoding; SSE events are lines
        line = raw.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


def stream_once(port: int, model: str, max_tokens: int) -> Stream:
    t0 = time.perf_counter()
    conn, resp = post_stream(port, "/v1/chat/completions", chat_body(model, max_tokens))
    first, tokens, parts, usage = None, 0, [], None
    for event in sse_events(resp):
        usage = (event.get("usage") or {}).get("completion_tokens") or usage
        piece = content(event)
        if piece:
            first = first if first is not None else time.perf_counter() - t0
            tokens += 1  # content chunks: a fallback for a server that reports no usage
            parts.append(piece)
    done = time.perf_counter() - t0
    conn.close()
    tokens = int(usage) if usage else tokens
    return Stream(first if first is not None else done, done, tokens, "".join(parts))


def content(event: dict[str, Any]) -> str:
    """The text of a chat completion chunk (empty for role/usage-only chunks)."""
    choices = event.get("choices") or []
    if not choices:
        return ""
    return str((choices[0].get("delta") or {}).get("content") or "")


def sweep_level(server: Server, clients: int, opts: ServerBenchOptions) -> None:
    """``clients`` threads, each sending its requests one after another; wall for all."""
    results: list[Stream] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    gate = threading.Barrier(clients + 1)

    def client() -> None:
        gate.wait()
        for _ in range(opts.requests_per_client):
            try:
                s = stream_once(server.port, server.model, opts.max_tokens)
            except (OSError, MlxkError) as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                results.append(s)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    server.walls[clients] = time.perf_counter() - t0
    server.streams[clients] = results
    if errors:
        raise ServerUnavailable(f"{server.name} at {clients} clients: {errors[0]}")


# --- in-process anchor ----------------------------------------------------------------------


def in_process(settings: Settings, spec: str, opts: ServerBenchOptions) -> list[Stream]:
    """The same chat request straight through mlxk's text backend (no HTTP, no server)."""
    from mlxk.ops.run import RunOptions, platform_for, prepare

    prep = prepare(settings, spec, RunOptions(prompt="x"))
    plat = platform_for(settings)
    from mlxk.backends.text import load_text

    runner = load_text(prep.record.model.path, float32_activations=plat.device == "cpu")
    out = []
    for rep in range(1 + opts.repeats):
        t0 = time.perf_counter()
        first, n, parts = None, 0, []
        # greedy, no repetition penalty: the stream's defaults
        for chunk in runner.stream([{"role": "user", "content": PROMPT}],
                                   max_tokens=opts.max_tokens):  # fmt: skip
            if chunk.text and first is None:
                first = time.perf_counter() - t0
            n = chunk.token_count
            parts.append(chunk.text)
        if rep:  # the first one is the warm-up
            out.append(Stream(first or 0.0, time.perf_counter() - t0, n, "".join(parts)))
    return out


# --- records --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (inclusive method), rounded; the value itself for one value."""
    if not values:
        return None
    return (
        round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 4)
        if len(values) > 1
        else round(values[0], 4)
    )


def _level_record(
    ctx: RunContext, server: Server, clients: int, opts: ServerBenchOptions,
    model: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    streams, wall = server.streams.get(clients, []), server.walls.get(clients, 0.0)
    tokens = sum(s.tokens for s in streams)
    ttfts = [s.ttft_s for s in streams]
    return make_record(
        ctx, SCENARIO_CONCURRENCY, server.name,
        role="subject" if server.name == "mlxk serve" else "anchor", model=model,
        workload={"label": f"{clients} clients", "clients": clients,
                  "requests_per_client": opts.requests_per_client, "max_tokens": opts.max_tokens,
                  "tokens_streamed": tokens, "prompt": PROMPT},
        phases={"load_s": round(server.start_s, 3), "first_token_s": percentile(ttfts, 50),
                "done_s": round(wall, 4)},
        throughput={"aggregate_tok_s": round(tokens / wall, 3) if wall else None,
                    "stream_tok_s": round(statistics.median([s.tok_s for s in streams]), 3)
                    if streams else None},
        stats={"ttft_s": summarize(ttfts) | {"p95": percentile(ttfts, 95)},
               "stream_tok_s": summarize([s.tok_s for s in streams])},
    )  # fmt: skip


def _link_anchors(records: list[dict[str, Any]]) -> None:
    """On each mlxk level record: the mlx_lm.server figure at the same level, and the ratio."""
    by = {(r["engine"], r["workload"]["clients"]): r for r in records}
    for (engine, clients), rec in by.items():
        twin = by.get(("mlx_lm.server", clients))
        if engine == "mlxk serve" and twin is not None:
            rec["anchor"] = anchor_ref("mlx_lm.server", "aggregate_tok_s",
                                       rec["throughput"]["aggregate_tok_s"],
                                       twin["throughput"]["aggregate_tok_s"])  # fmt: skip
            rec["anchor"]["ttft_p50_ratio"] = ratio(rec["phases"]["first_token_s"],
                                                    twin["phases"]["first_token_s"])  # fmt: skip


def _overhead_record(
    ctx: RunContext, server: Server, local: list[Stream], model: dict[str, Any],
    opts: ServerBenchOptions,
) -> dict[str, Any]:  # fmt: skip
    one = server.streams.get(1, [])
    ttft = statistics.median([s.ttft_s for s in one]) if one else None
    tps = statistics.median([s.tok_s for s in one]) if one else None
    l_ttft = statistics.median([s.ttft_s for s in local]) if local else None
    l_tps = statistics.median([s.tok_s for s in local]) if local else None
    same = bool(one and local and one[0].text == local[0].text)
    return make_record(
        ctx, SCENARIO_OVERHEAD, server.name, model=model,
        workload={"label": "1 client", "max_tokens": opts.max_tokens, "prompt": PROMPT},
        phases={"first_token_s": ttft}, throughput={"stream_tok_s": tps},
        anchor=anchor_ref("mlxk in-process (text backend)", "stream_tok_s", tps, l_tps),
        quality={"text_equal_to_in_process": same},
        extra={"added_ttft_ms": round((ttft - l_ttft) * 1000, 1) if ttft and l_ttft else None,
               "in_process_ttft_s": l_ttft, "in_process_tok_s": l_tps},
    )  # fmt: skip


def run_server(
    settings: Settings, ctx: RunContext, opts: ServerBenchOptions
) -> list[dict[str, Any]]:
    if not mlxk_serve_available():
        raise ServerUnavailable("bench server: `mlxk serve` is not available in this build")
    model = model_facts(settings, opts.model)
    path = Path(model["path"])
    local = in_process(settings, opts.model, opts) if opts.in_process else []
    servers = [start_mlxk(opts.model)]
    try:
        if opts.anchor:
            servers.append(start_mlx_lm(path))
        _sweep(servers, opts)
    finally:
        for s in servers:
            stop(s)
    ctx.refresh()
    levels = [_level_record(ctx, s, c, opts, model) for c in opts.clients for s in servers]
    _link_anchors(levels)
    return [_overhead_record(ctx, servers[0], local, model, opts), *levels]


def model_facts(settings: Settings, spec: str) -> dict[str, Any]:
    """The record's ``model`` section: name, directory, quantization, weight bytes."""
    from mlxk.backends.memory import weight_bytes
    from mlxk.ops.catalog import build_record
    from mlxk.store.resolve import Resolver

    rec = build_record(Resolver(settings).resolve(spec).model)
    path = rec.model.path
    return {"name": spec, "path": str(path), "quantization": rec.info.quantization,
            "weight_bytes": weight_bytes(path)}  # fmt: skip


def _sweep(servers: list[Server], opts: ServerBenchOptions) -> None:
    for s in servers:  # warm-up: first request compiles kernels and fills caches
        stream_once(s.port, s.model, opts.max_tokens)
    for clients in opts.clients:  # A B per level: both see the same machine load
        for s in servers:
            sweep_level(s, clients, opts)


def check_clients(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise UsageError(f"--clients: comma-separated numbers, got '{text}'") from exc
    if not levels or min(levels) < 1:
        raise UsageError("--clients: at least one level, each ≥ 1")
    return levels
