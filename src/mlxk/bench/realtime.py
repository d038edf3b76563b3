"""realtime: how soon a Realtime transcription session's text follows the speech.

One ``mlxk serve`` per model; per silence setting, sessions with ``server_vad`` through the
official openai client (``client.realtime.connect(extra_query={"intent": "transcription"})``).
The LibriSpeech clips are streamed as 24 kHz PCM16 in 100 ms appends at real time, each clip
followed by 2 s of silence (long enough for every VAD setting to close the turn). The send
time of every append is recorded, so an ``audio_*_ms`` of the server maps back to the wall
time at which that audio was sent, i.e. spoken.

Per turn: end of speech → final (``completed``), counted from the send of the audio at
``audio_end_ms`` (VAD silence included), from the send of the audio at ``audio_end_ms`` +
``silence_duration_ms`` (the earliest moment the VAD can know: the goal figure), and from the
arrival of ``speech_stopped``; the first partial after ``speech_started``; and each partial's
lag behind the audio. WER of the finals, joined, against the clips' references.
"""

from __future__ import annotations

import base64
import bisect
import json
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlxk.bench import report
from mlxk.bench.records import RunContext, make_record, summarize
from mlxk.bench.server import Server, ServerUnavailable, model_facts, percentile, start_mlxk, stop
from mlxk.config import Settings
from mlxk.errors import UsageError

SCENARIO_REALTIME = "realtime"
ENGINE = "mlxk serve (Realtime WebSocket)"
RATE = 24_000  # the session's audio/pcm rate
APPEND_MS = 100
GAP_S = 2.0  # silence after each clip
GOAL_S = 0.5  # end of speech (VAD silence elapsed) → final, CPU, tiny.en
TIMEOUT_S = 300.0  # past the audio: a session that is still open then has stalled
PREFIX = "conversation.item.input_audio_transcription."


@dataclass(frozen=True)
class RealtimeOptions:
    model: str
    clips: tuple[Path, ...] = ()
    silences_ms: tuple[int, ...] = (500, 1000)
    repeats: int = 1  # sessions per silence setting
    speed: float = 1.0  # 1 = real time


@dataclass
class Trace:
    """One session: perf_counter time of each append sent, and of each server event."""

    sends: list[float] = field(default_factory=list)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    marker: float | None = None  # when the end marker (a commit after the audio) was sent


# --- pure figures ---------------------------------------------------------------------------


def send_at(sends: Sequence[float], ms: float, append_ms: int = APPEND_MS) -> float:
    """Wall time at which the audio at ``ms`` of the stream was sent (append ``i`` carries
    [i·append_ms, (i+1)·append_ms)); clamped to the appends there were."""
    i = max(0, math.ceil(ms / append_ms) - 1)
    return sends[min(i, len(sends) - 1)]


def sent_before(sends: Sequence[float], t: float) -> float:
    """The send time of the newest append sent at or before ``t`` (the first one if none)."""
    i = bisect.bisect_right(sends, t)
    return sends[max(0, i - 1)]


