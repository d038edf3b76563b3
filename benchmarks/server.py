"""server-overhead + concurrency: `mlxk serve` against `mlx_lm.server` on the same SmolLM2.

Both servers run in this job on the same workspace directory, each on a loopback port, and are
measured in interleaved rounds (A B A B …). A round is ``c`` concurrent streaming chat requests
(c = 1, 2, 4, 8) with a fixed prompt, temperature 0 and a fixed max_tokens. Per request:
time to first token (TTFT) and stream tokens/s after the first token; per round: aggregate
tokens/s (all tokens / wall time of the round). Loading is never inside a measured round
(one discarded warm-up round per server first). Greedy answers of both servers are recorded
to compare text equality next to speed.

    python benchmarks/server.py --workspace-home DIR [--model smollm2] [--repeats 5]

Without --workspace-home a temporary home is made and SmolLM2 imported into it (~20 s).
Writes benchmarks/results/server_cpu.jsonl and server_cpu.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROMPT = [{"role": "user", "content": "Write a long story about a dragon who guards a castle."}]
CLIENTS = (1, 2, 4, 8)
NOTES = (
    "Notes: both servers load the same workspace (SmolLM2-135M-Instruct imported from its Q4_1 "
    "GGUF, stored as float16). On a Linux CPU mlxk computes in float32 with an optimized BLAS "
    "preloaded (backends.platform), while mlx_lm.server runs the float16 weights as stored — "
    "MLX's slowest dense type on this CPU — so most of the single-client gap is the compute "
    "path, not the HTTP layer. Both batch concurrent requests (mlx-lm's BatchGenerator). The "
    "machine is shared: the load average is recorded, absolute numbers vary between runs, "
    "the interleaved ratio is the figure to read."
)


@dataclass
class Stream:
    ttft_s: float
    total_s: float
    tokens: int
    text: str

    @property
    def stream_tps(self) -> float:
        # tokens after the first one, over the time after the first one
        span = self.total_s - self.ttft_s
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else 0.0


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    model: str  # what requests put in "model"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(server: Server, probe: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.name} exited with {server.proc.returncode}")
        try:
            if httpx.get(server.url + probe, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{server.name} did not start in {timeout} s")


def start_mlxk(home: Path, model: str, log: Path) -> Server:
    port = free_port()
    env = _env(home)
    cmd = [
        sys.executable,
        "-m",
        "mlxk.cli.commands_serve",
        "--port",
        str(port),
        "--model",
        model,
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server("mlxk serve", proc, port, model)
    wait_ready(server, "/health")
    return server


def start_mlx_lm(home: Path, model: str, log: Path) -> Server:
    port = free_port()
    path = str(home / "ws" / model)
    cmd = [
        sys.executable,
        "-m",
        "mlx_lm.server",
        "--model",
        path,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    ]
    proc = subprocess.Popen(cmd, env=_env(home), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server("mlx_lm.server", proc, port, "default_model")
    wait_ready(server, "/v1/models")
    return server


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLXK_"))}
    return env | {
        "HF_HOME": str(home / "hf"),
        "MLXK_WORKSPACE_HOME": str(home / "ws"),
        "HF_HUB_OFFLINE": "1",
    }


def one_stream(server: Server, max_tokens: int) -> Stream:
    body = {
        "model": server.model,
        "messages": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first: float | None = None
    chunks, usage, parts = 0, None, []
    with (
        httpx.Client(timeout=600) as http,
        http.stream("POST", server.url + "/v1/chat/completions", json=body) as r,
    ):
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"].get("completion_tokens")
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    first = first or time.perf_counter()
                    chunks += 1
                    parts.append(text)
    end = time.perf_counter()
    tokens = int(usage) if usage else chunks
    return Stream((first or end) - t0, end - t0, tokens, "".join(parts))


def run_round(server: Server, clients: int, max_tokens: int) -> dict[str, Any]:
    results: list[Stream | None] = [None] * clients

    def worker(i: int) -> None:
        results[i] = one_stream(server, max_tokens)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done = [r for r in results if r is not None]
    total = sum(r.tokens for r in done)
    return {
        "server": server.name,
        "clients": clients,
        "wall_s": round(wall, 3),
        "tokens": total,
        "aggregate_tps": round(total / wall, 3),
        "ttft_s": [round(r.ttft_s, 3) for r in done],
        "stream_tps": [round(r.stream_tps, 3) for r in done],
        "text": done[0].text if done else "",
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("mlxk", "mlx", "mlx-cpu", "mlx-lm", "mlx-vlm", "mlx-audio", "fastapi", "uvicorn"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem / 1024**3, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loadavg_1m_at_start": load,
    }


def _median_range(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def summary(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# mlxk serve vs mlx_lm.server — SmolLM2-135M on CPU",
        "",
        f"Date: {meta['date']}  ",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in meta["machine"].items()) + "  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + "  ",
        f"Method: {meta['method']}",
        "",
        "| clients | server | TTFT s, median (min–max) | stream tok/s per request | "
        "aggregate tok/s | ours/anchor (aggregate) |",
        "|---|---|---|---|---|---|",
    ]
    for c in CLIENTS:
        agg: dict[str, float] = {}
        for name in ("mlxk serve", "mlx_lm.server"):
            mine = [r for r in rows if r["server"] == name and r["clients"] == c]
            ttft = [t for r in mine for t in r["ttft_s"]]
            tps = [t for r in mine for t in r["stream_tps"]]
            aggs = [r["aggregate_tps"] for r in mine]
            agg[name] = statistics.median(aggs) if aggs else 0.0
            ratio = ""
            if name == "mlx_lm.server" and agg.get("mlx_lm.server"):
                ratio = f"{agg['mlxk serve'] / agg['mlx_lm.server']:.2f}×"
            lines.append(
                f"| {c} | {name} | {_median_range(ttft)} | {_median_range(tps)} | "
                f"{_median_range(aggs)} | {ratio} |"
            )
    lines += ["", f"Greedy text equal (1 client, first repeat): {meta['greedy_equal']}", ""]
    lines += [NOTES, ""]
    for name, text in meta["greedy_text"].items():
        lines.append(f"- {name}: {text[:160]!r}")
    return "\n".join(lines) + "\n"


def prepare_home(given: str | None) -> Path:
    if given:
        return Path(given)
    home = Path(tempfile.mkdtemp(prefix="mlxk-bench-"))
    (home / "ws").mkdir()
    (home / "hf" / "hub").mkdir(parents=True)
    sys.path.insert(0, str(ROOT))
    from tests.helpers.textmodels import smollm2_gguf

    subprocess.run(
        [sys.executable, "-m", "mlxk.cli.main", "import", str(smollm2_gguf()), "smollm2"],
        env=_env(home),
        check=True,
    )
    return home


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace-home", help="home holding ws/<model> (default: import anew)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS))
    ap.add_argument(
        "--summarize",
        action="store_true",
        help="only re-render server_cpu.md from server_cpu.jsonl",
    )
    args = ap.parse_args()
    if args.summarize:
        lines = (RESULTS / "server_cpu.jsonl").read_text().splitlines()
        meta, rows = json.loads(lines[0])["meta"], [json.loads(ln) for ln in lines[1:]]
        (RESULTS / "server_cpu.md").write_text(summary(rows, meta))
        return 0
    home = prepare_home(args.workspace_home)
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="mlxk-bench-logs-"))
    meta: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "method": (
            f"{args.repeats} interleaved rounds per client count after one warm-up; "
            f"max_tokens={args.max_tokens}, temperature 0, streaming, same workspace "
            "files; TTFT and tok/s measured at the client over loopback HTTP."
        ),
    }
    servers = [
        start_mlxk(home, args.model, logs / "mlxk.log"),
        start_mlx_lm(home, args.model, logs / "mlx_lm.log"),
    ]
    rows: list[dict[str, Any]] = []
    try:
        for s in servers:
            run_round(s, 1, 4)  # warm-up: compile kernels, first allocations
        for c in args.clients:
            for rep in range(args.repeats):
                for s in servers:  # A B A B
                    row = run_round(s, c, args.max_tokens) | {"repeat": rep}
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "text"}), flush=True)
    finally:
        for s in servers:
            s.proc.send_signal(signal.SIGINT)
            s.proc.wait(30)
    firsts = {r["server"]: r["text"] for r in rows if r["clients"] == 1 and r["repeat"] == 0}
    meta["greedy_text"] = firsts
    meta["greedy_equal"] = len(set(firsts.values())) == 1 if firsts else None
    with (RESULTS / "server_cpu.jsonl").open("w") as fh:
        fh.write(json.dumps({"meta": meta}) + "\n")
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    (RESULTS / "server_cpu.md").write_text(summary(rows, meta))
    print((RESULTS / "server_cpu.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
