"""server-mixed: streamed chats alone, then the same chats while one long streamed Whisper
transcription runs on the same ``mlxk serve``.

The server's engine thread runs steps of every request in turn (a text decode step, one 30 s
Whisper window). This scenario shows what that costs each side: the chats' inter-token gaps
and TTFT with and without a transcription beside them, and whether the transcript still
streams window by window (its deltas spread over its run) rather than arriving all at the end.

Phases, per client count N: "chat alone" — N streamed chats start together; "chat +
transcription" — one streamed transcription of a ≥ 60 s clip (the LibriSpeech clips of
tests/data/speech joined in turn) starts, the same N chats start ``lead_s`` later. Once per run,
"transcription alone" gives the transcript's own figures without chats.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

from mlxk.bench import report
from mlxk.bench.records import RunContext, make_record, summarize
from mlxk.bench.server import (
    PROMPT,
    Server,
    ServerUnavailable,
    chat_body,
    content,
    model_facts,
    percentile,
    post_stream,
    sse_events,
    start_mlxk,
    stop,
)
from mlxk.config import Settings
from mlxk.errors import MlxkError, UsageError

SCENARIO_MIXED = "server-mixed"
PHASE_CHAT = "chat alone"
PHASE_MIXED = "chat + transcription"
PHASE_STT = "transcription alone"
CLIP_PAUSE_S = 0.3  # silence between joined clips, so two recordings' words do not run together
T = TypeVar("T")


@dataclass(frozen=True)
class MixedOptions:
    model: str
    stt_model: str = "whisper-tiny.en"
    clients: tuple[int, ...] = (1, 4)
    max_tokens: int = 64
    audio_seconds: float = 60.0
    clips: tuple[Path, ...] = ()
    lead_s: float = 1.0  # chats start this long after the transcription request was sent


@dataclass(frozen=True)
class Trace:
    """One streamed request: perf_counter times of its start, each delta, and its end."""

    start: float
    deltas: tuple[float, ...]
    done: float
    tokens: int = 0
    text: str = ""

    @property
    def first_s(self) -> float | None:
        return self.deltas[0] - self.start if self.deltas else None

    @property
    def total_s(self) -> float:
        return self.done - self.start


# --- pure figures ---------------------------------------------------------------------------


def gaps(times: Sequence[float]) -> list[float]:
    """Time between consecutive events (n times → n − 1 gaps)."""
    return [b - a for a, b in pairwise(times)]


def gap_stats(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max, n and p95 (the ``stats`` entry of the schema)."""
    return summarize(values) | {"p95": percentile(values, 95)}


def transcript_figures(tr: Trace, audio_s: float) -> dict[str, Any]:
    """How the transcript streamed: all deltas at the very end give first/total ≈ 1 and
    span/total ≈ 0; deltas evenly spread over the run give a small first and a span near 1."""
    total = tr.total_s
    first = tr.first_s
    span = tr.deltas[-1] - tr.deltas[0] if tr.deltas else None
    return {
        "first_delta_s": round(first, 3) if first is not None else None,
        "total_s": round(total, 3),
        "first_delta_over_total": round(first / total, 3) if first is not None else None,
        "delta_span_over_total": round(span / total, 3) if span is not None else None,
        "deltas": len(tr.deltas),
        "delta_times_s": [round(t - tr.start, 3) for t in tr.deltas],
        "audio_s": round(audio_s, 3),
        "rtf": round(total / audio_s, 4) if audio_s else None,
    }


def chat_figures(chats: Sequence[Trace]) -> dict[str, Any]:
    """TTFT over the clients; inter-token gaps pooled over all clients' streams."""
    ttfts = [c.first_s for c in chats if c.first_s is not None]
    pooled = [g for c in chats for g in gaps(c.deltas)]
    return {
        "ttft_s": gap_stats(ttfts),
        "gap_s": gap_stats(pooled),
        "worst_gap_per_client_s": [round(max(gaps(c.deltas), default=0.0), 4) for c in chats],
    }


def before_done(chats: Sequence[Trace], tr: Trace) -> int:
    """Chats whose first token arrived while the transcription was still running."""
    return sum(1 for c in chats if c.deltas and c.deltas[0] < tr.done)


# --- the clip -------------------------------------------------------------------------------