def _by_item(events: Sequence[tuple[float, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per item_id: arrival times (and fields) of its turn events, in arrival order."""
    items: dict[str, dict[str, Any]] = {}
    for t, ev in events:
        item = ev.get("item_id")
        if not item:
            continue
        it = items.setdefault(item, {"deltas": []})
        kind = str(ev.get("type"))
        if kind == "input_audio_buffer.speech_started":
            it["started"] = (t, ev.get("audio_start_ms"))
        elif kind == "input_audio_buffer.speech_stopped":
            it["stopped"] = (t, ev.get("audio_end_ms"))
        elif kind == "input_audio_buffer.committed":
            it["committed"] = t
        elif kind == PREFIX + "delta":
            it["deltas"].append(t)
        elif kind == PREFIX + "completed":
            it["completed"] = (t, str(ev.get("transcript") or ""))
    return items


def _lags(sends: Sequence[float], started: float, partials: Sequence[float]) -> list[float]:
    """Upper bound of each partial's lag behind the audio: a partial decode starts only once
    the previous one has finished (the server runs one at a time), so it covers at least the
    audio sent before the previous partial (or speech_started, for the first) arrived."""
    marks = [started, *partials[:-1]]
    return [round(p - sent_before(sends, m), 4) for m, p in zip(marks, partials, strict=True)]


def turn_figures(trace: Trace, silence_ms: int) -> list[dict[str, Any]]:
    """Figures of each completed turn, in the order the finals arrived (seconds)."""
    items = _by_item(trace.events)
    done = sorted((it["completed"][0], k) for k, it in items.items() if "completed" in it)
    out = []
    for t_done, key in done:
        it = items[key]
        t_start, start_ms = it.get("started", (None, None))
        t_stop, end_ms = it.get("stopped", (None, None))
        # deltas before the commit are partials; one after it is the final's remainder
        cut = it.get("committed", t_done)
        partials = [t for t in it["deltas"] if t < cut]
        row: dict[str, Any] = {"item_id": key, "audio_start_ms": start_ms,
                               "audio_end_ms": end_ms, "transcript": it["completed"][1],
                               "partials": len(partials)}  # fmt: skip
        if end_ms is not None and t_stop is not None:
            row["eos_to_final_s"] = round(t_done - send_at(trace.sends, end_ms), 4)
            row["after_silence_s"] = round(
                t_done - send_at(trace.sends, end_ms + silence_ms), 4)  # fmt: skip
            row["stopped_to_final_s"] = round(t_done - t_stop, 4)
        if t_start is not None and partials:
            row["first_partial_s"] = round(partials[0] - t_start, 4)
            row["first_partial_from_speech_s"] = round(
                partials[0] - send_at(trace.sends, start_ms or 0), 4)  # fmt: skip
            row["partial_lag_s"] = _lags(trace.sends, t_start, partials)
        out.append(row)
    return out


def pooled(turns: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """Median, min, max, n, p95 of ``key`` over the turns that have it (lists flattened)."""
    vals: list[float] = []
    for t in turns:
        v = t.get(key)
        vals += v if isinstance(v, list) else [] if v is None else [v]
    return summarize(vals) | {"p95": percentile(vals, 95)}


# --- audio ----------------------------------------------------------------------------------


def default_clips(folder: Path) -> tuple[Path, ...]:
    """The folder's .wav clips, longest first (the order the server test streams them)."""
    from mlxk.bench.stt import audio_seconds

    return tuple(sorted(folder.glob("*.wav"), key=audio_seconds, reverse=True))


def stream_pcm(clips: Sequence[Path], gap_s: float = GAP_S) -> tuple[list[str], float]:
    """The clips, each followed by ``gap_s`` of silence, as base64 appends of 100 ms of
    24 kHz PCM16 (encoded up front: the sender's loop only sends); and the audio length."""
    import numpy as np

    from mlxk.media.audio import load_audio, resample

    pieces = []
    for clip in clips:
        x = load_audio(clip, target_rate=16_000).samples
        pieces += [resample(x, 16_000, RATE), np.zeros(round(gap_s * RATE), np.float32)]
    pcm = (np.clip(np.concatenate(pieces), -1.0, 1.0) * 32767).astype("<i2").tobytes()
    step = RATE * APPEND_MS // 1000 * 2
    chunks = [base64.b64encode(pcm[i : i + step]).decode() for i in range(0, len(pcm), step)]
    return chunks, len(pcm) / 2 / RATE


# --- one session ----------------------------------------------------------------------------


def session_update(model: str, silence_ms: int | None) -> dict[str, Any]:
    detection = None if silence_ms is None else {"type": "server_vad",
                                                 "silence_duration_ms": silence_ms}  # fmt: skip
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": RATE}, "transcription": {"model": model},
        "turn_detection": detection}}}}  # fmt: skip


def _connect(port: int) -> Any:
    try:
        from openai import OpenAI
    except ImportError as exc:
        raise UsageError("bench realtime needs the openai package (pip install openai)") from exc
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="mlxk-bench", max_retries=0)
    return client.realtime.connect(extra_query={"intent": "transcription"})