def speech_clip(clips: Sequence[Path], seconds: float, dest: Path) -> float:
    """Write ``clips`` in turn (repeated) to ``dest`` until it holds ≥ ``seconds``; its length."""
    if not clips:
        raise UsageError("bench server --scenario mixed: no speech clips (--clips a.wav ...)")
    pieces, params = [], None
    for path in clips:
        with wave.open(str(path), "rb") as w:
            here = (w.getnchannels(), w.getsampwidth(), w.getframerate())
            if params is not None and here != params:
                raise UsageError(f"{path}: {here} differs from the first clip's {params}")
            params = here
            pieces.append(w.readframes(w.getnframes()))
    assert params is not None
    channels, width, rate = params
    pause = b"\0" * int(CLIP_PAUSE_S * rate) * channels * width
    frames, i = bytearray(), 0
    while len(frames) < seconds * rate * channels * width:
        frames += (pause if frames else b"") + pieces[i % len(pieces)]
        i += 1
    with wave.open(str(dest), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return len(frames) / (rate * channels * width)


# --- streamed requests ----------------------------------------------------------------------


def chat_trace(port: int, model: str, max_tokens: int) -> Trace:
    t0 = time.perf_counter()
    conn, resp = post_stream(port, "/v1/chat/completions", chat_body(model, max_tokens))
    deltas, parts, usage = [], [], None
    for event in sse_events(resp):
        usage = (event.get("usage") or {}).get("completion_tokens") or usage
        piece = content(event)
        if piece:
            deltas.append(time.perf_counter())
            parts.append(piece)
    done = time.perf_counter()
    conn.close()
    return Trace(t0, tuple(deltas), done, int(usage or len(deltas)), "".join(parts))


def _multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = bytearray()
    for key, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    out += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: audio/wav\r\n\r\n').encode()  # fmt: skip
    out += data + f"\r\n--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def transcript_trace(port: int, model: str, clip: Path) -> Trace:
    """One ``stream=true`` transcription; ends at ``transcript.text.done``."""
    body, ctype = _multipart({"model": model, "stream": "true"}, clip.name, clip.read_bytes())
    t0 = time.perf_counter()
    conn, resp = post_stream(port, "/v1/audio/transcriptions", body, ctype)
    deltas: list[float] = []
    text, done = "", None
    for event in sse_events(resp):
        kind = event.get("type")
        if kind == "transcript.text.delta":
            deltas.append(time.perf_counter())
        elif kind == "transcript.text.done":
            done, text = time.perf_counter(), str(event.get("text") or "")
            break
        elif "error" in event:  # a failure after the 200 travels as an event
            raise ServerUnavailable(f"transcription failed: {event['error']}")
    conn.close()
    if done is None:
        raise ServerUnavailable("transcription stream ended without transcript.text.done")
    return Trace(t0, tuple(deltas), done, len(deltas), text)


def in_threads(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``jobs`` at once, one thread each; their results in order (first error raised)."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, job: Callable[[], T]) -> None:
        try:
            results[i] = job()
        except (OSError, ValueError, MlxkError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, j), daemon=True) for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise ServerUnavailable(f"bench server --scenario mixed: {errors[0]}")
    return results


# --- phases and records ---------------------------------------------------------------------


@dataclass
class Run:
    """What a mixed run needs once: the server, the clip, the models' record sections."""

    server: Server
    opts: MixedOptions
    clip: Path
    audio_s: float
    text_model: dict[str, Any]
    stt_model: dict[str, Any]


def _chats(run: Run, n: int, delay: float = 0.0) -> list[Callable[[], Trace]]:
    def job() -> Trace:
        time.sleep(delay)
        return chat_trace(run.server.port, run.server.model, run.opts.max_tokens)

    return [job for _ in range(n)]


def _transcribe(run: Run) -> Trace:
    return transcript_trace(run.server.port, run.opts.stt_model, run.clip)


def _workload(run: Run, phase: str, n: int | None) -> dict[str, Any]:
    chats = f"{n} chat{'s' if n != 1 else ''}" if n else ""
    stt = f"{run.audio_s:.0f} s transcription" if phase != PHASE_CHAT else ""
    w: dict[str, Any] = {"label": " + ".join(x for x in (chats, stt) if x), "phase": phase}
    if n:
        w |= {"clients": n, "max_tokens": run.opts.max_tokens, "prompt": PROMPT}
    if phase != PHASE_CHAT:
        w |= {"clip": run.clip.name, "audio_s": round(run.audio_s, 3),
              "stt_model": run.opts.stt_model}  # fmt: skip
    if phase == PHASE_MIXED:
        w["chat_delay_s"] = run.opts.lead_s
    return w


def chat_record(
    ctx: RunContext, run: Run, phase: str, chats: Sequence[Trace], wall: float,
    tr: Trace | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One phase with chats; with ``tr`` (the transcription beside them) its figures too."""
    figs = chat_figures(chats)
    tokens = sum(c.tokens for c in chats)
    extra: dict[str, Any] = {"worst_gap_per_client_s": figs["worst_gap_per_client_s"]}
    if tr is not None:
        extra |= {"first_token_before_transcript_done": before_done(chats, tr),
                  "transcript": transcript_figures(tr, run.audio_s)}  # fmt: skip
    return make_record(
        ctx, SCENARIO_MIXED, run.server.name, model=run.text_model,
        workload=_workload(run, phase, len(chats)) | {"tokens_streamed": tokens},
        phases={"load_s": round(run.server.start_s, 3),
                "first_token_s": figs["ttft_s"]["median"] if chats else None,
                "done_s": round(wall, 4)},
        throughput={"aggregate_tok_s": round(tokens / wall, 3) if wall else None},
        stats={"ttft_s": figs["ttft_s"], "gap_s": figs["gap_s"]}, extra=extra,
    )  # fmt: skip


def transcript_record(ctx: RunContext, run: Run, tr: Trace) -> dict[str, Any]:
    figs = transcript_figures(tr, run.audio_s)
    return make_record(
        ctx, SCENARIO_MIXED, run.server.name, model=run.stt_model,
        workload=_workload(run, PHASE_STT, None),
        phases={"load_s": round(run.server.start_s, 3), "first_token_s": figs["first_delta_s"],
                "done_s": figs["total_s"]},
        throughput={"rtf": figs["rtf"]}, quality={"text": tr.text},
        extra={"transcript": figs},
    )  # fmt: skip


def _wall(chats: Sequence[Trace]) -> float:
    """First chat sent to last chat done (the transcription's lead time left out)."""
    return max(c.done for c in chats) - min(c.start for c in chats)


def _phases(ctx: RunContext, run: Run) -> list[dict[str, Any]]:
    records = [transcript_record(ctx, run, _transcribe(run))]
    for n in run.opts.clients:
        alone = in_threads(_chats(run, n))
        records.append(chat_record(ctx, run, PHASE_CHAT, alone, _wall(alone)))
        tr, *mixed = in_threads([lambda: _transcribe(run), *_chats(run, n, run.opts.lead_s)])
        records.append(chat_record(ctx, run, PHASE_MIXED, mixed, _wall(mixed), tr))
    return records


def run_mixed(settings: Settings, ctx: RunContext, opts: MixedOptions) -> list[dict[str, Any]]:
    text_model, stt_model = model_facts(settings, opts.model), model_facts(settings, opts.stt_model)
    with tempfile.TemporaryDirectory(prefix="mlxk-mixed-") as tmp:
        clip = Path(tmp) / f"speech-{opts.audio_seconds:.0f}s.wav"
        audio_s = speech_clip(opts.clips, opts.audio_seconds, clip)
        server = start_mlxk(opts.model, opts.stt_model)
        try:
            run = Run(server, opts, clip, audio_s, text_model, stt_model)
            # warm-up: the first request of each kind compiles kernels and fills caches
            chat_trace(server.port, server.model, opts.max_tokens)
            transcript_trace(server.port, opts.stt_model, Path(opts.clips[0]))
            ctx.refresh()
            records = _phases(ctx, run)
        finally:
            stop(server)
    return records


# --- Markdown -------------------------------------------------------------------------------


def _ms(*path: str) -> Callable[[dict[str, Any]], str]:
    def cell(rec: dict[str, Any]) -> str:
        v = report._get(rec, *path)
        return "—" if v is None else f"{v * 1000:.0f}"

    return cell


def _before(rec: dict[str, Any]) -> str:
    k = report._get(rec, "extra", "first_token_before_transcript_done")
    n = report._get(rec, "workload", "clients")
    return "—" if k is None else f"{k}/{n}"


COLUMNS: list[report.Column] = [
    report.MODEL, ("phase", report.g("workload", "phase")),
    ("clients", report.g("workload", "clients")),
    ("gap p50 ms", _ms("stats", "gap_s", "median")), ("gap p95 ms", _ms("stats", "gap_s", "p95")),
    ("gap max ms", _ms("stats", "gap_s", "max")),
    ("TTFT p50 s", report.n(3, "stats", "ttft_s", "median")),
    ("TTFT p95 s", report.n(3, "stats", "ttft_s", "p95")),
    ("aggregate tok/s", report.n(2, "throughput", "aggregate_tok_s")),
    ("1st token before transcript done", _before),
    ("transcript 1st delta s", report.n(2, "extra", "transcript", "first_delta_s")),
    ("transcript total s", report.n(2, "extra", "transcript", "total_s")),
    ("1st delta / total", report.n(2, "extra", "transcript", "first_delta_over_total")),
    ("(last − 1st delta) / total", report.n(2, "extra", "transcript", "delta_span_over_total")),
    ("load 1 min", lambda r: f"{r['load_avg'][0]:.2f}" if r.get("load_avg") else "—"),
]  # fmt: skip
# report.py keeps one column list per scenario; this scenario's lives here, registered on import
# (the bench command imports this module before it writes or prints the records)
report.COLUMNS.setdefault(SCENARIO_MIXED, COLUMNS)