def _sender(conn: Any, chunks: Sequence[str], trace: Trace, speed: float) -> Callable[[], None]:
    def send() -> None:
        t0 = time.perf_counter()
        for i, chunk in enumerate(chunks):
            # an absolute schedule: sleeps that overrun do not add up
            time.sleep(max(0.0, t0 + i * APPEND_MS / 1000 / speed - time.perf_counter()))
            trace.sends.append(time.perf_counter())
            conn.send({"type": "input_audio_buffer.append", "audio": chunk})
        # the end marker: commits what is left, or answers input_audio_buffer_commit_empty
        trace.marker = time.perf_counter()
        conn.send({"type": "input_audio_buffer.commit"})

    return send


def _finished(events: Sequence[tuple[float, dict[str, Any]]], marker: float | None) -> bool:
    """The end marker (sent at ``marker``) was answered and every turn that started has its
    final. The answer is input_audio_buffer_commit_empty, or a commit if a turn was open."""
    if marker is None:
        return False
    answered = False
    for t, e in events:
        kind = e.get("type")
        if kind == "error":
            if (e.get("error") or {}).get("code") != "input_audio_buffer_commit_empty":
                raise ServerUnavailable(f"realtime session: {e.get('error')}")
            answered = True
        answered = answered or (kind == "input_audio_buffer.committed" and t > marker)
    started = {e["item_id"] for _t, e in events
               if e.get("type") == "input_audio_buffer.speech_started"}  # fmt: skip
    ended = {e.get("item_id") for _t, e in events
             if e.get("type") in (PREFIX + "completed", PREFIX + "failed")}  # fmt: skip
    return answered and started <= ended


def _wait_for(conn: Any, kind: str) -> None:
    while (ev := json.loads(conn.recv_bytes())).get("type") != kind:
        if ev.get("type") == "error":
            raise ServerUnavailable(f"realtime session: {ev.get('error')}")


def run_session(port: int, model: str, silence_ms: int, chunks: Sequence[str],
                speed: float = 1.0) -> Trace:  # fmt: skip
    """Stream ``chunks`` at ``speed`` × real time; every event until all turns are final."""
    trace = Trace()
    with _connect(port) as conn:
        _wait_for(conn, "session.created")
        conn.send(session_update(model, silence_ms))
        _wait_for(conn, "session.updated")
        sender = threading.Thread(target=_sender(conn, chunks, trace, speed), daemon=True)
        # a stalled server must not hang the bench: closing the socket ends recv_bytes
        watchdog = threading.Timer(len(chunks) * APPEND_MS / 1000 / speed + TIMEOUT_S, conn.close)
        sender.start()
        watchdog.start()
        try:
            while not _finished(trace.events, trace.marker):
                raw = conn.recv_bytes()
                trace.events.append((time.perf_counter(), json.loads(raw)))
        except Exception as exc:  # the websocket's own errors: the session broke
            raise ServerUnavailable(f"realtime session ended early: {exc}") from exc
        finally:
            watchdog.cancel()
        sender.join()
    return trace


def warm_up(port: int, model: str, chunks: Sequence[str]) -> None:
    """One manual-commit turn, sent at once: loads the model and compiles its kernels."""
    with _connect(port) as conn:
        _wait_for(conn, "session.created")
        conn.send(session_update(model, None))
        _wait_for(conn, "session.updated")
        for chunk in chunks:
            conn.send({"type": "input_audio_buffer.append", "audio": chunk})
        conn.send({"type": "input_audio_buffer.commit"})
        _wait_for(conn, PREFIX + "completed")


# --- records --------------------------------------------------------------------------------

METRICS = ("eos_to_final_s", "after_silence_s", "stopped_to_final_s", "first_partial_s",
           "first_partial_from_speech_s", "partial_lag_s")  # fmt: skip


def session_record(
    ctx: RunContext, model: dict[str, Any], server: Server, silence_ms: int,
    turns: list[dict[str, Any]], audio: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """One model at one silence setting, its turns pooled over the repeated sessions."""
    from mlxk.bench.stt import reference_of, wer

    stats = {m: pooled(turns, m) for m in METRICS}
    per_session = audio["sessions"]
    refs = [reference_of(c) for c in audio["clips"]]
    ref = " ".join(r for r in refs if r) if all(refs) else None
    texts = [" ".join(t["transcript"] for t in s) for s in per_session]
    wers = [w for w in (wer(ref, text) for text in texts) if w is not None]
    med_wer = round(statistics.median(wers), 4) if wers else None
    return make_record(
        ctx, SCENARIO_REALTIME, ENGINE, model=model,
        workload={"label": f"server_vad, silence {silence_ms} ms", "silence_ms": silence_ms,
                  "clip": " + ".join(c.name for c in audio["clips"]),
                  "audio_s": round(audio["audio_s"], 3), "gap_s": GAP_S,
                  "append_ms": APPEND_MS, "speed": audio["speed"], "repeats": len(per_session)},
        phases={"load_s": round(server.start_s, 3),
                "first_token_s": stats["first_partial_s"]["median"] or None,
                "done_s": stats["after_silence_s"]["median"] or None},
        stats=stats,
        quality={"wer": med_wer, "text": texts[0] if texts else "",
                 "reference": ref},
        extra={"goal_after_silence_s": GOAL_S, "turns_per_session": [len(s) for s in per_session],
               "wer_per_session": wers, "turns": turns},
    )  # fmt: skip


def run_realtime(
    settings: Settings, ctx: RunContext, opts: RealtimeOptions
) -> list[dict[str, Any]]:
    if not opts.clips:
        raise UsageError("bench realtime: no speech clips (--clips a.wav ...)")
    model = model_facts(settings, opts.model)
    chunks, audio_s = stream_pcm(opts.clips)
    server = start_mlxk(opts.model)
    try:
        warm_up(server.port, opts.model, stream_pcm(opts.clips[-1:], 0.0)[0])
        ctx.refresh()
        records = []
        for silence in opts.silences_ms:
            sessions = [turn_figures(run_session(server.port, opts.model, silence, chunks,
                                                 opts.speed), silence)
                        for _ in range(opts.repeats)]  # fmt: skip
            audio = {"clips": opts.clips, "audio_s": audio_s, "speed": opts.speed,
                     "sessions": sessions}  # fmt: skip
            turns = [t for s in sessions for t in s]
            records.append(session_record(ctx, model, server, silence, turns, audio))
    finally:
        stop(server)
    return records


# --- Markdown -------------------------------------------------------------------------------


def _s(metric: str, key: str) -> Callable[[dict[str, Any]], str]:
    def cell(rec: dict[str, Any]) -> str:
        s = report._get(rec, "stats", metric) or {}
        return "—" if not s.get("n") or s.get(key) is None else f"{s[key]:.2f}"

    return cell


def _goal(rec: dict[str, Any]) -> str:
    s = report._get(rec, "stats", "after_silence_s") or {}
    goal = report._get(rec, "extra", "goal_after_silence_s")
    if not s.get("n") or goal is None:
        return "—"
    return "yes" if s["median"] <= goal else "no"


COLUMNS: list[report.Column] = [
    report.MODEL, ("silence ms", report.g("workload", "silence_ms")),
    ("turns", lambda r: report._get(r, "stats", "after_silence_s", "n")),
    ("EOS → final s p50", _s("eos_to_final_s", "median")),
    ("EOS → final s max", _s("eos_to_final_s", "max")),
    ("EOS + silence → final s p50", _s("after_silence_s", "median")),
    ("EOS + silence → final s max", _s("after_silence_s", "max")),
    ("≤ 0.5 s (p50)", _goal),
    ("speech_stopped → final s p50", _s("stopped_to_final_s", "median")),
    ("speech_stopped → final s max", _s("stopped_to_final_s", "max")),
    ("speech_started → 1st partial s p50", _s("first_partial_s", "median")),
    ("speech_started → 1st partial s max", _s("first_partial_s", "max")),
    ("partial lag ≤ s p50", _s("partial_lag_s", "median")),
    ("partial lag ≤ s max", _s("partial_lag_s", "max")),
    ("partials", lambda r: report._get(r, "stats", "partial_lag_s", "n")),
    ("WER", report.n(3, "quality", "wer")),
    ("load 1 min", lambda r: f"{r['load_avg'][0]:.2f}" if r.get("load_avg") else "—"),
]  # fmt: skip
# report.py keeps one column list per scenario; this one registers itself on import (the bench
# command imports this module before it writes or prints the records)
report.COLUMNS.setdefault(SCENARIO_REALTIME, COLUMNS)
